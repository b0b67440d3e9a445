-- One scan of a live code, or a batch of new visitors' scans of one pool, atomically: pool
-- status and schedule, the visitor's sticky group, a pick by the pool's strategy, the count, the
-- sticky record and the stats.
-- Every read and check comes before the first write, for every scan of a batch: the picks are
-- made in memory, each seeing the counts, fills and rotation the earlier ones will write, so a
-- batch ends exactly where the same scans one by one would. A visitor who already holds a usable
-- group gets it back with no write at all, so a retried call never counts twice.
-- The common path (fill, a new visitor, no group that expires) runs 6 Redis commands; keep it
-- that way (bench/).
-- KEYS[1] pool hash, KEYS[1 + i] scan i's sticky key
-- ARGV[1] key prefix 'lc:{pool}:', ARGV[2] visitor id ('' = none), ARGV[3] channel ('' = none),
-- ARGV[4] '1' for a dry run: stop before the first write and return {'peek', gid or ''};
--   'n' when the visitor id was just made (no cookie): it cannot have a sticky record yet;
--   'b' for a batch of such new visitors: scan i >= 2 has its visitor id in ARGV[2i + 1] and its
--   channel in ARGV[2i + 2], and the reply is a list of the scans' replies, in order,
-- ARGV[5] new allocations allowed per client per minute (absent or 0: no limit), ARGV[6] client
--   (not in a batch).
-- Returns also {'limited', seconds until the window ends} when ARGV[5] is exceeded.
-- Returns {outcome, ...}: unknown | paused|not_started|ended, name |
--   sticky|new, gid, url, mode, name | fallback, name, fb_url, fb_msg, fb_contact
local P = ARGV[1]
local batch = ARGV[4] == 'b'
local n = batch and #KEYS - 1 or 1

local pool = redis.call('HMGET', KEYS[1], 'status', 'name', 'strategy', 'mode', 'vf', 'vu', 'ttl',
                       'exn', 'rr', 'fwn', 'fwt')
-- The same reply for every scan of the call.
local function each(reply)
  if not batch then return reply end
  local out = {}
  for i = 1, n do out[i] = reply end
  return out
end
if not pool[1] then return each({'unknown'}) end
local name = pool[2] or ''
if pool[1] ~= 'active' then return each({'paused', name}) end
-- The clock is read only when something depends on it: a schedule, a group that expires, the
-- rate limit. A pool of groups that never expire needs no TIME at all.
local now = nil
local function clock()
  if not now then now = now_ms() end
  return now
end
if pool[5] and clock() < tonumber(pool[5]) then return each({'not_started', name}) end
if pool[6] and clock() >= tonumber(pool[6]) then return each({'ended', name}) end
local pmode = pool[4] or 'redirect'

-- The sticky record holds the group's Fenwick slot, a small integer that Redis stores without
-- an allocation of its own (~30 B less per visitor than the group id); slots are never reused,
-- and a deleted group's slot maps to nothing.
if not batch and ARGV[2] ~= '' and ARGV[4] ~= 'n' then
  local slot = redis.call('GET', KEYS[2])
  local sticky = slot and redis.call('HGET', P .. 'fwg', slot)
  if sticky then
    local g = redis.call('HMGET', P .. 'g:' .. sticky, 'url', 'en', 'exp', 'mode')
    if g[1] and g[2] == '1' and (not g[3] or tonumber(g[3]) > clock()) then
      return {'sticky', sticky, g[1], g[4] or pmode, name}
    end
  end
end

-- A per-client limit on new allocations (re-scans above are free), so one client cannot drain
-- a pool. A fixed one-minute window; the counter lives in the pool's slot.
local limit, rl_key = not batch and tonumber(ARGV[5] or 0), nil
if limit and limit > 0 then
  local minute = math.floor(clock() / 60000)
  rl_key = P .. 'rl:' .. ARGV[6] .. ':' .. minute
  if tonumber(redis.call('GET', rl_key) or 0) >= limit then
    return {'limited', tostring(60 - math.floor(now / 1000) % 60)}
  end
end

local strategy = pool[3] or 'fill'
-- Indexed groups found unusable (expired, or full by the picks so far): skipped by every later
-- pick, and taken out of the indexes by the writes below.
local skip, nskip, purge = {}, 0, {}
local expired = {}
if pool[8] and clock() >= tonumber(pool[8]) then
  expired = redis.call('ZRANGEBYSCORE', P .. 'ex', '-inf', now, 'LIMIT', 0, 1000)
end
for i = 1, #expired do
  skip[expired[i]] = true
  purge[i] = expired[i]
end
nskip = #expired

local rr = strategy == 'round_robin' and pool[9] or nil
local fw_n, fw_total = tonumber(pool[10] or 0), tonumber(pool[11] or 0)

-- What the picks so far will write: a group's fields with its count as it will be (c, [2]),
-- the groups counted in order, how many scans each got, and each one's round-robin position.
local groups, counted, added, positions = {}, {}, {}, {}
local function group(gid)
  local g = groups[gid]
  if not g then
    g = redis.call('HMGET', P .. 'g:' .. gid, 'url', 'c', 'cap', 'exp', 'mode', 'en', 'fi')
    groups[gid] = g
  end
  return g
end

local function first_unskipped(list)
  for i = 1, #list do
    if not skip[list[i]] then return list[i] end
  end
  return nil
end

-- Equal lf scores are ordered by member, bytewise as a sorted set does (Lua's own string
-- comparison follows the server's locale).
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Least filled: lf as the earlier picks will leave it. Their scores are known here; the first
-- other member past the skipped and counted ones is the least filled of the rest.
local function pick_least_filled()
  if #counted == 0 then
    return first_unskipped(redis.call('ZRANGE', P .. 'lf', '0', nskip == 0 and '0' or nskip))
  end
  local list = redis.call('ZRANGE', P .. 'lf', 0, nskip + #counted, 'WITHSCORES')
  local best, score = nil, nil
  for i = 1, #list, 2 do
    if not skip[list[i]] and not added[list[i]] then
      best, score = list[i], tonumber(list[i + 1])
      break
    end
  end
  for i = 1, #counted do
    local gid = counted[i]
    if not skip[gid] then
      local s = groups[gid][2] / tonumber(groups[gid][3])
      if not best or s < score or (s == score and bytes_before(gid, best)) then
        best, score = gid, s
      end
    end
  end
  return best
end

-- Weighted: a Fenwick search for r that ignores skipped slots without writing: search for r plus
-- the skipped weight that lies before the answer, until that weight stops changing (at most
-- nskip + 1 rounds of O(log n)).
local weights = {}
local function pick_weighted(vid)
  local slots, total = {}, fw_total
  for gid in pairs(skip) do
    local s = weights[gid]
    if not s then
      s = redis.call('HMGET', P .. 'g:' .. gid, 'fi', 'w')
      s = {tonumber(s[1] or 0), tonumber(s[2] or 0)}
      weights[gid] = s
    end
    slots[#slots + 1] = s
    total = total - s[2]
  end
  if total <= 0 then return nil end
  -- The draw comes from the visitor id, which is random: no Lua PRNG (not replication-safe
  -- on older servers) and a retried scan of the same visitor draws the same group.
  local b64, x = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', 0
  for i = 1, 4 do
    x = x * 64 + (string.find(b64, string.sub(vid, i, i), 1, true) or 1) - 1
  end
  local r = math.min(math.floor(x / 16777216 * total), total - 1)
  local top = 1
  while top * 2 <= fw_n do top = top * 2 end
  local before = 0
  while true do
    local pos, rem, step = 0, r + before, top
    while step >= 1 do
      if pos + step <= fw_n then
        local v = tonumber(redis.call('HGET', P .. 'fw', pos + step) or 0)
        if v <= rem then
          pos = pos + step
          rem = rem - v
        end
      end
      step = step / 2
    end
    local slot, again = pos + 1, 0
    for i = 1, #slots do
      if slots[i][1] <= slot then again = again + slots[i][2] end
    end
    if again == before then
      if slot > fw_n then return nil end
      return redis.call('HGET', P .. 'fwg', slot) or nil
    end
    before = again
  end
end

local function pick(vid)
  for _ = 1, 32 do
    local gid
    if strategy == 'weighted' then
      gid = pick_weighted(vid)
    elseif strategy == 'least_filled' then
      gid = pick_least_filled()
    elseif rr then
      gid = first_unskipped(redis.call('ZRANGEBYSCORE', P .. 'av', '(' .. rr, '+inf', 'LIMIT', 0, nskip + 1))
        or first_unskipped(redis.call('ZRANGE', P .. 'av', 0, nskip))
    else
      gid = first_unskipped(redis.call('ZRANGE', P .. 'av', '0', nskip == 0 and '0' or nskip))
    end
    if not gid then return nil end
    local g = group(gid)
    -- Capacity is checked here, not trusted to the index.
    if g[1] and eligible(g[6], g[2], g[3], g[4], g[4] and clock()) then return gid, g end
    skip[gid] = true
    nskip = nskip + 1
    purge[#purge + 1] = gid
  end
  return nil
end

-- The stats field each scan bumps: 'new', 'n:<channel>', or 'n:~other' once the hash holds 256
-- fields; 'fallback' when the pool had no room. `bumps` counts per field, `made` the fields
-- the earlier scans of the call will have added.
local bumps, made, existed, st_len = {}, {}, {}, nil
local function st_has(f)
  if existed[f] == nil then existed[f] = redis.call('HEXISTS', P .. 'st', f) == 1 end
  return existed[f]
end
local function stat_field(ch)
  if ch == '' then return 'new' end
  local f = 'n:' .. ch
  if bumps[f] or st_has(f) then return f end
  if not st_len then st_len = redis.call('HLEN', P .. 'st') end
  local size = st_len
  for m in pairs(made) do
    if not st_has(m) then size = size + 1 end
  end
  if size >= 256 then return 'n:~other' end
  return f
end
local function bump(f)
  if not bumps[f] then
    bumps[f] = 0
    made[f] = true
  end
  bumps[f] = bumps[f] + 1
end

local replies, sticky_slots, filled, fallbacks, seen = {}, {}, {}, 0, {}
local last_gid, rr_moved = nil, false
for i = 1, n do
  local vid, ch = ARGV[2], ARGV[3]
  if i > 1 then vid, ch = ARGV[2 * i + 1], ARGV[2 * i + 2] end
  local earlier = batch and seen[vid]
  if earlier and replies[earlier][1] == 'new' then
    -- the same visitor twice in one batch: once counted, then sticky to that group
    local r = replies[earlier]
    replies[i] = {'sticky', r[2], r[3], r[4], r[5]}
  else
    seen[vid] = i
    local gid, g = pick(vid)
    if gid then
      local c = tonumber(g[2]) + 1
      g[2] = c
      if not added[gid] then
        added[gid] = 0
        counted[#counted + 1] = gid
      end
      added[gid] = added[gid] + 1
      if c >= tonumber(g[3]) then
        skip[gid] = true
        nskip = nskip + 1
        filled[#filled + 1] = gid
      end
      if strategy == 'round_robin' then
        if positions[gid] == nil then positions[gid] = redis.call('HGET', P .. 'g:' .. gid, 'pos') end
        if positions[gid] then
          rr = positions[gid]
          rr_moved = true
        end
      end
      last_gid = gid
      sticky_slots[i] = g[7]
      bump(stat_field(ch))
      replies[i] = {'new', gid, g[1], g[5] or pmode, name}
    else
      fallbacks = fallbacks + 1
      bump('fallback')
      replies[i] = false
    end
  end
end

-- What the writes need, read before the first of them.
local unindexing = {}
for i = 1, #purge do unindexing[i] = purge[i] end
for i = 1, #filled do unindexing[#unindexing + 1] = filled[i] end
local slots, exn = {}, nil
if #unindexing > 0 then
  local gone = {}
  for i = 1, #unindexing do
    slots[i] = redis.call('HMGET', P .. 'g:' .. unindexing[i], 'fi', 'w')
    gone[unindexing[i]] = true
  end
  exn = ex_min(ex_head(P, #unindexing), gone, nil)
end
if fallbacks > 0 then
  local fb = redis.call('HMGET', KEYS[1], 'fb_url', 'fb_msg', 'fb_contact')
  local reply = {'fallback', name, fb[1] or '', fb[2] or '', fb[3] or ''}
  for i = 1, n do
    if not replies[i] then replies[i] = reply end
  end
end

if ARGV[4] == '1' then return {'peek', last_gid or ''} end

-- Writes from here on. Arguments go to redis.call as strings where they can: Redis formats a
-- Lua number with snprintf("%.17g"), ~0.3 us per argument (bench/NOTES.md).
for i = 1, #unindexing do unindex(P, fw_n, unindexing[i], slots[i][1], slots[i][2]) end
if #unindexing > 0 then set_exn(P, exn) end

for i = 1, #counted do
  local gid = counted[i]
  local k = added[gid]
  local c = redis.call('HINCRBY', P .. 'g:' .. gid, 'c', k == 1 and '1' or k)
  -- lf scores are kept fresh only while a pool is least_filled; pool_put.lua rebuilds them
  -- when a pool switches to it.
  if strategy == 'least_filled' and c < tonumber(groups[gid][3]) then
    redis.call('ZADD', P .. 'lf', c / tonumber(groups[gid][3]), gid)
  end
end
if rr_moved then redis.call('HSET', KEYS[1], 'rr', rr) end
local ttl = pool[7] or '604800'
for i = 1, n do
  if sticky_slots[i] and (batch or ARGV[2] ~= '') then
    redis.call('SET', KEYS[1 + i], sticky_slots[i], 'EX', ttl)
  end
end
for f, k in pairs(bumps) do redis.call('HINCRBY', P .. 'st', f, k == 1 and '1' or k) end
if rl_key then
  redis.call('INCR', rl_key)
  redis.call('EXPIRE', rl_key, 120)
end
if batch then return replies end
return replies[1]
