-- Create a pool, or update fields of an existing one. The change goes on the pool's events with
-- the API key behind it: pool.created, pool.paused / pool.resumed when the status changes,
-- pool.updated for the other fields.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] 'create' | 'update', ARGV[3] the actor
-- ('' = none), then pairs of POOL field names (app/store/schema.py) and values; an empty value
-- removes the field.
-- Returns 'ok' | 'exists' | 'not_found' | 'deleting' (a delete of that id is still running).
local P, op, actor = ARGV[1], ARGV[2], ARGV[3]
-- what the service layer keeps up by itself, not an operator's change
local internal = {created = true, draw_salt = true, room = true, capacity = true,
                  tz_offset = true, stats_ttl = true}
local exists = redis.call('EXISTS', KEYS[1]) == 1
if op == 'create' and redis.call('EXISTS', P .. KEY.deleting) == 1 then return 'deleting' end
if op == 'create' and exists then return 'exists' end
if op == 'update' and not exists then return 'not_found' end
local current = read(KEYS[1], POOL, 'strategy', 'status')
local before = current.strategy
local set, del, strategy, changed, status = {}, {}, before, {}, nil
for i = 4, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if not POOL[f] then return redis.error_reply('ERR unknown pool field ' .. f) end
  if not internal[f] then
    if f == 'status' then status = v else changed[#changed + 1] = f end
  end
  if f == 'strategy' then strategy = v end
  if v == '' then
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
if op == 'create' then
  emit(P, 'pool.created', '', actor, {fields = changed})
elseif op == 'update' then
  if status and status ~= current.status then
    emit(P, status == 'paused' and 'pool.paused' or 'pool.resumed', '', actor, {})
  end
  if #changed > 0 then emit(P, 'pool.updated', '', actor, {fields = changed}) end
end
return 'ok'
