-- Create a pool, or update fields of an existing one. An empty value removes the field.
-- KEYS[1] pool hash. ARGV[1] 'create' | 'update', then field/value pairs.
-- Returns 'ok' | 'exists' | 'not_found' | 'deleting' (a delete of that id is still running).
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[1] == 'create' and redis.call('EXISTS', string.sub(KEYS[1], 1, -5) .. 'deleting') == 1 then
  return 'deleting'
end
local strategy = redis.call('HGET', KEYS[1], 'strategy')
if ARGV[1] == 'create' and exists then return 'exists' end
if ARGV[1] == 'update' and not exists then return 'not_found' end
local set, del = {}, {}
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    del[#del + 1] = ARGV[i]
  else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
end
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end

-- The scan keeps least_filled scores fresh only while a pool uses that strategy: refresh them
-- all when a pool switches to it (O(groups), an admin action).
local now_strategy = redis.call('HGET', KEYS[1], 'strategy')
if now_strategy == 'least_filled' and strategy ~= 'least_filled' then
  local P = string.sub(KEYS[1], 1, -5)
  for _, gid in ipairs(redis.call('ZRANGE', P .. 'lf', 0, -1)) do
    local g = redis.call('HMGET', P .. 'g:' .. gid, 'c', 'cap')
    redis.call('ZADD', P .. 'lf', tonumber(g[1]) / tonumber(g[2]), gid)
  end
end
return 'ok'
