-- One scan of a live code, or a batch of new visitors' scans of one pool (CALL.batch), in
-- three phases:
--   READ    the pool, the visitor's sticky record, and every pick, made in memory: each pick
--           sees the counts, fills and rotation that the earlier picks of the call will write,
--           so a batch ends exactly where the same scans one by one would;
--   RECORD  every recorder (app/allocator/recorders/*.lua) reads what it needs, given the facts
--           of the call: what each scan got, which groups filled;
--   WRITE   the counts, the indexes of groups that filled or expired, the round-robin cursor,
--           the sticky records; then every recorder's writes.
-- Nothing is written before the last read: a script that fails leaves nothing half-done, and a
-- dry run (CALL.peek) stops before the first write. A visitor who already holds a usable group
-- gets it back without an allocation, so a retried call never allocates twice.
-- The common scan (fill, a new visitor, no group that expires) runs 5 Redis commands to pick
-- and allocate, plus those of the recorders (stats: 1); keep it that way (bench/,
-- tests/test_allocator.py). Arguments and replies: app/allocator/protocol.py. Keys and
-- fields: app/store/schema.py.
--
-- This file defines scan(keys, argv) and what it calls. On Redis 7 it is loaded once as a
-- function library (FUNCTION LOAD, app/allocator/scripts.py), so these functions and tables
-- are made once, not on every call; on Redis 6 the same source runs as a script that ends with
-- `return scan(KEYS, ARGV)`. The state of a call lives in the locals just below, shared by the
-- functions: begin() sets every one of them, so nothing of one call reaches the next, even
-- after a call that failed.

-- ===== THE STATE OF A CALL (all set by begin()) ================================================

local keys, argv, P, call, batch, n, returning
local pool, name, pool_mode
local strategy, rr, fw_n, fw_total, fw_top
local now  -- the clock, once read: see clock()
-- scan i: its visitor id, channel and, once decided, its reply (protocol.py)
local scans
-- Open groups found unusable (expired, or full by the picks so far): skipped by every later
-- pick, and taken out of the indexes by the writes.
local skip, nskip, purge
-- What the picks so far will write: each group's fields with its count as it will be, the
-- groups counted in order, how many scans each got, and each one's round-robin position.
local groups, counted, added, positions
local filled  -- groups that reach their capacity in this call, in order
local rr_moved, last_gid
local rate_key  -- the client's counter of the current minute, when the pool limits
-- weighted: the Fenwick tree as the skipped groups will leave it (fenwick_skip)
local delta, skipped_weight, nodes
-- How many indexed groups a call may find unusable beyond the expiry purge's batch (a burst
-- of codes that expired together): past it, the call gives up and answers fallback.
local budget

-- ===== WHAT IS READ ============================================================================

-- A returning visitor who keeps their group needs only the fields of every scan; the fields of
-- an allocation are read with them for a new visitor, and after the sticky record otherwise
-- (Redis converts each field name and value on every call: bench/NOTES.md).
local EVERY_SCAN = {'status', 'name', 'mode', 'valid_from', 'valid_until'}
local ALLOCATING = {'strategy', 'sticky_ttl', 'next_expiry', 'rr_cursor', 'slots', 'weight_total',
                    'draw_salt', 'room', 'capacity'}
local read_pool = reader(POOL, EVERY_SCAN, RECORDED_FIELDS, ALLOCATING, ALLOCATION_FIELDS)
local read_pool_returning = reader(POOL, EVERY_SCAN, RECORDED_FIELDS)
local read_pool_allocating = reader(POOL, ALLOCATING, ALLOCATION_FIELDS)
local read_fallback = reader(POOL, {'fallback_url', 'fallback_message', 'fallback_contact'})
local read_group = reader(GROUP, {'url', 'count', 'capacity', 'expires_at', 'mode', 'enabled',
                                  'slot', 'weight'})
local read_weight = reader(GROUP, {'slot', 'weight'})
local read_kept = reader(GROUP, {'url', 'enabled', 'expires_at', 'mode'})
local read_leaving = reader(GROUP, {'slot', 'weight', 'capacity', 'count', 'expires_at'})

-- the allocation's fields, once read
local function allocation_state()
  if returning then
    for f, v in pairs(read_pool_allocating(keys[1])) do pool[f] = v end
  end
  strategy = pool.strategy or 'fill'
  rr = strategy == 'round_robin' and pool.rr_cursor or nil
  fw_n, fw_total = tonumber(pool.slots or 0), tonumber(pool.weight_total or 0)
  while fw_top * 2 <= fw_n do fw_top = fw_top * 2 end
end

-- The clock is read only when something depends on it: a schedule, a group that expires, the
-- rate limit. A pool of groups that never expire needs no TIME at all.
local function clock()
  if not now then now = now_ms() end
  return now
end

local function group(gid)
  local g = groups[gid]
  if not g then
    g = read_group(group_key(P, gid))
    groups[gid] = g
  end
  return g
end

-- weighted: the Fenwick tree as the skipped groups will leave it, without writing: each
-- skipped slot's weight comes off the nodes that cover it (in `delta`), so a pick is one
-- O(log n) descent however many groups are skipped.
local function fenwick_skip(gid)
  local g = groups[gid] or read_weight(group_key(P, gid))
  local slot, w = tonumber(g.slot or 0), tonumber(g.weight or 0)
  if slot < 1 or w == 0 then return end
  skipped_weight = skipped_weight + w
  local i = slot
  while i <= fw_n do
    delta[i] = (delta[i] or 0) - w
    i = i + bit.band(i, -i)
  end
end

-- An open group found unusable (expired, or full by the picks so far): every later pick
-- skips it; `taken_out` also has the writes take it out of the indexes (purge).
local function skip_group(gid, taken_out)
  skip[gid] = true
  nskip = nskip + 1
  if taken_out then purge[#purge + 1] = gid end
  if strategy == 'weighted' then fenwick_skip(gid) end
end

local function usable(gid)
  local g = group(gid)
  if g.url and is_open(g, g.expires_at and clock()) then return g end  -- capacity checked here,
  skip_group(gid, true)                                                -- not trusted to the index
  budget = budget - 1
  return nil
end

-- The first usable group of an index, in its order, walking past the skipped ones a window at
-- a time: `fetch(offset, count)` reads the index from `offset`. The first window holds one
-- member more than the skipped ones: the head is usable almost always, and each member read
-- costs the call a string (a batch of new visitors picks once per visitor); once a group there
-- turned out unusable, windows of 16 more.
local function walk(fetch)
  local offset, more = 0, 1
  while budget > 0 do
    local window = nskip + more
    more = 16
    local list = fetch(offset, window)
    for i = 1, #list do
      local gid = list[i]
      if not skip[gid] then
        local g = usable(gid)
        if g then return gid, g end
        if budget <= 0 then return nil end
      end
    end
    if #list < window then return nil end
    offset = offset + #list
  end
  return nil
end

-- The fetchers of walk(). (Redis formats a number argument with snprintf: the usual first
-- window, 0 to 0, goes as strings.)
local function by_rank(key, offset, count)
  local last = offset + count - 1
  return redis.call('ZRANGE', key, offset == 0 and '0' or offset, last == 0 and '0' or last)
end
local function by_position(offset, count)
  return by_rank(P .. KEY.open, offset, count)
end
local function by_fill(offset, count)
  return by_rank(P .. KEY.open_by_fill, offset, count)
end
local function after_cursor(offset, count)
  return redis.call('ZRANGEBYSCORE', P .. KEY.open, '(' .. rr, '+inf', 'LIMIT', offset, count)
end

-- Equal fill ratios are ordered by member, bytewise as a sorted set does (Lua's own string
-- comparison follows the server's locale).
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- least_filled: the ratios as the earlier picks will leave them. Theirs are known here; the
-- first other member past the skipped and counted ones is the least filled of the rest.
local function pick_least_filled()
  if #counted == 0 then return walk(by_fill) end
  local list = redis.call('ZRANGE', P .. KEY.open_by_fill, 0, nskip + #counted, 'WITHSCORES')
  local best, score = nil, nil
  for i = 1, #list, 2 do
    if not skip[list[i]] and not added[list[i]] then
      best, score = list[i], tonumber(list[i + 1])
      break
    end
  end
  for i = 1, #counted do
    local gid = counted[i]
    if not skip[gid] then
      local s = groups[gid].count / tonumber(groups[gid].capacity)
      if not best or s < score or (s == score and bytes_before(gid, best)) then
        best, score = gid, s
      end
    end
  end
  return best
end

local function pick_weighted(vid)
  local total = fw_total - skipped_weight
  if total <= 0 then return nil end
  -- The draw comes from the visitor id hashed with the pool's secret salt: the same visitor
  -- draws the same group when a scan is retried (no Lua PRNG, which older servers do not
  -- replicate safely), and a client that chooses its cookie cannot choose its group.
  local x = tonumber(string.sub(redis.sha1hex((pool.draw_salt or '') .. vid), 1, 8), 16)
  local rem = math.min(math.floor(x / 4294967296 * total), total - 1)
  local pos, step = 0, fw_top
  while step >= 1 do
    local i = pos + step
    if i <= fw_n then
      local v = nodes[i]
      if not v then
        v = tonumber(redis.call('HGET', P .. KEY.weights, i) or 0)
        nodes[i] = v
      end
      v = v + (delta[i] or 0)
      if v <= rem then
        pos = i
        rem = rem - v
      end
    end
    step = step / 2
  end
  if pos + 1 > fw_n then return nil end
  return redis.call('HGET', P .. KEY.slots, pos + 1) or nil
end

local function pick(vid)
  if strategy == 'fill' or (strategy ~= 'weighted' and strategy ~= 'least_filled' and not rr) then
    return walk(by_position)
  end
  if strategy == 'round_robin' then
    local gid, g = walk(after_cursor)
    if gid then return gid, g end
    return walk(by_position)
  end
  while budget > 0 do
    local gid
    if strategy == 'weighted' then gid = pick_weighted(vid) else gid = pick_least_filled() end
    if not gid then return nil end
    local g = usable(gid)
    if g then return gid, g end
  end
  return nil
end

-- A returning visitor's group, if it can still take them (even when full): the sticky record
-- holds the group's slot, a small integer that Redis stores without an allocation of its own
-- (~30 B less per visitor than the group id); slots are never reused, and a deleted group's
-- slot maps to nothing.
local function sticky_group()
  local slot = redis.call('GET', keys[2])
  local gid = slot and redis.call('HGET', P .. KEY.slots, slot)
  if not gid then return nil end
  local g = read_kept(group_key(P, gid))
  if g.url and g.enabled == '1' and (not g.expires_at or tonumber(g.expires_at) > clock()) then
    return {OUTCOME.sticky, gid, g.url, g.mode or pool_mode, name}
  end
  return nil
end

-- A per-client limit on new allocations (re-scans are free), so that one client cannot drain
-- a pool: a fixed one-minute window, the counter in the pool's slot. The reply when over it.
local function over_rate_limit()
  local limit = not batch and tonumber(argv[5] or 0)
  if not limit or limit <= 0 then return nil end
  local minute = math.floor(clock() / 60000)
  rate_key = P .. KEY.rate_limit .. argv[6] .. ':' .. minute
  if tonumber(redis.call('GET', rate_key) or 0) >= limit then
    rate_key = nil
    return {OUTCOME.limited, tostring(60 - math.floor(now / 1000) % 60)}
  end
  return nil
end

-- Allocate each scan of the call in turn.
local function allocate()
  if pool.next_expiry and clock() >= tonumber(pool.next_expiry) then
    local expired = redis.call('ZRANGEBYSCORE', P .. KEY.open_expiring, '-inf', now,
                               'LIMIT', 0, 1000)
    for i = 1, #expired do skip_group(expired[i], true) end
  end
  local seen = {}
  for i = 1, n do
    local s = scans[i]
    local earlier = batch and seen[s.visitor]
    if earlier and scans[earlier].reply[1] == OUTCOME.new then
      -- the same visitor twice in one batch: once counted, then sticky to that group
      local r = scans[earlier].reply
      s.reply = {OUTCOME.sticky, r[2], r[3], r[4], r[5]}
    else
      seen[s.visitor] = i
      local gid, g = pick(s.visitor)
      if gid then
        local c = tonumber(g.count) + 1
        g.count = c
        if not added[gid] then
          added[gid] = 0
          counted[#counted + 1] = gid
        end
        added[gid] = added[gid] + 1
        if c >= tonumber(g.capacity) then
          skip_group(gid, false)
          filled[#filled + 1] = gid
        end
        if strategy == 'round_robin' then
          if positions[gid] == nil then
            positions[gid] = redis.call('HGET', group_key(P, gid), GROUP.position)
          end
          if positions[gid] then
            rr = positions[gid]
            rr_moved = true
          end
        end
        last_gid = gid
        s.slot = g.slot
        s.reply = {OUTCOME.new, gid, g.url, g.mode or pool_mode, name}
      else
        s.reply = {OUTCOME.fallback, name}  -- completed below
      end
    end
  end
end

-- Every scan of the call gets its reply (in memory: nothing is written yet).
local function decide()
  local closed = nil
  if pool.status ~= 'active' then
    closed = OUTCOME.paused
  elseif pool.valid_from and clock() < tonumber(pool.valid_from) then
    closed = OUTCOME.not_started
  elseif pool.valid_until and clock() >= tonumber(pool.valid_until) then
    closed = OUTCOME.ended
  end
  if closed then
    for i = 1, n do scans[i].reply = {closed, name} end
    return
  end
  local kept = returning and sticky_group()
  if not kept then allocation_state() end
  local limited = not kept and over_rate_limit()
  if kept or limited then
    scans[1].reply = kept or limited
  else
    allocate()
  end
end

-- Sets the whole state of the call (above), and reads the pool. False: there is no such pool.
local function begin(k, a)
  keys, argv = k, a
  P, call = a[1], a[4]
  batch = call == CALL.batch
  n = batch and #k - 1 or 1
  returning = call == CALL.known and a[2] ~= ''
  if returning then pool = read_pool_returning(k[1]) else pool = read_pool(k[1]) end
  name, pool_mode = pool.name or '', pool.mode or 'redirect'
  strategy, rr, fw_n, fw_total, fw_top = nil, nil, 0, 0, 1
  now = nil
  scans = {}
  for i = 1, n do
    local at = i == 1 and 2 or 2 * i + 1
    -- every field at once: a table made with two grows, rehashed, when the third is set
    scans[i] = {visitor = a[at], channel = a[at + 1], reply = false, slot = false}
  end
  skip, nskip, purge = {}, 0, {}
  groups, counted, added, positions, filled = {}, {}, {}, {}, {}
  rr_moved, last_gid, rate_key = false, nil, nil
  delta, skipped_weight, nodes = {}, 0, {}
  budget = 2000
  return pool.status and true or false
end

-- ===== WHAT IS WRITTEN =========================================================================

-- What the writes need, read before the first of them, then the recorders' reads, then every
-- write. The reply of the call.
local function finish()
  -- the slots and weights of the groups that leave the indexes, the next expiry once they are
  -- gone, the fallback
  local unindexing = {}
  for i = 1, #purge do unindexing[i] = purge[i] end
  for i = 1, #filled do unindexing[#unindexing + 1] = filled[i] end
  local leaving, next_expiry, expired = {}, nil, {}
  -- The pool's room and capacity after this call: each allocation takes one place; a group
  -- whose code expired takes its capacity and the places it had left; a group that filled
  -- keeps its capacity in the pool's (it moves to KEY.full until its code expires).
  local allocated = 0
  for i = 1, n do
    if scans[i].reply[1] == OUTCOME.new then allocated = allocated + 1 end
  end
  local room_delta, capacity_delta = -allocated, 0
  if #unindexing > 0 then
    local gone = {}
    for i = 1, #unindexing do
      local gid = unindexing[i]
      local g = read_leaving(group_key(P, gid))
      leaving[i] = g
      gone[gid] = true
      if i <= #purge and g.expires_at and tonumber(g.expires_at) <= clock() then
        expired[#expired + 1] = {gid, g.expires_at}
      end
      if i <= #purge then
        room_delta = room_delta - math.max(tonumber(g.capacity or 0) - tonumber(g.count or 0), 0)
        capacity_delta = capacity_delta - tonumber(g.capacity or 0)
      end
    end
    next_expiry = ex_min(ex_head(P, #unindexing), gone, nil)
  end
  local fallback = nil
  for i = 1, n do
    local r = scans[i].reply
    if r[1] == OUTCOME.fallback then
      fallback = fallback or read_fallback(keys[1])
      r[3], r[4], r[5] = fallback.fallback_url or '', fallback.fallback_message or '',
                         fallback.fallback_contact or ''
    end
  end

  if call == CALL.peek then return {OUTCOME.peek, last_gid or ''} end

  -- ===== RECORD: the recorders read =====
  local has_room = pool.room and true or false
  local facts = {
    prefix = P, pool_key = keys[1], pool = pool, clock = clock,
    scans = scans,  -- scans[i].reply[1] is its outcome; reply[2] its group for new and sticky
    allocated = allocated,  -- how many scans got a new allocation
    filled = filled,  -- groups that reached their capacity in this call
    expired = expired,  -- {gid, expires_at} of the groups found expired and taken out
    groups = groups,  -- the picked groups' fields by name, count as this call leaves it
    -- the open groups' places left and the usable groups' capacity after this call (nil: not
    -- kept for this pool yet)
    room = has_room and tonumber(pool.room) + room_delta or nil,
    capacity = has_room and tonumber(pool.capacity or 0) + capacity_delta or nil,
  }
  for i = 1, #RECORDERS do RECORDERS[i].read(facts) end

  -- ===== WRITE =====
  -- Arguments go to redis.call as strings where they can: Redis formats a Lua number with
  -- snprintf("%.17g"), ~0.3 us per argument (bench/NOTES.md).
  for i = 1, #unindexing do
    unindex(P, fw_n, unindexing[i], leaving[i].slot, leaving[i].weight)
    if i > #purge then  -- filled: usable still, full
      redis.call('ZADD', P .. KEY.full, leaving[i].expires_at or '+inf', unindexing[i])
    end
  end
  if #unindexing > 0 then set_next_expiry(P, next_expiry) end
  add_room(P, has_room, room_delta, capacity_delta)

  for i = 1, #counted do
    local gid = counted[i]
    local k = added[gid]
    local c = redis.call('HINCRBY', group_key(P, gid), GROUP.count, k == 1 and '1' or k)
    -- fill ratios are kept fresh only while a pool is least_filled; pool_put.lua rebuilds them
    -- when a pool switches to it.
    if strategy == 'least_filled' and c < tonumber(groups[gid].capacity) then
      redis.call('ZADD', P .. KEY.open_by_fill, c / tonumber(groups[gid].capacity), gid)
    end
  end
  if rr_moved then redis.call('HSET', keys[1], POOL.rr_cursor, rr) end
  local ttl = pool.sticky_ttl or DEFAULT.sticky_ttl
  for i = 1, n do
    local s = scans[i]
    if s.slot and s.visitor ~= '' then redis.call('SET', keys[1 + i], s.slot, 'EX', ttl) end
  end
  if rate_key then
    redis.call('INCR', rate_key)
    redis.call('EXPIRE', rate_key, 120)
  end

  for i = 1, #RECORDERS do RECORDERS[i].write(facts) end

  if not batch then return scans[1].reply end
  local replies = {}
  for i = 1, n do replies[i] = scans[i].reply end
  return replies
end

local function scan(k, a)
  if not begin(k, a) then  -- no such pool: nothing is recorded, nothing written
    if not batch then return {OUTCOME.unknown} end
    local out = {}
    for i = 1, n do out[i] = {OUTCOME.unknown} end
    return out
  end
  decide()
  return finish()
end
