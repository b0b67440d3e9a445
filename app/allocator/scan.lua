-- One scan of a live code, atomically: pool status and schedule, the visitor's sticky group, a
-- pick by the pool's strategy, the count, the sticky record and the stats.
-- Every read and check comes before the first write. A visitor who already holds a usable group
-- gets it back with no write at all, so a retried call never counts twice.
-- The common path (fill, a new visitor, no group that expires) runs 6 Redis commands; keep it
-- that way (bench/).
-- KEYS[1] pool hash, KEYS[2] the visitor's sticky key
-- ARGV[1] key prefix 'lc:{pool}:', ARGV[2] visitor id ('' = none), ARGV[3] channel ('' = none),
-- ARGV[4] '1' for a dry run: stop before the first write and return {'peek', gid or ''};
--   'n' when the visitor id was just made (no cookie): it cannot have a sticky record yet,
-- ARGV[5] new allocations allowed per client per minute (absent or 0: no limit), ARGV[6] client
-- Returns also {'limited', seconds until the window ends} when ARGV[5] is exceeded.
-- Returns {outcome, ...}: unknown | paused|not_started|ended, name |
--   sticky|new, gid, url, mode, name | fallback, name, fb_url, fb_msg, fb_contact
local P, vid, ch = ARGV[1], ARGV[2], ARGV[3]

local pool = redis.call('HMGET', KEYS[1], 'status', 'name', 'strategy', 'mode', 'vf', 'vu', 'ttl',
                       'exn', 'rr', 'fwn', 'fwt')
if not pool[1] then return {'unknown'} end
local name = pool[2] or ''
if pool[1] ~= 'active' then return {'paused', name} end
-- The clock is read only when something depends on it: a schedule, a group that expires, the
-- rate limit. A pool of groups that never expire needs no TIME at all.
local now = nil
local function clock()
  if not now then now = now_ms() end
  return now
end
if pool[5] and clock() < tonumber(pool[5]) then return {'not_started', name} end
if pool[6] and clock() >= tonumber(pool[6]) then return {'ended', name} end
local pmode = pool[4] or 'redirect'

-- The sticky record holds the group's Fenwick slot, a small integer that Redis stores without
-- an allocation of its own (~30 B less per visitor than the group id); slots are never reused,
-- and a deleted group's slot maps to nothing.
if vid ~= '' and ARGV[4] ~= 'n' then
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
local limit, rl_key = tonumber(ARGV[5] or 0), nil
if limit and limit > 0 then
  local minute = math.floor(clock() / 60000)
  rl_key = P .. 'rl:' .. ARGV[6] .. ':' .. minute
  if tonumber(redis.call('GET', rl_key) or 0) >= limit then
    return {'limited', tostring(60 - math.floor(now / 1000) % 60)}
  end
end

local strategy = pool[3] or 'fill'
-- Indexed groups found unusable (expired): skipped now, purged from the indexes below.
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

local function first_unskipped(list)
  for i = 1, #list do
    if not skip[list[i]] then return list[i] end
  end
  return nil
end

-- Weighted: a Fenwick search for r that ignores skipped slots without writing: search for r plus
-- the skipped weight that lies before the answer, until that weight stops changing (at most
-- nskip + 1 rounds of O(log n)).
local function pick_weighted()
  local slots, total = {}, fw_total
  for gid in pairs(skip) do
    local s = redis.call('HMGET', P .. 'g:' .. gid, 'fi', 'w')
    slots[#slots + 1] = {tonumber(s[1] or 0), tonumber(s[2] or 0)}
    total = total - slots[#slots][2]
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

local gid, g
for _ = 1, 32 do
  if strategy == 'weighted' then
    gid = pick_weighted()
  elseif strategy == 'least_filled' then
    gid = first_unskipped(redis.call('ZRANGE', P .. 'lf', 0, nskip))
  elseif rr then
    gid = first_unskipped(redis.call('ZRANGEBYSCORE', P .. 'av', '(' .. rr, '+inf', 'LIMIT', 0, nskip + 1))
      or first_unskipped(redis.call('ZRANGE', P .. 'av', 0, nskip))
  else
    gid = first_unskipped(redis.call('ZRANGE', P .. 'av', '0', nskip == 0 and '0' or nskip))
  end
  if not gid then break end
  g = redis.call('HMGET', P .. 'g:' .. gid, 'url', 'c', 'cap', 'exp', 'mode', 'en', 'fi')
  -- Capacity is checked here, not trusted to the index.
  if g[1] and eligible(g[6], g[2], g[3], g[4], g[4] and clock()) then break end
  skip[gid] = true
  nskip = nskip + 1
  purge[#purge + 1] = gid
  gid = nil
end

-- What the writes need, read before the first of them.
local stat = 'new'
if ch ~= '' then
  stat = 'n:' .. ch
  if redis.call('HEXISTS', P .. 'st', stat) == 0 and redis.call('HLEN', P .. 'st') >= 256 then
    stat = 'n:~other'
  end
end
local fills = gid and tonumber(g[2]) + 1 >= tonumber(g[3])
local pos = nil
if gid and strategy == 'round_robin' then pos = redis.call('HGET', P .. 'g:' .. gid, 'pos') end
local unindexing = {}
for i = 1, #purge do unindexing[i] = purge[i] end
if fills then unindexing[#unindexing + 1] = gid end
local slots, exn = {}, nil
if #unindexing > 0 then
  local gone = {}
  for i = 1, #unindexing do
    slots[i] = redis.call('HMGET', P .. 'g:' .. unindexing[i], 'fi', 'w')
    gone[unindexing[i]] = true
  end
  exn = ex_min(ex_head(P, #unindexing), gone, nil)
end
local fallback = nil
if not gid then fallback = redis.call('HMGET', KEYS[1], 'fb_url', 'fb_msg', 'fb_contact') end

if ARGV[4] == '1' then return {'peek', gid or ''} end

-- Writes from here on. Arguments go to redis.call as strings where they can: Redis formats a
-- Lua number with snprintf("%.17g"), ~0.3 us per argument (bench/NOTES.md).
for i = 1, #unindexing do unindex(P, fw_n, unindexing[i], slots[i][1], slots[i][2]) end
if #unindexing > 0 then set_exn(P, exn) end

if not gid then
  redis.call('HINCRBY', P .. 'st', 'fallback', 1)
  return {'fallback', name, fallback[1] or '', fallback[2] or '', fallback[3] or ''}
end

local c = redis.call('HINCRBY', P .. 'g:' .. gid, 'c', '1')
-- lf scores are kept fresh only while a pool is least_filled; pool_put.lua rebuilds them
-- when a pool switches to it.
if not fills and strategy == 'least_filled' then
  redis.call('ZADD', P .. 'lf', c / tonumber(g[3]), gid)
end
if pos then redis.call('HSET', KEYS[1], 'rr', pos) end
if vid ~= '' then redis.call('SET', KEYS[2], g[7], 'EX', pool[7] or '604800') end
redis.call('HINCRBY', P .. 'st', stat, '1')
if rl_key then
  redis.call('INCR', rl_key)
  redis.call('EXPIRE', rl_key, 120)
end
return {'new', gid, g[1], g[5] or pmode, name}
