-- Put a pool's groups in the given order: every group once, positions 1..n, in one step.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2..] group ids.
-- Returns 'ok' | 'no_pool' | 'mismatch' (not exactly the pool's groups).
local P = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then return 'no_pool' end
local n = #ARGV - 1
-- fwg maps every group's Fenwick slot to its id: it is the index of all the pool's groups
if redis.call('HLEN', P .. 'fwg') ~= n then return 'mismatch' end
local seen, indexed = {}, {}
for i = 2, #ARGV do
  local gid = ARGV[i]
  if seen[gid] or redis.call('EXISTS', P .. 'g:' .. gid) == 0 then return 'mismatch' end
  seen[gid] = true
  indexed[i] = redis.call('ZSCORE', P .. 'av', gid) ~= false
end

-- Writes from here on.
for i = 2, #ARGV do
  local gid, pos = ARGV[i], i - 1
  redis.call('HSET', P .. 'g:' .. gid, 'pos', pos)
  if indexed[i] then redis.call('ZADD', P .. 'av', pos, gid) end
end
redis.call('HSET', KEYS[1], 'seq', n)
redis.call('HDEL', KEYS[1], 'rr')
return 'ok'
