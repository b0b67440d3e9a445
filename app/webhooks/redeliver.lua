-- Put a delivery back in the queue, due now, with a fresh maximum age and backoff (n0: the
-- attempts before it): a dead letter or a delivered one becomes pending again; a pending one is
-- made due now.
-- KEYS: due. ARGV: prefix, wid, did. Returns 'ok' or 'missing'.
local wid, id = ARGV[2], ARGV[3]
local d = P .. 'd:' .. id
local f = redis.call('HMGET', d, 'st', 'wid', 'n')
if not f[1] or f[2] ~= wid then return 'missing' end
local now = now_ms()
if f[1] ~= 'pending' then
  redis.call('ZREM', P .. 'dead', id)
  redis.call('ZREM', P .. 'ok:' .. wid, id)
  redis.call('HINCRBY', P .. 'w:' .. wid, 'np', 1)
  redis.call('HDEL', d, 'done')
end
redis.call('HSET', d, 'st', 'pending', 'age0', now, 'next', now, 'n0', f[3] or 0)
redis.call('ZADD', KEYS[1], now, id)
return 'ok'
