-- One batch of calls against the feature store: read each call's state, then (mode "1")
-- apply the call. Calls arrive sorted by start time; the whole batch is one atomic script,
-- so an interrupted batch leaves no trace and a retry is exact. Key layout: README
-- "Feature store key layout" (features/redisstore.py builds the arguments).
--
-- A number's own calls (cs:out:) and received calls (cs:in:) are each ONE string of
-- fixed-width records sorted by start time. The script reads each such string once (GET),
-- keeps the calls it applies in Lua tables, and writes the string back once at the end
-- (SET .. PX), trimmed to the retention before its newest record. The caller's own-call
-- windows are not computed here: the script returns each caller's string as read, once per
-- script, and the client computes them over the full 24 h (features/_online.pyx), adding
-- the calls this script applied before each call ("applied" below).
--
-- ARGV[1] prefix, ARGV[2] mode ("1" apply, "0" read-only), ARGV[3] event retention ms,
-- ARGV[4] relation retention ms, ARGV[5] event TTL ms, ARGV[6] relation TTL ms,
-- ARGV[7..] one packed call each: record(39) | u8 len(a) | a | u8 len(imei) | imei | b,
--   record = u48 t | key(6) | flags(1) | >d duration | imei(6) | cell(6) | callee(6)
--   (digests; flags: 1 answered, 2 has imei, 4 has cell), as stored in cs:out:;
--   cs:in: stores its first 12 bytes (t, key).
-- Returns {numbers, histories, registry, lists}: numbers is 7 big-endian doubles per call
-- (callee called caller before, caller called callee before, inbound calls 24 h, numbers
-- per IMEI 24 h or -1, duplicate, owner count, applied); histories the cs:out: string of
-- each caller as read, in order of the caller's first call in the script; registry one
-- packed record or "" per call; lists a flat {call index, kind, entry json, ...}.

local P, apply = ARGV[1], ARGV[2] == "1"
local EVENT_RETAIN, RELATION_RETAIN = tonumber(ARGV[3]), tonumber(ARGV[4])
local EVENT_TTL, RELATION_TTL = ARGV[5], ARGV[6]
local DAY, HISTORY = 86400000, 30 * 86400000
local W, WI = 39, 12
local byte, sub, band, floor, concat = string.byte, string.sub, bit.band, math.floor, table.concat
local KINDS, BITS = {"block", "allow", "dno"}, {1, 2, 4}

local function u48(s, i) return (struct.unpack(">I6", s, i)) end

-- first record index (0-based) in [lo, hi) of s (width w) whose time is >= x
local function lower(s, w, lo, hi, x)
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if u48(s, mid * w + 1) < x then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- a packed timeline: the string as read plus the records this script adds (in time order)
local function timeline(key, w)
  local old = redis.call("GET", key) or ""
  local n = #old / w
  return {old = old, n = n, newest = n > 0 and u48(old, (n - 1) * w + 1) or -1, new = {}, nt = {}, seen = {}}
end

-- is the call (id = t .. key, 12 bytes) already in the timeline?
local function has(s, w, t, id)
  if s.seen[id] then return true end
  local j = lower(s.old, w, 0, s.n, t)
  while j < s.n and u48(s.old, j * w + 1) == t do
    if sub(s.old, j * w + 1, j * w + 12) == id then return true end
    j = j + 1
  end
  return false
end

-- add a record; one older than the retention before the newest would be trimmed at once
local function add(s, rec, t, id)
  if t < s.newest - EVENT_RETAIN then return false end
  s.new[#s.new + 1], s.nt[#s.nt + 1], s.seen[id] = rec, t, true
  if t > s.newest then s.newest = t end
  return true
end

-- records with time in [lo, hi)
local function count(s, w, lo, hi)
  local n = lower(s.old, w, 0, s.n, hi) - lower(s.old, w, 0, s.n, lo)
  for _, te in ipairs(s.nt) do if te >= lo and te < hi then n = n + 1 end end
  return n
end

-- write back: merged (a record after the ones of equal time), trimmed, with the TTL
local function flush(key, s, w)
  if #s.new == 0 then return end
  local v
  if s.n == 0 or s.nt[1] >= u48(s.old, (s.n - 1) * w + 1) then
    v = s.old .. concat(s.new)
  else  -- late records: splice each one in
    v = s.old
    for k, rec in ipairs(s.new) do
      local j = lower(v, w, 0, #v / w, s.nt[k] + 1)
      v = sub(v, 1, j * w) .. rec .. sub(v, j * w + 1)
    end
  end
  local n = #v / w
  local cut = lower(v, w, 0, n, u48(v, (n - 1) * w + 1) - EVENT_RETAIN)
  if cut > 0 then v = sub(v, cut * w + 1) end
  redis.call("SET", key, v, "PX", EVENT_TTL)
end

-- latest contact strictly before t from a 12-byte "last|prev" value, or -1
local function before(v, t)
  if not v then return -1 end
  local last, prev = struct.unpack(">I6I6", v)
  if last < t then return last end
  if prev > 0 and prev < t then return prev end
  return -1
end

local expiring = {}  -- relation keys given their TTL in this script
local function touch(key, member, old, t, retain, ttl)
  local last, prev = 0, 0
  if old then last, prev = struct.unpack(">I6I6", old) end
  local changed = false
  if t > last then last, prev, changed = t, last, true
  elseif t < last and t > prev then prev, changed = t, true end
  local added = changed and redis.call("HSET", key, member, struct.pack(">I6I6", last, prev)) == 1
  -- trimming bounds memory only (retention > window + lateness): see features/retention.py
  if added and redis.call("HLEN", key) % 256 == 0 then
    local all = redis.call("HGETALL", key)
    local newest = 0
    for j = 2, #all, 2 do local l = u48(all[j], 1); if l > newest then newest = l end end
    for j = 2, #all, 2 do
      if u48(all[j], 1) < newest - retain then redis.call("HDEL", key, all[j - 1]) end
    end
  end
  if changed and not expiring[key] then
    redis.call("PEXPIRE", key, ttl)
    expiring[key] = true
  end
end

local outs, ins, who = {}, {}, {}
-- which lists to read per caller: the index (features/lists.lua) when built, else every
-- list that exists (lists written before the index existed)
local indexed, present = redis.call("EXISTS", P .. "list:index") == 1, 0
if not indexed then
  for k, kind in ipairs(KINDS) do
    if redis.call("EXISTS", P .. "list:" .. kind) == 1 then present = present + BITS[k] end
  end
end
local function inbox(x)
  local s = ins[x]
  if not s then s = timeline(P .. "in:" .. x, WI); ins[x] = s end
  return s
end

local numbers, histories, registry, lists = {}, {}, {}, {}
for i = 7, #ARGV do
  local s = ARGV[i]
  local rec, id, t = sub(s, 1, W), sub(s, 1, 12), u48(s, 1)
  local la = byte(s, W + 1)
  local a = sub(s, W + 2, W + 1 + la)
  local li = byte(s, W + 2 + la)
  local raw_imei = sub(s, W + 3 + la, W + 2 + la + li)
  local b = sub(s, W + 3 + la + li)
  local has_imei = band(byte(s, 13), 2) ~= 0

  local out = outs[a]
  if not out then
    out = timeline(P .. "out:" .. a, W)
    outs[a] = out
    histories[#histories + 1] = out.old
  end
  local dup = has(out, W, t, id)
  local inbound = count(inbox(a), WI, t - DAY, t)

  local back = redis.call("HGET", P .. "c:" .. b, a)
  local fwd = redis.call("HGET", P .. "c:" .. a, b)
  local callee_before = before(back, t) >= t - HISTORY and 1 or 0
  local caller_before = before(fwd, t) >= t - HISTORY and 1 or 0

  local per_imei, dk, on_imei = -1, nil, nil
  if has_imei then
    dk = P .. "d:" .. raw_imei  -- the raw IMEI: a national key space is too big for a digest
    local all = redis.call("HGETALL", dk)
    per_imei = 1
    for j = 1, #all, 2 do
      if all[j] ~= a and before(all[j + 1], t) >= t - DAY then per_imei = per_imei + 1 end
      if all[j] == a then on_imei = all[j + 1] end
    end
  end

  -- registry record, owner count and list entries: read once per caller and script
  local id_a = who[a]
  if not id_a then
    local reg = redis.call("HGET", P .. "sub:" .. sub(a, 1, -3), string.char(tonumber(sub(a, -2))))
    local owners = 0
    if reg and band(byte(reg, 1), 64) ~= 0 then
      owners = tonumber(redis.call("HGET", P .. "own:" .. sub(reg, -8, -7), sub(reg, -6)) or 0)
    end
    local hits = {}
    -- the list index (features/lists.lua) says which lists hold the number, if any
    local on = present
    if indexed then on = tonumber(redis.call("HGET", P .. "list:index", a) or 0) end
    for k, kind in ipairs(KINDS) do
      if band(on, BITS[k]) ~= 0 then
        local entry = redis.call("HGET", P .. "list:" .. kind, a)
        if entry then hits[#hits + 1] = kind; hits[#hits + 1] = entry end
      end
    end
    id_a = {reg or "", owners, hits}
    who[a] = id_a
  end
  registry[#registry + 1] = id_a[1]
  local hits = id_a[3]
  for j = 1, #hits, 2 do
    lists[#lists + 1] = i - 6
    lists[#lists + 1] = hits[j]
    lists[#lists + 1] = hits[j + 1]
  end

  local applied = 0
  if apply and not dup then
    if add(out, rec, t, id) then applied = 1 end
    local box = inbox(b)
    if not has(box, WI, t, id) then add(box, id, t, id) end
    touch(P .. "c:" .. a, b, fwd, t, RELATION_RETAIN, RELATION_TTL)
    if has_imei then touch(dk, a, on_imei, t, EVENT_RETAIN, EVENT_TTL) end
  end
  numbers[#numbers + 1] = struct.pack(">ddddddd", callee_before, caller_before, inbound, per_imei,
    dup and 1 or 0, id_a[2], applied)
end
for a, s in pairs(outs) do flush(P .. "out:" .. a, s, W) end
for x, s in pairs(ins) do flush(P .. "in:" .. x, s, WI) end
return {concat(numbers), histories, registry, lists}
