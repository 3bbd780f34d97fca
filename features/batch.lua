-- One batch of calls against the feature store: read each call's state, then (mode "1")
-- apply the call. Calls arrive sorted by start time; the whole script is atomic, so an
-- interrupted batch leaves no trace and a retry is exact. Key layout: README "Feature store
-- key layout" (features/_online.pyx builds the arguments and reads the reply).
--
-- A number's own calls (cs:out:), received calls (cs:in:) and the numbers seen on an IMEI
-- (cs:dev:) are each ONE string of records. The script reads each such string once (GET),
-- keeps what it adds in Lua tables, and writes the string back once at the end (SET .. PX),
-- trimmed to the retention before its newest record. The caller's own-call windows are not
-- computed here: the script returns each caller's cs:out: string as read, once per script,
-- and the client computes them over the full 24 h (features/_online.pyx), adding the calls
-- this script applied before each call ("applied" below).
--
-- Cost (Redis CPU is the worker's bottleneck): few commands per call, no table per key in
-- read-only mode, integers rather than packed strings in the reply; see benchmarks/README.md.
--
-- ARGV[1] prefix, ARGV[2] mode ("1" apply, "0" read-only), ARGV[3] event retention ms,
-- ARGV[4] relation retention ms, ARGV[5] event TTL ms, ARGV[6] relation TTL ms,
-- then four arguments per call: record(39), a_number, a_imei ("" when absent), b_number;
--   record = u48 t | key(6) | flags(1) | >d duration | imei(6) | cell(6) | callee(6)
--   (digests; flags: 1 answered, 2 has imei, 4 has cell), as stored in cs:out:;
--   cs:in: stores its first 12 bytes (t, key).
-- Returns {numbers, callers, lists}:
--   numbers: 3 integers per call: bits (1 callee called caller before, 2 caller called
--     callee before, 4 duplicate, 8 applied), inbound calls 24 h, numbers per IMEI 24 h
--     (-1 without IMEI);
--   callers: 3 values per caller, in order of the caller's first call in the script: its
--     cs:out: string as read, its packed registry record ("" when not held), its owner count;
--   lists: flat {caller index (1-based), kind, entry json, ...}.

local P, apply = ARGV[1], ARGV[2] == "1"
local EVENT_RETAIN, RELATION_RETAIN = tonumber(ARGV[3]), tonumber(ARGV[4])
local EVENT_TTL, RELATION_TTL = ARGV[5], ARGV[6]
local DAY, HISTORY = 86400000, 30 * 86400000
local W, WI = 39, 12
local call = redis.call
local byte, sub, char, floor, concat = string.byte, string.sub, string.char, math.floor, table.concat
local band, sunpack, spack = bit.band, struct.unpack, struct.pack
local KINDS, BITS = {"block", "allow", "dno"}, {1, 2, 4}

local function u48(s, i) return (sunpack(">I6", s, i)) end

-- first record index (0-based) in [lo, hi) of s (width w) whose time is >= x
local function lower(s, w, lo, hi, x)
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if (sunpack(">I6", s, mid * w + 1)) < x then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- Timelines (cs:out:, cs:in:): the string as read, and (apply mode) the records this script
-- adds, in time order, each also indexed by its 12-byte id (start time and call key).
local olds, adds, tops = {}, {}, {}
local function read(key)
  local s = olds[key]
  if not s then
    s = call("GET", key) or ""
    olds[key] = s
  end
  return s
end

-- is the call (id) already in the timeline?
local function has(key, s, w, t, id)
  local new = adds[key]
  if new and new[id] then return true end
  local n = #s / w
  local j = lower(s, w, 0, n, t)
  while j < n and (sunpack(">I6", s, j * w + 1)) == t do
    if sub(s, j * w + 1, j * w + 12) == id then return true end
    j = j + 1
  end
  return false
end

-- add a record; one older than the retention before the newest would be trimmed at once
local function add(key, s, w, rec, t, id)
  local top = tops[key]
  if not top then top = #s > 0 and u48(s, #s - w + 1) or -1 end
  if t < top - EVENT_RETAIN then return false end
  local new = adds[key]
  if not new then
    new = {}
    adds[key] = new
  end
  new[#new + 1] = rec
  new[id] = true
  if t > top then top = t end
  tops[key] = top
  return true
end

-- records with time in [lo, hi)
local function count(key, s, w, lo, hi)
  local n = #s / w
  n = lower(s, w, 0, n, hi) - lower(s, w, 0, n, lo)
  local new = adds[key]
  if new then
    for k = 1, #new do
      local te = u48(new[k], 1)
      if te >= lo and te < hi then n = n + 1 end
    end
  end
  return n
end

-- write back: merged (a record after the ones of equal time), trimmed, with the TTL
local function flush(key, w)
  local new = adds[key]
  local s = olds[key]
  local n = #s / w
  local v
  if n == 0 or u48(new[1], 1) >= u48(s, (n - 1) * w + 1) then
    v = #new == 1 and s .. new[1] or s .. concat(new)
  else  -- late records: splice each one in
    v = s
    for k = 1, #new do
      local j = lower(v, w, 0, #v / w, u48(new[k], 1) + 1)
      v = sub(v, 1, j * w) .. new[k] .. sub(v, j * w + 1)
    end
  end
  local edge = tops[key] - EVENT_RETAIN
  if u48(v, 1) < edge then
    local cut = lower(v, w, 0, #v / w, edge)
    if cut > 0 then v = sub(v, cut * w + 1) end
  end
  call("SET", key, v, "PX", EVENT_TTL)
end

-- latest contact strictly before t from (last, prev) (prev 0: none), or -1
local function before(last, prev, t)
  if last < t then return last end
  if prev > 0 and prev < t then return prev end
  return -1
end

-- a contact at t on (last, prev): the latest time and the latest distinct time before it
local function step(last, prev, t)
  if t > last then return t, last, true end
  if t < last and t > prev then return last, t, true end
  return last, prev, false
end

-- cs:c: relations: one hash per caller (callee -> u48 last, u48 prev). Trimming bounds
-- memory only (retention > window + lateness: features/retention.py) and runs on hashes of
-- 256 fields or more, when an added callee's digest ends in a zero byte (1 add in 256 on
-- average; features/memstore.py applies the same rule), so HLEN is rarely needed.
local expiring = {}  -- relation keys given their TTL in this script
local function touch(key, member, old, t, trigger)
  local last, prev = 0, 0
  if old then last, prev = sunpack(">I6I6", old) end
  local changed
  last, prev, changed = step(last, prev, t)
  if not changed then return end
  if call("HSET", key, member, spack(">I6I6", last, prev)) == 1 and trigger and call("HLEN", key) >= 256 then
    local all = call("HGETALL", key)
    local newest = 0
    for j = 2, #all, 2 do local l = u48(all[j], 1); if l > newest then newest = l end end
    for j = 2, #all, 2 do
      if u48(all[j], 1) < newest - RELATION_RETAIN then call("HDEL", key, all[j - 1]) end
    end
  end
  if not expiring[key] then
    call("PEXPIRE", key, RELATION_TTL)
    expiring[key] = true
  end
end

-- cs:dev: (numbers per IMEI): one string of records u8 len | a_number | u48 last | u48 prev,
-- read once per script into a flat table {a, last, prev, a, last, prev, ...} (order kept)
local devs, dirty = {}, {}
local function device(key)
  local d = devs[key]
  if d then return d end
  d = {}
  local s = call("GET", key)
  if s then
    local pos, k = 1, 0
    while pos <= #s do
      local len = byte(s, pos)
      d[k + 1] = sub(s, pos + 1, pos + len)
      d[k + 2], d[k + 3] = sunpack(">I6I6", s, pos + 1 + len)
      pos, k = pos + 13 + len, k + 3
    end
  end
  devs[key] = d
  return d
end

-- trimming bounds memory only, as for relations: when an added number makes the count a
-- multiple of 256, numbers last seen before the retention before the newest are dropped
local function trim_device(d)
  local newest = 0
  for k = 2, #d, 3 do if d[k] > newest then newest = d[k] end end
  local kept = {}
  for k = 1, #d, 3 do
    if d[k + 1] >= newest - EVENT_RETAIN then
      local j = #kept
      kept[j + 1], kept[j + 2], kept[j + 3] = d[k], d[k + 1], d[k + 2]
    end
  end
  return kept
end

local function flush_device(key)
  local d = devs[key]
  local parts = {}
  for k = 1, #d, 3 do parts[#parts + 1] = char(#d[k]) .. d[k] .. spack(">I6I6", d[k + 1], d[k + 2]) end
  call("SET", key, concat(parts), "PX", EVENT_TTL)
end

-- which lists to read per caller: the index (features/lists.lua) when built (none when it
-- holds only its marker field), else every list that exists (lists written before the index)
local indexed = call("HLEN", P .. "list:index")
local present = 0
if indexed == 0 then
  for k, kind in ipairs(KINDS) do
    if call("EXISTS", P .. "list:" .. kind) == 1 then present = present + BITS[k] end
  end
end

local numbers, callers, lists = {}, {}, {}
local who = {}  -- caller -> its index in callers (0-based, step 3)
local nn = 0
for i = 7, #ARGV, 4 do
  local rec, a, imei, b = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local id, t = sub(rec, 1, 12), u48(rec, 1)
  local ko, ki = P .. "out:" .. a, P .. "in:" .. a

  local out = read(ko)
  local slot = who[a]
  if not slot then
    -- first call of this caller in the script: its history, registry record, owner count, lists
    slot = #callers
    who[a] = slot
    local reg = call("HGET", P .. "sub:" .. sub(a, 1, -3), char(tonumber(sub(a, -2))))
    local owners = 0
    if reg and band(byte(reg, 1), 64) ~= 0 then
      owners = tonumber(call("HGET", P .. "own:" .. sub(reg, -8, -7), sub(reg, -6)) or 0)
    end
    callers[slot + 1], callers[slot + 2], callers[slot + 3] = out, reg or "", owners
    local on = present
    if indexed > 1 then on = tonumber(call("HGET", P .. "list:index", a) or 0)
    elseif indexed == 1 then on = 0 end
    if on ~= 0 then
      for k, kind in ipairs(KINDS) do
        if band(on, BITS[k]) ~= 0 then
          local entry = call("HGET", P .. "list:" .. kind, a)
          if entry then
            lists[#lists + 1] = slot / 3 + 1
            lists[#lists + 1] = kind
            lists[#lists + 1] = entry
          end
        end
      end
    end
  end
  local dup = has(ko, out, W, t, id)
  local inbound = count(ki, read(ki), WI, t - DAY, t)

  local kc = P .. "c:" .. a
  local back = call("HGET", P .. "c:" .. b, a)
  local fwd = call("HGET", kc, b)
  local bits = 0
  if back then
    local last, prev = sunpack(">I6I6", back)
    if before(last, prev, t) >= t - HISTORY then bits = 1 end
  end
  if fwd then
    local last, prev = sunpack(">I6I6", fwd)
    if before(last, prev, t) >= t - HISTORY then bits = bits + 2 end
  end
  if dup then bits = bits + 4 end

  local per_imei, d, kd, mine = -1, nil, nil, nil
  if #imei > 0 then
    kd = P .. "dev:" .. imei
    d = device(kd)  -- the raw IMEI: a national key space is too big for a digest
    per_imei = 1
    for k = 1, #d, 3 do
      if d[k] == a then mine = k
      elseif before(d[k + 1], d[k + 2], t) >= t - DAY then per_imei = per_imei + 1 end
    end
  end

  if apply and not dup then
    if add(ko, out, W, rec, t, id) then bits = bits + 8 end
    local kb = P .. "in:" .. b
    local box = read(kb)
    if not has(kb, box, WI, t, id) then add(kb, box, WI, id, t, id) end
    touch(kc, b, fwd, t, byte(rec, 39) == 0)
    if d then
      local last, prev, changed
      if mine then
        last, prev, changed = step(d[mine + 1], d[mine + 2], t)
        d[mine + 1], d[mine + 2] = last, prev
      else
        last, prev, changed = step(0, 0, t)
        local k = #d
        if changed then
          d[k + 1], d[k + 2], d[k + 3] = a, last, prev
          if (k / 3 + 1) % 256 == 0 then
            d = trim_device(d)
            devs[kd] = d
          end
        end
      end
      if changed then dirty[kd] = true end
    end
  end
  numbers[nn + 1], numbers[nn + 2], numbers[nn + 3] = bits, inbound, per_imei
  nn = nn + 3
end
for key, new in pairs(adds) do flush(key, #new[1]) end
for key in pairs(dirty) do flush_device(key) end
return {numbers, callers, lists}
