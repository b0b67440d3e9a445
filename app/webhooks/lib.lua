-- Shared by every webhook script (the loader prepends it). ARGV[1] is always the key prefix
-- 'lc:{webhooks}:'; every key is built from it, so each script stays in the {webhooks} slot.
--   ids        zset  webhook id -> created ms
--   w:<wid>    hash  the webhook; 'en' '1'|'0', 'np' its pending deliveries
--   due        zset  pending delivery id -> when it is due (a claimed one: when its lease ends)
--   dead       zset  dead-lettered delivery id -> when it died
--   h:<wid>    zset  every kept delivery of a webhook -> created ms
--   ok:<wid>   zset  its delivered ones -> delivered ms (trimmed to the newest N)
--   d:<did>    hash  a delivery: wid eid event lang st created age0 next tok n last_* done
--   a:<did>    list  its attempts, newest first (trimmed to the newest N)
--   seen:<did> str   with a TTL: the (webhook, event) pair was enqueued already
--   rl:<wid>:<minute>  str  claims of a rate-limited webhook in that minute (expires)

local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function forget(id, wid)
  redis.call('DEL', P .. 'd:' .. id, P .. 'a:' .. id)
  if wid then redis.call('ZREM', P .. 'h:' .. wid, id) end
end

-- Drop the oldest members of a finished-deliveries zset past `keep`, with their deliveries.
local function trim(zkey, keep)
  local n = redis.call('ZCARD', zkey)
  if n <= keep then return end
  local old = redis.call('ZRANGE', zkey, 0, n - keep - 1)
  for _, id in ipairs(old) do
    forget(id, redis.call('HGET', P .. 'd:' .. id, 'wid'))
  end
  redis.call('ZREMRANGEBYRANK', zkey, 0, n - keep - 1)
end

local function pending_done(wid)
  if redis.call('EXISTS', P .. 'w:' .. wid) == 1 then
    redis.call('HINCRBY', P .. 'w:' .. wid, 'np', -1)
  end
end

local function to_dead(id, wid, now, err, dead_max)
  redis.call('HSET', P .. 'd:' .. id, 'st', 'dead', 'done', now, 'next', '')
  if err then redis.call('HSET', P .. 'd:' .. id, 'last_err', err) end
  redis.call('ZREM', P .. 'due', id)
  redis.call('ZADD', P .. 'dead', now, id)
  pending_done(wid)
  trim(P .. 'dead', dead_max)
end
