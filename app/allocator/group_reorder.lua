-- Put a pool's groups in the given order: every group once, positions 1..n, in one step.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] the actor ('' = none), ARGV[3..] group ids.
-- Returns 'ok' | 'no_pool' | 'mismatch' (not exactly the pool's groups).
local P, actor = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then return 'no_pool' end
local n = #ARGV - 2
-- KEY.slots maps every group's slot to its id: it is the index of all the pool's groups
if redis.call('HLEN', P .. KEY.slots) ~= n then return 'mismatch' end
local seen, indexed = {}, {}
for i = 3, #ARGV do
  local gid = ARGV[i]
  if seen[gid] or redis.call('EXISTS', group_key(P, gid)) == 0 then return 'mismatch' end
  seen[gid] = true
  indexed[i] = redis.call('ZSCORE', P .. KEY.open, gid) ~= false
end

-- Writes from here on.
for i = 3, #ARGV do
  local gid, pos = ARGV[i], i - 2
  redis.call('HSET', group_key(P, gid), GROUP.position, pos)
  if indexed[i] then redis.call('ZADD', P .. KEY.open, pos, gid) end
end
redis.call('HSET', KEYS[1], POOL.last_position, n)
redis.call('HDEL', KEYS[1], POOL.rr_cursor)
emit(P, 'pool.updated', '', actor, {fields = {'group_order'}})
return 'ok'
