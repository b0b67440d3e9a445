-- Create a pool, or update fields of an existing one ('default': only the fields it lacks).
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] 'create' | 'update' | 'default', then pairs of
-- POOL field names (app/store/schema.py) and values; an empty value removes the field.
-- Returns 'ok' | 'exists' | 'not_found' | 'deleting' (a delete of that id is still running).
local P, op = ARGV[1], ARGV[2]
local exists = redis.call('EXISTS', KEYS[1]) == 1
if op == 'create' and redis.call('EXISTS', P .. KEY.deleting) == 1 then return 'deleting' end
if op == 'create' and exists then return 'exists' end
if op ~= 'create' and not exists then return 'not_found' end
local before = redis.call('HGET', KEYS[1], POOL.strategy)
local set, del, strategy = {}, {}, before
for i = 3, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if not POOL[f] then return redis.error_reply('ERR unknown pool field ' .. f) end
  if op == 'default' and redis.call('HEXISTS', KEYS[1], POOL[f]) == 1 then
    v = nil
  elseif f == 'strategy' then
    strategy = v
  end
  if v == nil then  -- kept as it is
  elseif v == '' then
    del[#del + 1] = POOL[f]
  else
    set[#set + 1] = POOL[f]
    set[#set + 1] = v
  end
end
-- The scan keeps fill ratios fresh only while a pool is least_filled: refresh them all when a
-- pool switches to it (O(groups), an admin action).
local refresh = {}
if strategy == 'least_filled' and before ~= 'least_filled' then
  for _, gid in ipairs(redis.call('ZRANGE', P .. KEY.open_by_fill, 0, -1)) do
    local g = read(group_key(P, gid), GROUP, 'count', 'capacity')
    refresh[#refresh + 1] = tonumber(g.count) / tonumber(g.capacity)
    refresh[#refresh + 1] = gid
  end
end

-- Writes from here on.
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
for i = 1, #refresh, 2 do
  redis.call('ZADD', P .. KEY.open_by_fill, refresh[i], refresh[i + 1])
end
return 'ok'
