-- Shared by every script (the loader prepends it). A pool's eligible groups (enabled, with room,
-- not expired) are kept in three indexes so that every strategy picks in O(log n):
--   av  zset  gid -> order position      (fill, round_robin)
--   lf  zset  gid -> count / capacity    (least_filled)
--   fw  hash  Fenwick tree over slot weights, fwg slot -> gid  (weighted; sticky records
--             hold the slot)
-- plus ex (zset gid -> expires_at ms) for indexed groups that expire, so expired ones are found
-- without scanning, and its earliest score cached in the pool hash as 'exn', so that a scan
-- reads ex only once some group may have expired. A group leaves the indexes when it fills, is disabled, expires or is deleted.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Prefix sum of slots 1..i.
local function fw_prefix(P, i)
  local s = 0
  while i > 0 do
    s = s + tonumber(redis.call('HGET', P .. 'fw', i) or 0)
    i = i - bit.band(i, -i)
  end
  return s
end

local function fw_add(P, n, i, delta)
  if delta == 0 then return end
  while i <= n do
    redis.call('HINCRBY', P .. 'fw', i, delta)
    i = i + bit.band(i, -i)
  end
  redis.call('HINCRBY', P .. 'pool', 'fwt', delta)
end

local function unindex(P, n, gid, fi, w)
  redis.call('ZREM', P .. 'av', gid)
  redis.call('ZREM', P .. 'lf', gid)
  redis.call('ZREM', P .. 'ex', gid)
  if fi and w then fw_add(P, n, tonumber(fi), -tonumber(w)) end
end

local function index(P, n, gid, pos, c, cap, exp, fi, w)
  redis.call('ZADD', P .. 'av', pos, gid)
  redis.call('ZADD', P .. 'lf', c / cap, gid)
  if exp then redis.call('ZADD', P .. 'ex', exp, gid) end
  fw_add(P, n, tonumber(fi), tonumber(w))
end

local function eligible(en, c, cap, exp, now)
  return en == '1' and tonumber(c) < tonumber(cap) and (not exp or tonumber(exp) > now)
end

-- What 'exn' becomes once the gids of the set `gone` leave ex and, optionally, one group with
-- expiry `add_exp` joins it. `head` is ex's first #gone + 1 entries, WITHSCORES, read before
-- the script's first write.
local function ex_head(P, ngone)
  return redis.call('ZRANGE', P .. 'ex', 0, ngone, 'WITHSCORES')
end

local function ex_min(head, gone, add_exp)
  local m = add_exp and tonumber(add_exp) or nil
  for i = 1, #head, 2 do
    if not gone[head[i]] then
      local s = tonumber(head[i + 1])
      if not m or s < m then m = s end
      break
    end
  end
  return m
end

local function set_exn(P, m)
  if m then
    redis.call('HSET', P .. 'pool', 'exn', m)
  else
    redis.call('HDEL', P .. 'pool', 'exn')
  end
end
