-- Recorder: the events a scan causes (app/events/model.py), appended to the pool's stream:
--   group.full      a group reached its capacity
--   group.expired   the scan found an open group's code expired and took it out
--   pool.exhausted  the first fallback after the pool had room (POOL.exhausted is set)
--   pool.recovered  a new allocation while POOL.exhausted was set (group_put sends it first
--                   when an operator makes room)
--   pool.low        less than low_percent of the capacity left, or out of room within
--                   low_minutes at the rate of the last 5 minutes (checked by the first
--                   allocation of each minute, POOL.low_checked, once there were at least
--                   DEFAULT.low_evidence allocations in them); at most once per low_every
--                   minutes (POOL.low_at)
ALLOCATION_FIELDS[#ALLOCATION_FIELDS + 1] = 'exhausted'
ALLOCATION_FIELDS[#ALLOCATION_FIELDS + 1] = 'low_at'
ALLOCATION_FIELDS[#ALLOCATION_FIELDS + 1] = 'low_minutes'
ALLOCATION_FIELDS[#ALLOCATION_FIELDS + 1] = 'low_percent'
ALLOCATION_FIELDS[#ALLOCATION_FIELDS + 1] = 'low_every'
ALLOCATION_FIELDS[#ALLOCATION_FIELDS + 1] = 'low_checked'
do
  local events, set_flag, clear_flag, low_now, checked  -- the state of a call, set by read()

  local function event(type, gid, data)
    events[#events + 1] = {type, gid, data}
  end

  -- New allocations per minute over the 5 minutes up to now (this call's included), and how
  -- many there were: fewer than DEFAULT.low_evidence say too little to forecast from.
  local function rate_per_minute(facts, now)
    local minute = math.floor(now / 60000)
    local fields = {}
    for m = minute - 4, minute do fields[#fields + 1] = m end
    local total = facts.allocated
    for _, v in ipairs(redis.call('HMGET', facts.prefix .. KEY.rate, unpack(fields))) do
      total = total + tonumber(v or 0)
    end
    return total / (4 + (now % 60000) / 60000), total
  end

  RECORDERS[#RECORDERS + 1] = {
    read = function(facts)
      events, set_flag, clear_flag, low_now, checked = {}, false, false, nil, nil
      local pool = facts.pool
      for _, gid in ipairs(facts.filled) do
        local g = facts.groups[gid]
        event('group.full', gid, {capacity = tonumber(g.capacity), count = g.count})
      end
      for _, e in ipairs(facts.expired) do
        event('group.expired', e[1], {expires_at = tonumber(e[2])})
      end
      local fallbacks = 0
      for i = 1, #facts.scans do
        if facts.scans[i].reply[1] == OUTCOME.fallback then fallbacks = fallbacks + 1 end
      end
      local exhausted = pool.exhausted == '1'
      if exhausted and facts.allocated > 0 then
        event('pool.recovered', '', {remaining = facts.room or cjson.null})
        exhausted, clear_flag = false, true
      end
      if fallbacks > 0 and not exhausted then
        event('pool.exhausted', '', {})
        set_flag, clear_flag = true, false
        return
      end
      local room, capacity = facts.room, facts.capacity
      if facts.allocated == 0 or not room or not capacity or capacity <= 0 or room <= 0 then
        return
      end
      local now = facts.clock()
      local every = tonumber(pool.low_every or DEFAULT.low_every) * 60000
      if pool.low_at and now - tonumber(pool.low_at) < every then return end
      local percent = room * 100 / capacity
      local reason, rate, minutes = nil, nil, nil
      local minute = math.floor(now / 60000)
      if percent < tonumber(pool.low_percent or DEFAULT.low_percent) then
        reason = 'room'
      elseif pool.low_checked ~= tostring(minute) then
        checked = minute
        local seen
        rate, seen = rate_per_minute(facts, now)
        minutes = rate > 0 and room / rate or nil
        if minutes and seen >= tonumber(DEFAULT.low_evidence)
            and minutes < tonumber(pool.low_minutes or DEFAULT.low_minutes) then
          reason = 'rate'
        end
      end
      if reason then
        rate = rate or rate_per_minute(facts, now)
        minutes = minutes or (rate > 0 and room / rate or nil)
        low_now = now
        event('pool.low', '', {
          reason = reason, remaining = room, capacity = capacity,
          percent_left = math.floor(percent * 10 + 0.5) / 10,
          minutes_left = minutes and math.floor(minutes * 10 + 0.5) / 10 or cjson.null,
          rate_per_min = math.floor(rate * 100 + 0.5) / 100,
        })
      end
    end,

    write = function(facts)
      for _, e in ipairs(events) do emit(facts.prefix, e[1], e[2], '', e[3]) end
      if set_flag then redis.call('HSET', facts.pool_key, POOL.exhausted, '1') end
      if clear_flag then redis.call('HDEL', facts.pool_key, POOL.exhausted) end
      if low_now then redis.call('HSET', facts.pool_key, POOL.low_at, low_now) end
      if checked then redis.call('HSET', facts.pool_key, POOL.low_checked, checked) end
    end,
  }
end
