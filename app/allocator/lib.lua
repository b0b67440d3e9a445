-- Shared by every script. Names such as POOL.room, GROUP.count, KEY.open, DEFAULT.capacity,
-- CALL.new and OUTCOME.new (app/store/schema.py, app/allocator/protocol.py) become strings
-- when the loader reads the files (app/allocator/scripts.py); POOL and GROUP are also tables,
-- for read().
-- A group is *open* while it is enabled, has room and has not expired. The open groups are kept
-- in three indexes, so that every strategy picks in O(log n):
--   KEY.open           zset  gid -> position       (fill, round_robin)
--   KEY.open_by_fill   zset  gid -> count/capacity (least_filled)
--   KEY.weights        hash  Fenwick tree over slot weights; KEY.slots maps slot -> gid
--                            (weighted; sticky records hold the slot)
-- plus KEY.open_expiring (zset gid -> expires_at) for open groups that expire, so expired ones
-- are found without scanning, with its earliest score cached as POOL.next_expiry, so that a scan
-- reads it only once some group may have expired. A group leaves the indexes when it fills, is
-- disabled, expires or is deleted.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The named fields of a hash, as a table: read(key, POOL, 'status', 'name') gives
-- {status = ..., name = ...}; an absent field is false.
local function read(key, schema, ...)
  local names = {...}
  local stored = {}
  for i = 1, #names do stored[i] = schema[names[i]] end
  local values = redis.call('HMGET', key, unpack(stored))
  local out = {}
  for i = 1, #names do out[names[i]] = values[i] end
  return out
end

-- read() with its names fixed: reader(POOL, {'status', 'name'}, MORE) gives a function of the
-- key that reads the names of every list given. The names are looked up once, by the first
-- read (a function library keeps them from call to call; a script makes only the readers it
-- uses, read by read). A library is loaded without Lua's standard library: nothing here runs
-- before the first read.
local function reader(schema, ...)
  local lists, names, stored, count = {...}, nil, nil, 0
  return function(key)
    if not stored then
      names, stored = {}, {}
      for j = 1, #lists do
        for i = 1, #lists[j] do
          count = count + 1
          names[count], stored[count] = lists[j][i], schema[lists[j][i]]
        end
      end
    end
    local values = redis.call('HMGET', key, unpack(stored))
    local out = {}
    for i = 1, count do out[names[i]] = values[i] end
    return out
  end
end

local function group_key(P, gid)
  return P .. KEY.group .. gid
end

-- Prefix sum of slots 1..i.
local function fw_prefix(P, i)
  local s = 0
  while i > 0 do
    s = s + tonumber(redis.call('HGET', P .. KEY.weights, i) or 0)
    i = i - bit.band(i, -i)
  end
  return s
end

local function fw_add(P, n, i, delta)
  if delta == 0 then return end
  while i <= n do
    redis.call('HINCRBY', P .. KEY.weights, i, delta)
    i = i + bit.band(i, -i)
  end
  redis.call('HINCRBY', P .. KEY.pool, POOL.weight_total, delta)
end

-- Take a group out of the open indexes; `slot` and `weight` are its fields as stored.
local function unindex(P, n, gid, slot, weight)
  redis.call('ZREM', P .. KEY.open, gid)
  redis.call('ZREM', P .. KEY.open_by_fill, gid)
  redis.call('ZREM', P .. KEY.open_expiring, gid)
  if slot and weight then fw_add(P, n, tonumber(slot), -tonumber(weight)) end
end

-- Put a group into the open indexes; `g` has its fields by name.
local function index(P, n, gid, g)
  redis.call('ZADD', P .. KEY.open, g.position, gid)
  redis.call('ZADD', P .. KEY.open_by_fill, g.count / g.capacity, gid)
  if g.expires_at then redis.call('ZADD', P .. KEY.open_expiring, g.expires_at, gid) end
  fw_add(P, n, tonumber(g.slot), tonumber(g.weight))
end

-- Whether a group (fields by name) may take a scan at `now` (ms; only read if it expires).
local function is_open(g, now)
  return g.enabled == '1' and tonumber(g.count) < tonumber(g.capacity)
    and (not g.expires_at or tonumber(g.expires_at) > now)
end

-- What POOL.next_expiry becomes once the gids of the set `gone` leave open_expiring and,
-- optionally, one group with expiry `add_exp` joins it. `head` is the index's first #gone + 1
-- entries, WITHSCORES, read before the script's first write (ex_head).
local function ex_head(P, ngone)
  return redis.call('ZRANGE', P .. KEY.open_expiring, 0, ngone, 'WITHSCORES')
end

local function ex_min(head, gone, add_exp)
  local m = add_exp and tonumber(add_exp) or nil
  for i = 1, #head, 2 do
    if not gone[head[i]] then
      local s = tonumber(head[i + 1])
      if not m or s < m then m = s end
      break
    end
  end
  return m
end

local function set_next_expiry(P, m)
  if m then
    redis.call('HSET', P .. KEY.pool, POOL.next_expiry, m)
  else
    redis.call('HDEL', P .. KEY.pool, POOL.next_expiry)
  end
end

-- The pool's room (places left in its open groups) and capacity (of its usable groups: open,
-- or full in KEY.full) change by these amounts. Pools older than these aggregates have neither
-- until the start-up migration: nothing is kept for them.
local function add_room(P, has_room, room, capacity)
  if not has_room then return end
  if room ~= 0 then redis.call('HINCRBY', P .. KEY.pool, POOL.room, room) end
  if capacity ~= 0 then redis.call('HINCRBY', P .. KEY.pool, POOL.capacity, capacity) end
end

-- Append an event to the pool's stream (app/events/model.py): its type, group ('' = none), the
-- API key behind it ('' = none) and its data as JSON. The stream id carries the time.
local function emit(P, type, gid, actor, data)
  redis.call('XADD', P .. KEY.events, 'MAXLEN', '~', DEFAULT.events, '*', 'type', type,
             'group', gid or '', 'actor', actor or '', 'data', cjson.encode(data or {}))
end
