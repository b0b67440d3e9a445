-- Delete a webhook and every delivery it has (pending, delivered, dead). KEYS: ids.
-- ARGV: prefix, wid. Returns 1, or 0 for an unknown webhook.
local wid = ARGV[2]
if redis.call('EXISTS', P .. 'w:' .. wid) == 0 then return 0 end
local ids = redis.call('ZRANGE', P .. 'h:' .. wid, 0, -1)
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'due', id)
  redis.call('ZREM', P .. 'dead', id)
  redis.call('DEL', P .. 'd:' .. id, P .. 'a:' .. id)
end
redis.call('DEL', P .. 'w:' .. wid, P .. 'h:' .. wid, P .. 'ok:' .. wid)
redis.call('ZREM', KEYS[1], wid)
return 1
