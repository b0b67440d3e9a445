-- Delete one group and take it out of every index (group.deleted). Its Fenwick slot stays, at
-- weight 0.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] gid, ARGV[3] the actor ('' = none).
-- Returns 'ok' | 'not_found'.
local P, gid, actor = ARGV[1], ARGV[2], ARGV[3]
local g = read(group_key(P, gid), GROUP, 'slot', 'weight', 'capacity', 'count')
if not g.slot then return 'not_found' end
local pool = read(KEYS[1], POOL, 'slots', 'room')
local n = tonumber(pool.slots or 0)
local was = redis.call('ZSCORE', P .. KEY.open, gid) ~= false
local was_full = redis.call('ZSCORE', P .. KEY.full, gid) ~= false
local head = was and ex_head(P, 1)

if was then
  unindex(P, n, gid, g.slot, g.weight)
  set_next_expiry(P, ex_min(head, {[gid] = true}, nil))
  add_room(P, pool.room, -math.max(tonumber(g.capacity) - tonumber(g.count), 0),
           -tonumber(g.capacity))
end
if was_full then
  redis.call('ZREM', P .. KEY.full, gid)
  add_room(P, pool.room, 0, -tonumber(g.capacity))
end
redis.call('HDEL', P .. KEY.slots, g.slot)
redis.call('DEL', group_key(P, gid))
emit(P, 'group.deleted', gid, actor, {})
return 'ok'
