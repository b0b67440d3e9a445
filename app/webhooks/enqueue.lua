-- One delivery per (webhook, event), once: a pair enqueued before (its delivery still kept, or
-- its 'seen' marker alive) creates nothing. A disabled or deleted webhook gets nothing.
-- KEYS: due. ARGV: prefix, event id, event JSON, language, seen TTL s, max pending per webhook,
-- dead-letter cap, then (wid, did) pairs. Returns the ids of the deliveries created.
local eid, event, lang = ARGV[2], ARGV[3], ARGV[4]
local seen_ttl, max_pending, dead_max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local created = {}
for i = 8, #ARGV, 2 do
  local wid, id = ARGV[i], ARGV[i + 1]
  local w = P .. 'w:' .. wid
  local d = P .. 'd:' .. id
  if redis.call('HGET', w, 'en') == '1'
      and redis.call('EXISTS', P .. 'seen:' .. id) == 0
      and redis.call('EXISTS', d) == 0 then
    redis.call('HSET', d, 'wid', wid, 'eid', eid, 'event', event, 'lang', lang, 'st', 'pending',
               'created', now, 'age0', now, 'next', now, 'tok', 0, 'n', 0, 'n0', 0)
    redis.call('SET', P .. 'seen:' .. id, '1', 'EX', seen_ttl)
    redis.call('ZADD', P .. 'h:' .. wid, now, id)
    local np = redis.call('HINCRBY', w, 'np', 1)
    if np > max_pending then
      to_dead(id, wid, now, 'not sent: more than ' .. max_pending .. ' deliveries were pending',
              dead_max)
    else
      redis.call('ZADD', KEYS[1], now, id)
    end
    created[#created + 1] = id
  end
end
return created
