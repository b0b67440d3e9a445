-- Append one source's new events to the feed, each once: only those past the source's cursor,
-- which moves with them in the same step, so a dispatcher that dies between reading a pool's
-- stream and this call, or two that race, never append an event twice.
-- KEYS[1] cursors hash, KEYS[2] feed stream. ARGV[1] source, ARGV[2] the feed's length cap,
-- then pairs: the event's stream id in its source, the event as JSON.
-- Returns the number appended.
local cursor = redis.call('HGET', KEYS[1], ARGV[1])
local function after(a, b)  -- stream ids 'ms-seq': is a after b?
  if not b then return true end
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end
local fresh, last = {}, cursor
for i = 3, #ARGV, 2 do
  if after(ARGV[i], last) then
    fresh[#fresh + 1] = ARGV[i + 1]
    last = ARGV[i]
  end
end
for _, event in ipairs(fresh) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', event)
end
if last ~= cursor then redis.call('HSET', KEYS[1], ARGV[1], last) end
return #fresh
