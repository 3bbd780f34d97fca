-- One batch of calls against the feature store: read each call's state, then (mode "1")
-- apply the call. Calls arrive sorted by start time; the whole script is atomic, so an
-- interrupted batch leaves no trace and a retry is exact. Key layout: README "Feature store
-- key layout" (features/_online.pyx builds the arguments and reads the reply).
--
-- A number's own calls (cs:out:), received calls (cs:in:) and the numbers seen on an IMEI
-- (cs:imei:) are each ONE string of fixed-width records. The script reads each such string
-- once (GET), keeps what it adds in Lua, and writes the string back once at the end
-- (SET .. PX), trimmed to the retention before its newest record.
--
-- The script counts nothing: it returns each string as read, once per script (the caller's
-- cs:out: and cs:in:, each IMEI's cs:imei:), and per call what it found and did (the bits
-- below); the client (features/_online.pyx) computes every window from those strings plus
-- the calls this script applied before each call. Redis CPU is the worker's bottleneck: a
-- command, a string and a Lua function call each cost Redis more than the counting does on
-- the client.
--
-- ARGV[1] prefix, ARGV[2] mode ("1" apply, "0" read-only), ARGV[3] event retention ms,
-- ARGV[4] relation retention ms, ARGV[5] event TTL ms, ARGV[6] relation TTL ms,
-- then five arguments per call: record(39), a_number, a_imei ("" when absent), b_number,
-- h6(a_number) ("" without an IMEI);
--   record = u48 t | key(6) | flags(1) | >d duration | imei(6) | cell(6) | callee(6)
--   (digests; flags: 1 answered, 2 has imei, 4 has cell), as stored in cs:out:;
--   cs:in: stores its first 12 bytes (t, key); cs:imei: stores h6(a_number) | u48 last
--   ms | u48 latest earlier ms (0: none) per number.
-- Returns one flat array, bits .. callers .. imeis .. lists (the client knows how many calls,
-- callers and IMEIs each script has, so it knows where each part starts; a nested reply costs
-- Redis 6.2 one write(2) per inner array, ~20 us each on loopback):
--   bits: one integer per call: 1 callee called caller before (30 d), 2 caller called
--     callee before, 4 duplicate, 8 added to the caller's cs:out:, 16 added to the callee's
--     cs:in:, 32 the caller's entry on its IMEI changed;
--   callers: 4 values per caller, in order of the caller's first call in the script: its
--     cs:out: and cs:in: strings as read, its packed registry record ("" when not held),
--     its owner count;
--   imeis: the cs:imei: string of each IMEI as read, in order of its first call;
--   lists: caller index (1-based), kind, entry json, per entry found (the rest of the reply).

local P, apply = ARGV[1], ARGV[2] == "1"
local EVENT_RETAIN, RELATION_RETAIN = tonumber(ARGV[3]), tonumber(ARGV[4])
local EVENT_TTL, RELATION_TTL = ARGV[5], ARGV[6]
local HISTORY = 30 * 86400000
local W, WI, WD = 39, 12, 18
local call = redis.call
local byte, sub, find, floor, concat = string.byte, string.sub, string.find, math.floor, table.concat
local band, sunpack, spack = bit.band, struct.unpack, struct.pack
local KINDS, BITS = {"block", "allow", "dno"}, {1, 2, 4}

-- the record of width w in s that starts with id (its first bytes), as a 1-based position
local function locate(s, w, id)
  local pos = find(s, id, 1, true)
  while pos and (pos - 1) % w ~= 0 do pos = find(s, id, pos + 1, true) end
  return pos
end

-- Timelines (cs:out:, cs:in:): the string as read, and (apply mode) the records this script
-- adds, in time order, each also indexed by its 12-byte id (start time and call key).
local olds, adds = {}, {}
local function read(key)
  local s = olds[key]
  if not s then
    s = call("GET", key) or ""
    olds[key] = s
  end
  return s
end

-- is the call already in the timeline?
local function has(key, s, w, id)
  local new = adds[key]
  return (new and new[id]) or locate(s, w, id) ~= nil
end

-- was there a contact before t within the history, from a 12-byte (last, prev) value?
-- The latest contact strictly before t is last if last < t, else prev (0: none).
local function before(v, t)
  if not v then return false end
  local last, prev = sunpack(">I6I6", v)
  if last >= t then last = prev > 0 and prev < t and prev or -1 end
  return last >= t - HISTORY
end

-- Apply mode only: a read-only script (the API's screening) does not make these.
local add, flush, touch, seen_on
local imeis, current = {}, {}  -- cs:imei: keys this script changes; their strings
if apply then
  local tops = {}

  -- first record index (0-based) in [lo, hi) of s (width w) whose time is >= x
  local function lower(s, w, lo, hi, x)
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      if (sunpack(">I6", s, mid * w + 1)) < x then lo = mid + 1 else hi = mid end
    end
    return lo
  end

  -- add a record; one older than the retention before the newest would be trimmed at once
  add = function(key, s, w, rec, t, id)
    local top = tops[key]
    if not top then top = #s > 0 and sunpack(">I6", s, #s - w + 1) or -1 end
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

  -- write back: merged (a record after the ones of equal time), trimmed, with the TTL
  flush = function(key, w)
    local new = adds[key]
    local s = olds[key]
    local n = #s / w
    local v
    if n == 0 or sunpack(">I6", new[1], 1) >= sunpack(">I6", s, (n - 1) * w + 1) then
      v = #new == 1 and s .. new[1] or s .. concat(new)
    else  -- late records: splice each one in
      v = s
      for k = 1, #new do
        local j = lower(v, w, 0, #v / w, sunpack(">I6", new[k], 1) + 1)
        v = sub(v, 1, j * w) .. new[k] .. sub(v, j * w + 1)
      end
    end
    local edge = tops[key] - EVENT_RETAIN
    if sunpack(">I6", v, 1) < edge then
      local cut = lower(v, w, 0, #v / w, edge)
      if cut > 0 then v = sub(v, cut * w + 1) end
    end
    call("SET", key, v, "PX", EVENT_TTL)
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
  touch = function(key, member, old, t, trigger)
    local last, prev = 0, 0
    if old then last, prev = sunpack(">I6I6", old) end
    local changed
    last, prev, changed = step(last, prev, t)
    if not changed then return end
    if call("HSET", key, member, spack(">I6I6", last, prev)) == 1 and trigger and call("HLEN", key) >= 256 then
      local all = call("HGETALL", key)
      local newest = 0
      for j = 2, #all, 2 do local l = sunpack(">I6", all[j], 1); if l > newest then newest = l end end
      for j = 2, #all, 2 do
        if sunpack(">I6", all[j], 1) < newest - RELATION_RETAIN then call("HDEL", key, all[j - 1]) end
      end
    end
    if not expiring[key] then
      call("PEXPIRE", key, RELATION_TTL)
      expiring[key] = true
    end
  end

  -- cs:imei: (numbers per IMEI): the string as read (returned) and as this script changes it.
  -- A number's entry takes a contact at t as relations do; a number new to the IMEI is
  -- appended, and when that makes the count a multiple of 256, numbers last seen before the
  -- retention before the newest are dropped (memory only, as for relations; features/memstore.py
  -- and the client apply the same rule).
  seen_on = function(key, da, t)
    local s = current[key]
    local pos = locate(s, WD, da)
    if pos then
      local last, prev = sunpack(">I6I6", s, pos + 6)
      local changed
      last, prev, changed = step(last, prev, t)
      if not changed then return false end
      current[key] = sub(s, 1, pos + 5) .. spack(">I6I6", last, prev) .. sub(s, pos + WD)
      return true
    end
    s = s .. da .. spack(">I6I6", t, 0)
    local n = #s / WD
    if n % 256 == 0 then
      local newest = 0
      for k = 7, #s, WD do
        local l = sunpack(">I6", s, k)
        if l > newest then newest = l end
      end
      local kept = {}
      for k = 1, #s, WD do
        if sunpack(">I6", s, k + 6) >= newest - EVENT_RETAIN then kept[#kept + 1] = sub(s, k, k + WD - 1) end
      end
      s = concat(kept)
    end
    current[key] = s
    return true
  end
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

local bits, callers, found, lists = {}, {}, {}, {}
for i = 7, #ARGV, 5 do
  local rec, a, imei, b = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local id, t = sub(rec, 1, 12), sunpack(">I6", rec, 1)
  local ko = P .. "out:" .. a
  local out = olds[ko]
  if not out then
    -- first call of this caller in the script: its strings, registry record, owner count, lists
    out = read(ko)
    local reg = call("HGET", P .. "sub:" .. sub(a, 1, -3), string.char(tonumber(sub(a, -2))))
    local owners = 0
    if reg and band(byte(reg, 1), 64) ~= 0 then
      owners = tonumber(call("HGET", P .. "own:" .. sub(reg, -8, -7), sub(reg, -6)) or 0)
    end
    local slot = #callers
    callers[slot + 1], callers[slot + 2], callers[slot + 3], callers[slot + 4] =
      out, read(P .. "in:" .. a), reg or "", owners
    local on = present
    if indexed > 1 then on = tonumber(call("HGET", P .. "list:index", a) or 0)
    elseif indexed == 1 then on = 0 end
    if on ~= 0 then
      for k, kind in ipairs(KINDS) do
        if band(on, BITS[k]) ~= 0 then
          local entry = call("HGET", P .. "list:" .. kind, a)
          if entry then
            lists[#lists + 1] = slot / 4 + 1
            lists[#lists + 1] = kind
            lists[#lists + 1] = entry
          end
        end
      end
    end
  end
  local dup = has(ko, out, W, id)

  local kc = P .. "c:" .. a
  local fwd = call("HGET", kc, b)
  local v = before(call("HGET", P .. "c:" .. b, a), t) and 1 or 0
  if before(fwd, t) then v = v + 2 end
  if dup then v = v + 4 end

  local kd = false
  if #imei > 0 then
    kd = P .. "imei:" .. imei  -- the raw IMEI: a national key space is too big for a digest
    if not current[kd] then
      local s = call("GET", kd) or ""
      current[kd] = s
      found[#found + 1] = s
    end
  end

  if apply and not dup then
    if add(ko, out, W, rec, t, id) then v = v + 8 end
    local kb = P .. "in:" .. b
    local box = read(kb)
    if not has(kb, box, WI, id) and add(kb, box, WI, id, t, id) then v = v + 16 end
    touch(kc, b, fwd, t, byte(rec, 39) == 0)
    if kd and seen_on(kd, ARGV[i + 4], t) then
      v = v + 32
      imeis[kd] = true
    end
  end
  bits[#bits + 1] = v
end
for key, new in pairs(adds) do flush(key, #new[1]) end
for key in pairs(imeis) do call("SET", key, current[key], "PX", EVENT_TTL) end
local reply, n = bits, #bits
for _, part in ipairs({callers, found, lists}) do
  for k = 1, #part do reply[n + k] = part[k] end
  n = n + #part
end
return reply
