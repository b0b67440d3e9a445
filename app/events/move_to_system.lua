-- Move a pool's events past the dispatcher's cursor to the system stream, and advance the
-- cursor over them (cursor.lua comes first). KEYS[1] cursors hash, KEYS[2] system stream.
-- ARGV[1] pool id, ARGV[2] its name, ARGV[3] the stream's length cap, then pairs: stream id,
-- its fields as JSON. Returns the number moved.
local fresh, cursor, last = past_cursor(4)
for _, i in ipairs(fresh) do
  local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*'}
  for k, v in pairs(cjson.decode(ARGV[i + 1])) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  for _, kv in ipairs({{'id', ARGV[1] .. ':' .. ARGV[i]}, {'pool', ARGV[1]},
                       {'pool_name', ARGV[2]}}) do
    args[#args + 1] = kv[1]
    args[#args + 1] = kv[2]
  end
  redis.call(unpack(args))
end
advance(cursor, last)
return #fresh
