-- One scan of a live code, atomically: pool status and schedule, the visitor's sticky group, a
-- pick by the pool's strategy, the count, the sticky record and the stats.
-- Every read and check comes before the first write. A visitor who already holds a usable group
-- gets it back with no write at all, so a retried call never counts twice.
-- KEYS[1] pool hash, KEYS[2] the visitor's sticky key
-- ARGV[1] key prefix 'lc:{pool}:', ARGV[2] visitor id ('' = none), ARGV[3] channel ('' = none),
-- ARGV[4] a random number in [0, 1) for the weighted strategy
-- Returns {outcome, ...}: unknown | paused|not_started|ended, name |
--   sticky|new, gid, url, mode, name | fallback, name, fb_url, fb_msg, fb_contact
local P, vid, ch, rnd = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local pool = redis.call('HMGET', KEYS[1], 'status', 'name', 'strategy', 'mode', 'vf', 'vu',
  'ttl', 'rr', 'fb_url', 'fb_msg', 'fb_contact', 'fwt', 'fwn')
if not pool[1] then return {'unknown'} end
local name = pool[2] or ''
if pool[1] ~= 'active' then return {'paused', name} end
local now = now_ms()
if pool[5] and now < tonumber(pool[5]) then return {'not_started', name} end
if pool[6] and now >= tonumber(pool[6]) then return {'ended', name} end
local pmode = pool[4] or 'redirect'

if vid ~= '' then
  local sticky = redis.call('GET', KEYS[2])
  if sticky then
    local g = redis.call('HMGET', P .. 'g:' .. sticky, 'url', 'en', 'exp', 'mode')
    if g[1] and g[2] == '1' and (not g[3] or tonumber(g[3]) > now) then
      return {'sticky', sticky, g[1], g[4] or pmode, name}
    end
  end
end

local strategy = pool[3] or 'fill'
local n = tonumber(pool[13] or 0)
-- skipped: indexed groups found unusable (expired); they are purged from the indexes below.
local skip, purge = {}, {}
local function add_skip(gid, fi, w)
  skip[gid] = {tonumber(fi or 0), tonumber(w or 0)}
  purge[#purge + 1] = {gid, fi, w}
end
for _, gid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'ex', '-inf', now, 'LIMIT', 0, 1000)) do
  local g = redis.call('HMGET', P .. 'g:' .. gid, 'fi', 'w')
  add_skip(gid, g[1], g[2])
end

local function first_unskipped(list)
  for _, id in ipairs(list) do
    if not skip[id] then return id end
  end
  return nil
end

local function nskip()
  local k = 0
  for _ in pairs(skip) do k = k + 1 end
  return k
end

-- Smallest slot whose prefix sum exceeds target.
local function fw_search(target)
  local pos, step = 0, 1
  while step * 2 <= n do step = step * 2 end
  while step >= 1 do
    local nxt = pos + step
    if nxt <= n then
      local v = tonumber(redis.call('HGET', P .. 'fw', nxt) or 0)
      if v <= target then
        pos = nxt
        target = target - v
      end
    end
    step = step / 2
  end
  return pos + 1
end

-- Weighted pick that ignores skipped slots without writing: search for r plus the skipped
-- weight that lies before the answer, until that weight stops changing (at most #skip + 1 rounds).
local function pick_weighted()
  local total = tonumber(pool[12] or 0)
  for _, s in pairs(skip) do total = total - s[2] end
  if total <= 0 then return nil end
  local r = math.min(math.floor(rnd * total), total - 1)
  local before = 0
  while true do
    local slot = fw_search(r + before)
    local again = 0
    for _, s in pairs(skip) do
      if s[1] <= slot then again = again + s[2] end
    end
    if again == before then
      if slot > n then return nil end
      return redis.call('HGET', P .. 'fwg', slot) or nil
    end
    before = again
  end
end

local function pick()
  local k = nskip()
  if strategy == 'weighted' then
    return pick_weighted()
  elseif strategy == 'least_filled' then
    return first_unskipped(redis.call('ZRANGE', P .. 'lf', 0, k))
  elseif strategy == 'round_robin' and pool[8] then
    return first_unskipped(redis.call('ZRANGEBYSCORE', P .. 'av', '(' .. pool[8], '+inf', 'LIMIT', 0, k + 1))
      or first_unskipped(redis.call('ZRANGE', P .. 'av', 0, k))
  end
  return first_unskipped(redis.call('ZRANGE', P .. 'av', 0, k))
end

local gid, g
for _ = 1, 32 do
  gid = pick()
  if not gid then break end
  g = redis.call('HMGET', P .. 'g:' .. gid, 'url', 'c', 'cap', 'exp', 'mode', 'w', 'fi', 'pos', 'en')
  -- Capacity is checked here, not trusted to the index.
  if g[1] and eligible(g[9], g[2], g[3], g[4], now) then break end
  add_skip(gid, g[7], g[6])
  gid = nil
end

local stat = nil
if ch ~= '' then
  stat = 'n:' .. ch
  if redis.call('HEXISTS', P .. 'st', stat) == 0 and redis.call('HLEN', P .. 'st') >= 256 then
    stat = 'n:~other'
  end
end

-- Writes from here on.
for _, e in ipairs(purge) do unindex(P, n, e[1], e[2], e[3]) end

if not gid then
  redis.call('HINCRBY', P .. 'st', 'fallback', 1)
  return {'fallback', name, pool[9] or '', pool[10] or '', pool[11] or ''}
end

local c = redis.call('HINCRBY', P .. 'g:' .. gid, 'c', 1)
local cap = tonumber(g[3])
if c >= cap then
  unindex(P, n, gid, g[7], g[6])
else
  redis.call('ZADD', P .. 'lf', c / cap, gid)
end
if strategy == 'round_robin' then redis.call('HSET', KEYS[1], 'rr', g[8]) end
if vid ~= '' then redis.call('SET', KEYS[2], gid, 'EX', tonumber(pool[7] or 604800)) end
redis.call('HINCRBY', P .. 'st', 'new', 1)
if stat then redis.call('HINCRBY', P .. 'st', stat, 1) end
return {'new', gid, g[1], g[5] or pmode, name}
