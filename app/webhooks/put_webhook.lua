-- Create or update a webhook's hash. KEYS: ids, w:<wid>.
-- ARGV: prefix, 'create'|'update', wid, max_webhooks, nset, field, value, ..., then fields to
-- delete. Returns 'ok', 'exists', 'full' or 'missing'.
local mode, wid, max_webhooks, nset = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local exists = redis.call('EXISTS', KEYS[2]) == 1
if mode == 'create' then
  if exists then return 'exists' end
  if redis.call('ZCARD', KEYS[1]) >= max_webhooks then return 'full' end
elseif not exists then
  return 'missing'
end
local now = now_ms()
local set = {}
for i = 0, nset - 1 do
  set[#set + 1] = ARGV[6 + 2 * i]
  set[#set + 1] = ARGV[7 + 2 * i]
end
local del = {}
for i = 6 + 2 * nset, #ARGV do del[#del + 1] = ARGV[i] end
if mode == 'create' then
  set[#set + 1] = 'created'
  set[#set + 1] = now
  set[#set + 1] = 'np'
  set[#set + 1] = 0
  redis.call('ZADD', KEYS[1], now, wid)
end
set[#set + 1] = 'updated'
set[#set + 1] = now
redis.call('HSET', KEYS[2], unpack(set))
if #del > 0 then redis.call('HDEL', KEYS[2], unpack(del)) end
return 'ok'
