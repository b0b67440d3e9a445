-- Loaded before each script that takes a source's events past its dispatcher cursor
-- (feed_append.lua, move_to_system.lua), which therefore see KEYS[1] the cursors hash, ARGV[1]
-- the source, and from ARGV[first] on pairs: the event's stream id in its source, its payload.
-- The cursor moves with the events in the same script, so a dispatcher that dies between reading
-- a stream and its script, or two that race, never take an event twice.
local function after(a, b)  -- stream ids 'ms-seq': is a after b?
  if not b then return true end
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end

-- The indexes in ARGV of the stream ids past the cursor, oldest first, and the cursor's
-- current and next values (for advance).
local function past_cursor(first)
  local cursor = redis.call('HGET', KEYS[1], ARGV[1])
  local fresh, last = {}, cursor
  for i = first, #ARGV, 2 do
    if after(ARGV[i], last) then
      fresh[#fresh + 1] = i
      last = ARGV[i]
    end
  end
  return fresh, cursor, last
end

local function advance(cursor, last)
  if last ~= cursor then redis.call('HSET', KEYS[1], ARGV[1], last) end
end

