-- The scheduler's tick for one pool (app/events/scheduler.py, once a minute, one instance of
-- the deployment): what happens with time, whether or not anyone scans.
--   - the zone's UTC offset follows daylight saving time (POOL.tz_offset);
--   - open groups whose code expired leave the indexes (group.expired), as a scan would, and
--     full ones leave the pool's capacity;
--   - group.expiring, once per code, expiring_hours before it expires;
--   - pool.low from the forecast, which counts room that expires (the scan's own check
--     cannot: it knows no group's expiry), at most once per low_every minutes.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] the zone's UTC offset now (s), ARGV[3] the
-- forecast's minutes to exhaustion ('' = none), ARGV[4] its rate per minute, ARGV[5] the room
-- it counts. Returns {groups expired, groups warned, 1 if pool.low fired else 0}.
local P = ARGV[1]
local pool = read(KEYS[1], POOL, 'status', 'tz_offset', 'next_expiry', 'slots', 'room',
                  'capacity', 'exhausted', 'low_at', 'low_minutes', 'low_every',
                  'expiring_hours')
if not pool.status then return {0, 0, 0} end
local now = now_ms()

local expired = {}
if pool.next_expiry and now >= tonumber(pool.next_expiry) then
  local gids = redis.call('ZRANGEBYSCORE', P .. KEY.open_expiring, '-inf', now, 'LIMIT', 0, 1000)
  for i, gid in ipairs(gids) do
    expired[i] = {gid, read(group_key(P, gid), GROUP, 'slot', 'weight', 'capacity', 'count',
                            'expires_at')}
  end
end
-- full groups whose code expired: no longer usable, their capacity leaves the pool's
local stale = {}
for i, gid in ipairs(redis.call('ZRANGEBYSCORE', P .. KEY.full, '-inf', now, 'LIMIT', 0, 1000)) do
  stale[i] = {gid, tonumber(redis.call('HGET', group_key(P, gid), GROUP.capacity) or 0)}
end
local next_expiry = nil
if #expired > 0 then
  local gone = {}
  for _, e in ipairs(expired) do gone[e[1]] = true end
  next_expiry = ex_min(ex_head(P, #expired), gone, nil)
end

local hours = tonumber(pool.expiring_hours or DEFAULT.expiring_hours)
local warn = {}
for _, gid in ipairs(redis.call('ZRANGEBYSCORE', P .. KEY.open_expiring, '(' .. now,
                                now + hours * 3600000, 'LIMIT', 0, 1000)) do
  local g = read(group_key(P, gid), GROUP, 'expires_at', 'expiring_warned')
  if g.expires_at and g.expiring_warned ~= g.expires_at then warn[#warn + 1] = {gid, g.expires_at} end
end

local low = nil
local minutes = tonumber(ARGV[3])
if minutes and pool.status == 'active' and pool.exhausted ~= '1' and tonumber(ARGV[5]) > 0
    and minutes < tonumber(pool.low_minutes or DEFAULT.low_minutes)
    and (not pool.low_at
         or now - tonumber(pool.low_at) >= tonumber(pool.low_every or DEFAULT.low_every) * 60000)
then
  local room, capacity = tonumber(ARGV[5]), tonumber(pool.capacity or 0)
  low = {reason = 'rate', remaining = room, capacity = capacity,
         percent_left = capacity > 0 and math.floor(room * 1000 / capacity + 0.5) / 10 or 0,
         minutes_left = math.floor(minutes * 10 + 0.5) / 10,
         rate_per_min = math.floor(tonumber(ARGV[4]) * 100 + 0.5) / 100}
end

-- Writes from here on.
if pool.tz_offset ~= ARGV[2] then redis.call('HSET', KEYS[1], POOL.tz_offset, ARGV[2]) end
local n = tonumber(pool.slots or 0)
local room_delta, cap_delta = 0, 0
for _, e in ipairs(expired) do
  local gid, g = e[1], e[2]
  unindex(P, n, gid, g.slot, g.weight)
  room_delta = room_delta - math.max(tonumber(g.capacity) - tonumber(g.count), 0)
  cap_delta = cap_delta - tonumber(g.capacity)
  emit(P, 'group.expired', gid, '', {expires_at = tonumber(g.expires_at)})
end
for _, s in ipairs(stale) do
  redis.call('ZREM', P .. KEY.full, s[1])
  cap_delta = cap_delta - s[2]
end
if #expired > 0 then set_next_expiry(P, next_expiry) end
add_room(P, pool.room, room_delta, cap_delta)
for _, w in ipairs(warn) do
  emit(P, 'group.expiring', w[1], '', {
    expires_at = tonumber(w[2]),
    hours_left = math.floor((tonumber(w[2]) - now) / 360000 + 0.5) / 10})
  redis.call('HSET', group_key(P, w[1]), GROUP.expiring_warned, w[2])
end
if low then
  emit(P, 'pool.low', '', '', low)
  redis.call('HSET', KEYS[1], POOL.low_at, now)
end
return {#expired, #warn, low and 1 or 0}
