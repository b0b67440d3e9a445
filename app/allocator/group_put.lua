-- Create or update one group and bring the pool's open indexes in line with it, so that a
-- change takes effect on the very next scan (a raised capacity makes a full group open again, a
-- lowered one below its count takes it out).
-- The pool's room and capacity follow, the change goes on the pool's events (group.created or
-- group.updated, with the API key behind it), and a change that gives an exhausted pool room
-- again sends pool.recovered.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] gid ('' on create: the next free g<N>),
-- ARGV[3] 'create' | 'update', ARGV[4] the actor ('' = none), then pairs of GROUP field names
-- (app/store/schema.py) and values; an empty value removes the field (expires_at, mode).
-- Returns {'ok', gid} | 'no_pool' | 'exists' | 'not_found'.
local P, gid, op, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local pool = read(KEYS[1], POOL, 'status', 'slots', 'last_position', 'group_seq', 'room',
                  'capacity', 'exhausted')
if not pool.status then return 'no_pool' end
local gseq = nil
if gid == '' then
  -- ids chosen by operators may already hold some g<N>: take the next one that is free
  gseq = tonumber(pool.group_seq or 0)
  repeat
    gseq = gseq + 1
    gid = 'g' .. gseq
  until redis.call('EXISTS', group_key(P, gid)) == 0
end
local gkey = group_key(P, gid)
local exists = redis.call('EXISTS', gkey) == 1
if op == 'create' and exists then return 'exists' end
if op == 'update' and not exists then return 'not_found' end

local old = {}
if exists then
  local stored = read(gkey, GROUP, 'count', 'capacity', 'enabled', 'expires_at', 'weight',
                      'position', 'slot')
  for f, v in pairs(stored) do old[f] = v or nil end
else
  old = {count = '0', capacity = DEFAULT.capacity, enabled = '1', weight = DEFAULT.weight}
end
local new, set, del, given = {}, {}, {}, {}
for f, v in pairs(old) do new[f] = v end
for i = 5, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if not GROUP[f] then return redis.error_reply('ERR unknown group field ' .. f) end
  given[#given + 1] = f
  if v == '' then
    new[f] = nil
    del[#del + 1] = GROUP[f]
  else
    new[f] = v
    set[#set + 1] = GROUP[f]
    set[#set + 1] = v
  end
end

local n = tonumber(pool.slots or 0)
local append_node = nil
if not exists then
  if not new.position then new.position = tostring(tonumber(pool.last_position or 0) + 1) end
  -- A new Fenwick slot n+1 starts at weight 0: its node covers (i - lowbit(i), i].
  local i = n + 1
  append_node = fw_prefix(P, i - 1) - fw_prefix(P, i - bit.band(i, -i))
  new.slot = tostring(i)
  set, del = {}, {}
  for f, v in pairs(new) do
    set[#set + 1] = GROUP[f]
    set[#set + 1] = v
  end
end
local was = exists and redis.call('ZSCORE', P .. KEY.open, gid) ~= false
local was_full = exists and redis.call('ZSCORE', P .. KEY.full, gid) ~= false
local now = now_ms()
local is = is_open(new, now)
-- usable but not open: enabled, not expired, full
local is_full = not is and new.enabled == '1'
  and (not new.expires_at or tonumber(new.expires_at) > now)
local head = (was or is) and ex_head(P, 1)
-- this group's share of the pool's room (while open) and capacity (while usable)
local function places(g, open)
  return open and math.max(tonumber(g.capacity) - tonumber(g.count), 0) or 0
end
local room_delta = places(new, is) - places(old, was)
local cap_delta = ((is or is_full) and tonumber(new.capacity) or 0)
  - ((was or was_full) and tonumber(old.capacity) or 0)
local recovered = pool.exhausted == '1' and pool.room and tonumber(pool.room) + room_delta > 0

-- Writes from here on.
if gseq then redis.call('HSET', KEYS[1], POOL.group_seq, gseq) end
if not exists then
  n = n + 1
  redis.call('HSET', P .. KEY.weights, n, append_node)
  redis.call('HSET', P .. KEY.slots, n, gid)
  redis.call('HSET', KEYS[1], POOL.slots, n)
  if tonumber(new.position) > tonumber(pool.last_position or 0) then
    redis.call('HSET', KEYS[1], POOL.last_position, new.position)
  end
end
if #set > 0 then redis.call('HSET', gkey, unpack(set)) end
if #del > 0 then redis.call('HDEL', gkey, unpack(del)) end

if was and not is then
  unindex(P, n, gid, old.slot, old.weight)
elseif is and not was then
  index(P, n, gid, new)
elseif is and was then
  redis.call('ZADD', P .. KEY.open, new.position, gid)
  redis.call('ZADD', P .. KEY.open_by_fill, tonumber(new.count) / tonumber(new.capacity), gid)
  if new.expires_at then
    redis.call('ZADD', P .. KEY.open_expiring, new.expires_at, gid)
  else
    redis.call('ZREM', P .. KEY.open_expiring, gid)
  end
  fw_add(P, n, tonumber(new.slot), tonumber(new.weight) - tonumber(old.weight))
end
if head then set_next_expiry(P, ex_min(head, {[gid] = true}, is and new.expires_at or nil)) end
if is_full then
  redis.call('ZADD', P .. KEY.full, new.expires_at or '+inf', gid)
elseif was_full then
  redis.call('ZREM', P .. KEY.full, gid)
end
add_room(P, pool.room, room_delta, cap_delta)
emit(P, exists and 'group.updated' or 'group.created', gid, actor, {fields = given})
if recovered then
  redis.call('HDEL', KEYS[1], POOL.exhausted)
  emit(P, 'pool.recovered', '', actor, {remaining = tonumber(pool.room) + room_delta})
end
return {'ok', gid}
