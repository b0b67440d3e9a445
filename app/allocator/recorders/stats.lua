-- Recorder: statistics. Every scan that reached the pool counts, by outcome (a page view):
--   KEY.stats          since the pool was made: by outcome, and new allocations per channel
--                      ('c:<channel>')
--   KEY.hour .. H      the hour starting at H (epoch seconds, aligned to the pool's zone): new
--                      and sticky per group ('g:<gid>:new', 'g:<gid>:sticky': the pool's are
--                      their sum), the other outcomes for the pool ('fallback'), and every
--                      outcome per channel ('c:<channel>:<outcome>')
--   KEY.visitors .. D  the visitors of local day D (HyperLogLog), and per channel (D:<channel>)
--   KEY.rate           new allocations per minute, for the forecast
--   KEY.channels       the pool's channels, at most DEFAULT.channels of them named; later ones
--                      count as DEFAULT.other_channel
-- Counting people: only 'new' is once per visitor, and the visitor sets ignore repeats; page
-- views count each scan, as page views do.
-- Each key gets its expiry once: the hour's bucket and the day's visitors when a scan is the
-- first of its hour (POOL.stats_hour), a channel's visitors once a day (its KEY.channels value).
RECORDED_FIELDS[#RECORDED_FIELDS + 1] = 'tz_offset'
RECORDED_FIELDS[#RECORDED_FIELDS + 1] = 'stats_ttl'
RECORDED_FIELDS[#RECORDED_FIELDS + 1] = 'stats_hour'
do
  local outcome_field = {[OUTCOME.not_started] = OUTCOME.paused, [OUTCOME.ended] = OUTCOME.paused}
  -- the state of a call, all set by read()
  local P, totals, bucket, visitors, channel_visitors, ttl
  local hour, day, minute, new_hour, stale_minutes, channel_days

  local function bump(t, f, k)
    t[f] = (t[f] or 0) + k
  end

  RECORDERS[#RECORDERS + 1] = {
    read = function(facts)
      P, totals, bucket, visitors, channel_visitors = facts.prefix, {}, {}, {}, {}
      stale_minutes, channel_days = {}, {}
      local pool = facts.pool
      local now = facts.clock()
      local sec = math.floor(now / 1000)
      local offset = tonumber(pool.tz_offset or 0)
      hour = sec - (sec + offset) % 3600
      day = math.floor((sec + offset) / 86400)
      minute = math.floor(now / 60000)
      ttl = tonumber(pool.stats_ttl or DEFAULT.stats_ttl)
      new_hour = pool.stats_hour ~= tostring(hour)
      if new_hour then  -- the rate hash keeps the last hour
        for _, m in ipairs(redis.call('HKEYS', P .. KEY.rate)) do
          if tonumber(m) < minute - 60 then stale_minutes[#stale_minutes + 1] = m end
        end
      end

      -- the channels of this call, as counted: known, newly registered, or ~other
      local named, wanted = {}, {}
      for i = 1, #facts.scans do
        local s = facts.scans[i]
        if s.channel ~= '' and not named[s.channel] then
          named[s.channel] = true
          wanted[#wanted + 1] = s.channel
        end
      end
      local as_counted = {}
      if #wanted > 0 then
        local other = DEFAULT.other_channel
        wanted[#wanted + 1] = other
        local days = redis.call('HMGET', P .. KEY.channels, unpack(wanted))
        local size = nil
        for i = 1, #wanted - 1 do
          local ch = wanted[i]
          if days[i] then
            as_counted[ch] = ch
          else
            -- named channels only: '~other' is the one more
            size = size or redis.call('HLEN', P .. KEY.channels) - (days[#wanted] and 1 or 0)
            if size < tonumber(DEFAULT.channels) then
              size = size + 1
              as_counted[ch] = ch
            else
              as_counted[ch] = other
            end
          end
          channel_days[as_counted[ch]] = days[i] or (as_counted[ch] == other and days[#wanted])
        end
      end

      -- counted per group and channel first: each field's name is made once per call, not
      -- once per scan (a batch of new visitors mostly lands in one group)
      local per_group, per_channel, scans = {}, {}, facts.scans
      for i = 1, #scans do
        local s = scans[i]
        local outcome = s.reply[1]
        local f = outcome_field[outcome] or outcome
        totals[f] = (totals[f] or 0) + 1
        if outcome == OUTCOME.new or outcome == OUTCOME.sticky then
          local counts = per_group[s.reply[2]]
          if not counts then
            counts = {}
            per_group[s.reply[2]] = counts
          end
          counts[f] = (counts[f] or 0) + 1
        else
          bump(bucket, f, 1)
        end
        local ch = as_counted[s.channel]
        if ch then
          local counts = per_channel[ch]
          if not counts then
            counts = {}
            per_channel[ch] = counts
            channel_visitors[ch] = {}
          end
          counts[f] = (counts[f] or 0) + 1
          local list = channel_visitors[ch]
          list[#list + 1] = s.visitor
        end
        if s.visitor ~= '' then visitors[#visitors + 1] = s.visitor end
      end
      for gid, counts in pairs(per_group) do
        for f, k in pairs(counts) do bump(bucket, 'g:' .. gid .. ':' .. f, k) end
      end
      for ch, counts in pairs(per_channel) do
        for f, k in pairs(counts) do bump(bucket, 'c:' .. ch .. ':' .. f, k) end
        if counts[OUTCOME.new] then bump(totals, 'c:' .. ch, counts[OUTCOME.new]) end
      end
    end,

    write = function(facts)
      local hour_key = P .. KEY.hour .. hour
      local day_key = P .. KEY.visitors .. day
      for f, k in pairs(totals) do
        redis.call('HINCRBY', P .. KEY.stats, f, k == 1 and '1' or k)
      end
      for f, k in pairs(bucket) do redis.call('HINCRBY', hour_key, f, k == 1 and '1' or k) end
      if #visitors > 0 then redis.call('PFADD', day_key, unpack(visitors)) end
      for ch, list in pairs(channel_visitors) do
        local key = day_key .. ':' .. ch
        redis.call('PFADD', key, unpack(list))
        if channel_days[ch] ~= tostring(day) then
          redis.call('EXPIRE', key, ttl + 86400)
          redis.call('HSET', P .. KEY.channels, ch, day)
        end
      end
      if facts.allocated > 0 then
        redis.call('HINCRBY', P .. KEY.rate, minute, facts.allocated)
      end
      if new_hour and #visitors > 0 then  -- (every counted scan has a visitor)
        redis.call('EXPIRE', hour_key, ttl + 3600)
        redis.call('EXPIRE', day_key, ttl + 86400)
        if #stale_minutes > 0 then redis.call('HDEL', P .. KEY.rate, unpack(stale_minutes)) end
        redis.call('HSET', facts.pool_key, POOL.stats_hour, hour)
      end
    end,
  }
end
