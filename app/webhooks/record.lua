-- Record one attempt of a delivery. Success finishes it, whoever holds the lease now (at least
-- once: a late success still counts). A failure reschedules it only for the deliverer whose
-- claim is the current one, after `delay` but never past its maximum age; at that age it is
-- dead-lettered. KEYS: due. ARGV: prefix, did, token, ok '1'|'0', attempt JSON, HTTP status
-- ('' for none), error, delay ms (< 0: no retry), max age ms, attempts kept, delivered kept, dead-letter cap.
-- Returns 'delivered', 'retry', 'dead', 'late' (already finished), 'stale' (claimed again
-- since) or 'gone'.
local id, tok, ok, attempt = ARGV[2], ARGV[3], ARGV[4] == '1', ARGV[5]
local code, err, delay = ARGV[6], ARGV[7], tonumber(ARGV[8])
local max_age, keep_attempts = tonumber(ARGV[9]), tonumber(ARGV[10])
local keep_delivered, dead_max = tonumber(ARGV[11]), tonumber(ARGV[12])
local d = P .. 'd:' .. id
local f = redis.call('HMGET', d, 'st', 'wid', 'tok', 'age0')
local st, wid, cur, age0 = f[1], f[2], f[3], tonumber(f[4])
if not st then return 'gone' end
local now = now_ms()
redis.call('LPUSH', P .. 'a:' .. id, attempt)
redis.call('LTRIM', P .. 'a:' .. id, 0, keep_attempts - 1)
redis.call('HINCRBY', d, 'n', 1)
if st ~= 'pending' then return 'late' end
if not ok and cur ~= tok then return 'stale' end
redis.call('HSET', d, 'last_at', now, 'last_code', code, 'last_err', err)
if ok then
  redis.call('HSET', d, 'st', 'delivered', 'done', now, 'next', '')
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', P .. 'ok:' .. wid, now, id)
  pending_done(wid)
  trim(P .. 'ok:' .. wid, keep_delivered)
  return 'delivered'
end
if delay < 0 or now >= age0 + max_age then
  to_dead(id, wid, now, nil, dead_max)
  return 'dead'
end
local nxt = math.min(now + delay, age0 + max_age)
redis.call('ZADD', KEYS[1], nxt, id)
redis.call('HSET', d, 'next', nxt)
return 'retry'
