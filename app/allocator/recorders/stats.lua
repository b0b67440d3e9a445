-- Recorder: the pool's running totals (KEY.stats). Each new allocation adds 1 to 'new' without
-- a channel, or to 'n:<channel>' with one (at most DEFAULT.stats_channel_fields fields, then
-- 'n:~other'); each scan that found no room adds 1 to 'fallback'.
do
  local bumps = {}
  RECORDERS[#RECORDERS + 1] = {
    read = function(facts)
      local key = facts.prefix .. KEY.stats
      local made, existed, length = {}, {}, nil
      local function has(f)
        if existed[f] == nil then existed[f] = redis.call('HEXISTS', key, f) == 1 end
        return existed[f]
      end
      local function field(channel)
        if channel == '' then return 'new' end
        local f = 'n:' .. channel
        if bumps[f] or has(f) then return f end
        if not length then length = redis.call('HLEN', key) end
        local size = length
        for m in pairs(made) do
          if not has(m) then size = size + 1 end
        end
        if size >= tonumber(DEFAULT.stats_channel_fields) then return 'n:~other' end
        return f
      end
      local function bump(f)
        if not bumps[f] then
          bumps[f] = 0
          made[f] = true
        end
        bumps[f] = bumps[f] + 1
      end
      for _, s in ipairs(facts.scans) do
        local outcome = s.reply[1]
        if outcome == OUTCOME.new then
          bump(field(s.channel))
        elseif outcome == OUTCOME.fallback then
          bump('fallback')
        end
      end
    end,
    write = function(facts)
      local key = facts.prefix .. KEY.stats
      for f, k in pairs(bumps) do redis.call('HINCRBY', key, f, k == 1 and '1' or k) end
    end,
  }
end
