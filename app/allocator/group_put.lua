-- Create or update one group and bring the pool's indexes in line with it, so that a change
-- takes effect on the very next scan (a raised capacity makes a full group eligible again, a
-- lowered one below its count takes it out). Fields: name url cap c exp w en mode pos;
-- an empty value removes the field (exp, mode).
-- KEYS[1] pool hash. ARGV[1] key prefix, ARGV[2] gid ('' on create: the next free g<N>),
-- ARGV[3] 'create' | 'update', then pairs.
-- Returns {'ok', gid} | 'no_pool' | 'exists' | 'not_found'.
local P, gid, op = ARGV[1], ARGV[2], ARGV[3]

local pool = redis.call('HMGET', KEYS[1], 'status', 'fwn', 'seq', 'gseq')
if not pool[1] then return 'no_pool' end
local gseq = nil
if gid == '' then
  -- ids chosen by operators may already hold some g<N>: take the next one that is free
  gseq = tonumber(pool[4] or 0)
  repeat
    gseq = gseq + 1
    gid = 'g' .. gseq
  until redis.call('EXISTS', P .. 'g:' .. gid) == 0
end
local gkey = P .. 'g:' .. gid
local exists = redis.call('EXISTS', gkey) == 1
if op == 'create' and exists then return 'exists' end
if op == 'update' and not exists then return 'not_found' end

local fields = {'c', 'cap', 'en', 'exp', 'w', 'pos', 'fi'}
local old = {}
if exists then
  local v = redis.call('HMGET', gkey, unpack(fields))
  for i, f in ipairs(fields) do old[f] = v[i] or nil end
else
  old = {c = '0', cap = '200', en = '1', w = '1'}
end
local new, set, del = {}, {}, {}
for f, v in pairs(old) do new[f] = v end
for i = 4, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if v == '' then
    new[f] = nil
    del[#del + 1] = f
  else
    new[f] = v
    set[#set + 1] = f
    set[#set + 1] = v
  end
end

local n = tonumber(pool[2] or 0)
local append_node = nil
if not exists then
  if not new.pos then new.pos = tostring(tonumber(pool[3] or 0) + 1) end
  -- A new Fenwick slot n+1 starts at weight 0: its node covers (i - lowbit(i), i].
  local i = n + 1
  append_node = fw_prefix(P, i - 1) - fw_prefix(P, i - bit.band(i, -i))
  new.fi = tostring(i)
  set, del = {}, {}
  for f, v in pairs(new) do
    set[#set + 1] = f
    set[#set + 1] = v
  end
end
local was = exists and redis.call('ZSCORE', P .. 'av', gid) ~= false
local now = now_ms()
local is = eligible(new.en, new.c, new.cap, new.exp, now)
local head = (was or is) and ex_head(P, 1)

-- Writes from here on.
if gseq then redis.call('HSET', KEYS[1], 'gseq', gseq) end
if not exists then
  n = n + 1
  redis.call('HSET', P .. 'fw', n, append_node)
  redis.call('HSET', P .. 'fwg', n, gid)
  redis.call('HSET', KEYS[1], 'fwn', n)
  if tonumber(new.pos) > tonumber(pool[3] or 0) then redis.call('HSET', KEYS[1], 'seq', new.pos) end
end
if #set > 0 then redis.call('HSET', gkey, unpack(set)) end
if #del > 0 then redis.call('HDEL', gkey, unpack(del)) end

if was and not is then
  unindex(P, n, gid, old.fi, old.w)
elseif is and not was then
  index(P, n, gid, new.pos, new.c, new.cap, new.exp, new.fi, new.w)
elseif is and was then
  redis.call('ZADD', P .. 'av', new.pos, gid)
  redis.call('ZADD', P .. 'lf', tonumber(new.c) / tonumber(new.cap), gid)
  if new.exp then redis.call('ZADD', P .. 'ex', new.exp, gid) else redis.call('ZREM', P .. 'ex', gid) end
  fw_add(P, n, tonumber(new.fi), tonumber(new.w) - tonumber(old.w))
end
if head then set_exn(P, ex_min(head, {[gid] = true}, is and new.exp or nil)) end
return {'ok', gid}
