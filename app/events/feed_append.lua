-- Append one source's new events to the feed, each once (cursor.lua comes first).
-- KEYS[1] cursors hash, KEYS[2] feed stream. ARGV[1] source, ARGV[2] the feed's length cap,
-- then pairs: the event's stream id in its source, the event as JSON.
-- Returns the number appended.
local fresh, cursor, last = past_cursor(3)
for _, i in ipairs(fresh) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i + 1])
end
advance(cursor, last)
return #fresh
