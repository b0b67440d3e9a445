-- Delete one group and take it out of every index. Its Fenwick slot stays, at weight 0.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] gid. Returns 'ok' | 'not_found'.
local P, gid = ARGV[1], ARGV[2]
local g = read(group_key(P, gid), GROUP, 'slot', 'weight')
if not g.slot then return 'not_found' end
local n = tonumber(redis.call('HGET', KEYS[1], POOL.slots) or 0)
local was = redis.call('ZSCORE', P .. KEY.open, gid) ~= false
local head = was and ex_head(P, 1)

if was then
  unindex(P, n, gid, g.slot, g.weight)
  set_next_expiry(P, ex_min(head, {[gid] = true}, nil))
end
redis.call('HDEL', P .. KEY.slots, g.slot)
redis.call('DEL', group_key(P, gid))
return 'ok'
