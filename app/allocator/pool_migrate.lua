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
local full = {}
if not pool.room then
  local room, capacity = 0, 0
  local now = now_ms()
  for _, gid in ipairs(redis.call('HVALS', P .. KEY.slots)) do
    local g = read(group_key(P, gid), GROUP, 'capacity', 'count', 'enabled', 'expires_at')
    local open = redis.call('ZSCORE', P .. KEY.open, gid) ~= false
    local usable = g.enabled == '1' and (not g.expires_at or tonumber(g.expires_at) > now)
    if open then
      room = room + math.max(tonumber(g.capacity or 0) - tonumber(g.count or 0), 0)
    elseif usable then
      full[#full + 1] = g.expires_at or '+inf'
      full[#full + 1] = gid
    end
    if open or usable then capacity = capacity + tonumber(g.capacity or 0) end
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
if #full > 0 then redis.call('ZADD', P .. KEY.full, unpack(full)) end
return #set / 2
