-- Claim up to `limit` due deliveries for one deliverer: each moves to now + lease in `due`, so
-- no other deliverer takes it until the lease ends (a deliverer that dies leaves it to expire).
-- Each claim bumps the delivery's token: a result recorded with an older token is late.
-- A disabled webhook's deliveries wait (one lease at a time) until it is enabled again or they
-- reach the maximum age. A webhook with a rate limit ('rpm', the chat robots': WeCom and
-- DingTalk take 20 messages a minute, DingTalk then blocks for 10 minutes) gets at most that
-- many claims per minute; the rest wait for the next minute (this is not an attempt).
-- KEYS: due. ARGV: prefix, lease ms, limit, max age ms, dead-letter cap.
-- Returns {id, token, webhook id, ...}.
local lease, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_age, dead_max = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local d = P .. 'd:' .. id
  local f = redis.call('HMGET', d, 'st', 'wid', 'age0')
  local st, wid, age0 = f[1], f[2], tonumber(f[3])
  if st ~= 'pending' or not wid then
    redis.call('ZREM', KEYS[1], id)  -- finished or gone: a stale queue entry
  else
    local w = redis.call('HMGET', P .. 'w:' .. wid, 'en', 'rpm')
    local en, rpm = w[1], tonumber(w[2]) or 0
    local window = math.floor(now / 60000)
    local rate_key = P .. 'rl:' .. wid .. ':' .. window
    if en == '1' and rpm > 0 and (tonumber(redis.call('GET', rate_key)) or 0) >= rpm then
      redis.call('ZADD', KEYS[1], (window + 1) * 60000, id)
      redis.call('HSET', d, 'next', (window + 1) * 60000)
    elseif en == '1' then
      if rpm > 0 then
        redis.call('INCR', rate_key)
        redis.call('PEXPIRE', rate_key, 120000)
      end
      local tok = redis.call('HINCRBY', d, 'tok', 1)
      redis.call('ZADD', KEYS[1], now + lease, id)
      redis.call('HSET', d, 'next', now + lease)
      out[#out + 1] = id
      out[#out + 1] = tok
      out[#out + 1] = wid
    elseif not en then  -- the webhook is gone (its deletion removes its deliveries too)
      redis.call('ZREM', KEYS[1], id)
      forget(id, wid)
    elseif now < age0 + max_age then
      redis.call('ZADD', KEYS[1], math.min(now + lease, age0 + max_age), id)
    else
      to_dead(id, wid, now, 'not sent: the webhook was disabled', dead_max)
    end
  end
end
return out
