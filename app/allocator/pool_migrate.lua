-- Bring a pool made by an older version up to the current data model (at start-up; idempotent,
-- quiet): a draw salt, the open groups' room and capacity, the statistics' retention and the
-- zone, where the pool lacks them.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] a new draw salt, ARGV[3] stats_ttl (s),
-- ARGV[4] the default timezone, ARGV[5] its UTC offset now (s).
-- Returns the number of fields it set.
local P = ARGV[1]
local pool = read(KEYS[1], POOL, 'status', 'draw_salt', 'room', 'stats_ttl', 'timezone')
if not pool.status then return 0 end
local set = {}
if not pool.draw_salt then
  set[#set + 1] = POOL.draw_salt
  set[#set + 1] = ARGV[2]
end
if not pool.room then
  local room, capacity = 0, 0
  for _, gid in ipairs(redis.call('ZRANGE', P .. KEY.open, 0, -1)) do
    local g = read(group_key(P, gid), GROUP, 'capacity', 'count')
    room = room + math.max(tonumber(g.capacity or 0) - tonumber(g.count or 0), 0)
    capacity = capacity + tonumber(g.capacity or 0)
  end
  set[#set + 1] = POOL.room
  set[#set + 1] = room
  set[#set + 1] = POOL.capacity
  set[#set + 1] = capacity
end
if not pool.stats_ttl then
  set[#set + 1] = POOL.stats_ttl
  set[#set + 1] = ARGV[3]
end
if not pool.timezone then
  set[#set + 1] = POOL.timezone
  set[#set + 1] = ARGV[4]
  set[#set + 1] = POOL.tz_offset
  set[#set + 1] = ARGV[5]
end
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
return #set / 2
