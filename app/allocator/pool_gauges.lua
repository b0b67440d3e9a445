-- What the per-pool Prometheus gauges show, read at scrape time (app/pool_metrics.py): the
-- pool's state, its groups by state, its totals by outcome and its rate; with the open groups
-- that expire (for the forecast) when there are any. Reads only.
-- The groups are read a range of slots at a time (slots 1..POOL.slots map to the group ids,
-- KEY.slots): a call reads at most DEFAULT.gauge_slots of them, so that a pool of 100,000
-- codes does not hold Redis, and every scan waiting on it, for half a second; the caller
-- calls again from the next slot and adds the calls up.
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] the current minute (epoch minutes), ARGV[3]
-- the first slot to read (1 for a first call).
-- Returns {status, valid_from, valid_until, room, capacity, exhausted, next_expiry, strategy,
--          {open, full, expired, disabled}, {field, value, ...} totals, allocations in the last
--          5 minutes, {gid, remaining, expires_at, weight, capacity, position, ...} or {},
--          the next slot to read, or 0 when this call read the last}: room, capacity, the
--          groups by state and the expiring groups are of this call's slots only.
local P = ARGV[1]
local pool = read(KEYS[1], POOL, 'status', 'valid_from', 'valid_until', 'exhausted',
                  'strategy', 'slots')
if not pool.status then return false end
local now = now_ms()
local open, full, expired, disabled = 0, 0, 0, 0
-- Room, capacity and the next expiry from the groups as they are now: the pool's own `room`
-- and `next_expiry` still count a code that expired until a scan or the tick takes it out,
-- and its `capacity` leaves out full groups.
local room, capacity, next_expiry = 0, 0, nil
local expiring = {}
local has_expiring = redis.call('ZCARD', P .. KEY.open_expiring) > 0
local first, slots = tonumber(ARGV[3] or 1), tonumber(pool.slots or 0)
local last = math.min(first + tonumber(DEFAULT.gauge_slots) - 1, slots)
local gids = {}
if last >= first then
  local range = {}
  for slot = first, last do range[#range + 1] = tostring(slot) end
  gids = redis.call('HMGET', P .. KEY.slots, unpack(range))
end
for i = 1, #gids do
  local gid = gids[i]  -- false: a deleted group's slot
  local g = gid and read(group_key(P, gid), GROUP, 'enabled', 'count', 'capacity',
                         'expires_at', 'weight', 'position') or {}
  if g.capacity then
    if g.enabled ~= '1' then
      disabled = disabled + 1
    elseif g.expires_at and tonumber(g.expires_at) <= now then
      expired = expired + 1
    elseif tonumber(g.count) >= tonumber(g.capacity) then
      full = full + 1
      capacity = capacity + tonumber(g.capacity)
    else
      open = open + 1
      room = room + tonumber(g.capacity) - tonumber(g.count)
      capacity = capacity + tonumber(g.capacity)
      if g.expires_at and (not next_expiry or tonumber(g.expires_at) < next_expiry) then
        next_expiry = tonumber(g.expires_at)
      end
      if has_expiring then
        local n = #expiring
        expiring[n + 1] = gid
        expiring[n + 2] = tonumber(g.capacity) - tonumber(g.count)
        expiring[n + 3] = g.expires_at or ''
        expiring[n + 4] = g.weight or '1'
        expiring[n + 5] = g.capacity
        expiring[n + 6] = g.position or '0'
      end
    end
  end
end
local minute = tonumber(ARGV[2])
local fields = {}
for m = minute - 4, minute do fields[#fields + 1] = m end
local recent = 0
for _, v in ipairs(redis.call('HMGET', P .. KEY.rate, unpack(fields))) do
  recent = recent + tonumber(v or 0)
end
return {pool.status, pool.valid_from or '', pool.valid_until or '', room, capacity,
        pool.exhausted or '', next_expiry and string.format('%d', next_expiry) or '',
        pool.strategy or '',
        {open, full, expired, disabled}, redis.call('HGETALL', P .. KEY.stats), recent,
        expiring, last < slots and last + 1 or 0}
