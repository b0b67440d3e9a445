-- Delete one group and take it out of every index. Its Fenwick slot stays, at weight 0.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] gid. Returns 'ok' | 'not_found'.
local P, gid = ARGV[1], ARGV[2]
local g = redis.call('HMGET', P .. 'g:' .. gid, 'fi', 'w')
if not g[1] then return 'not_found' end
local n = tonumber(redis.call('HGET', KEYS[1], 'fwn') or 0)
local was = redis.call('ZSCORE', P .. 'av', gid) ~= false
local head = was and ex_head(P, 1)

if was then
  unindex(P, n, gid, g[1], g[2])
  set_exn(P, ex_min(head, {[gid] = true}, nil))
end
redis.call('HDEL', P .. 'fwg', g[1])
redis.call('DEL', P .. 'g:' .. gid)
return 'ok'
