-- One batch of calls against the feature store: read each call's state, then (mode "1")
-- apply the call. Calls arrive sorted by start time; the whole batch is one atomic script,
-- so an interrupted batch leaves no trace and a retry is exact. Key layout: README
-- "Feature store key layout" (features/redisstore.py builds the arguments).
--
-- ARGV[1] prefix, ARGV[2] mode ("1" apply, "0" read-only), ARGV[3] event retention ms,
-- ARGV[4] relation retention ms, ARGV[5] event TTL ms, ARGV[6] relation TTL ms,
-- ARGV[7] scan cap (most recent own calls read per call), ARGV[8..] one packed call each:
--   >d t | u8 len(a) | a | u8 len(imei) | imei (raw, or empty) | member,
--   member = key(6) flags(1) >d duration imei(6) cell(6) b
--   flags: 1 answered, 2 has imei, 4 has cell
-- Returns {numbers, registry, lists}: numbers is 20 big-endian doubles per call (RAW of
-- features/assembly.py, then duplicate flag and owner count); registry one packed record
-- or "" per call; lists a flat {call index, kind, entry json, ...}.

local P, apply = ARGV[1], ARGV[2] == "1"
local EVENT_RETAIN, RELATION_RETAIN = tonumber(ARGV[3]), tonumber(ARGV[4])
local EVENT_TTL, RELATION_TTL = ARGV[5], ARGV[6]
local DAY, HOUR, MIN10, HISTORY = 86400000, 3600000, 600000, 30 * 86400000
local SHORT = 10.0
local SCAN_CAP = tonumber(ARGV[7])
local byte, sub, band, fmt = string.byte, string.sub, bit.band, string.format
local unpack6 = function(s, i) return struct.unpack(">I6", s, i) end
local KINDS = {"block", "allow", "dno"}

local function ms(x) return fmt("%.0f", x) end

-- latest contact strictly before t from a 12-byte "last|prev" value, or -1
local function before(v, t)
  if not v then return -1 end
  local last, prev = struct.unpack(">I6I6", v)
  if last < t then return last end
  if prev > 0 and prev < t then return prev end
  return -1
end

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
    for j = 2, #all, 2 do local l = unpack6(all[j], 1); if l > newest then newest = l end end
    for j = 2, #all, 2 do
      if unpack6(all[j], 1) < newest - retain then redis.call("HDEL", key, all[j - 1]) end
    end
  end
  if changed then redis.call("PEXPIRE", key, ttl) end
end

local function add_event(key, t, member, retain, ttl)
  redis.call("ZADD", key, t, member)
  local newest = redis.call("ZREVRANGE", key, 0, 0, "WITHSCORES")
  redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. ms(tonumber(newest[2]) - retain))
  redis.call("PEXPIRE", key, ttl)
end

local numbers, registry, lists = {}, {}, {}
for i = 8, #ARGV do
  local s = ARGV[i]
  local t = struct.unpack(">d", s, 1)
  local la = byte(s, 9)
  local a = sub(s, 10, 9 + la)
  local li = byte(s, 10 + la)
  local raw_imei = sub(s, 11 + la, 10 + la + li)
  local m = sub(s, 11 + la + li)
  local key, flags, b = sub(m, 1, 6), byte(m, 7), sub(m, 28)
  local imei = band(flags, 2) ~= 0 and sub(m, 16, 21) or nil
  local cell = band(flags, 4) ~= 0 and sub(m, 22, 27) or nil
  local ok = P .. "o:" .. a
  local ts, tday = ms(t), ms(t - DAY)
  local lo = "(" .. ts

  -- the caller's own calls in [t - 24h, t): the most recent SCAN_CAP of them (plus ties at
  -- the edge) are read; counts stay exact, shares and distinct counts come from the recent
  -- calls when there are more (features/retention.py SCAN_CAP)
  local c10, c1, c24, a1, a24, s1, s24, d1, d24 = 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0
  local b10, b1, b24, nb10, nb1, nb24 = {}, {}, {}, 0, 0, 0
  local imeis, cells, ni, nc = {}, {}, 0, 0
  local ev = redis.call("ZREVRANGEBYSCORE", ok, lo, tday, "WITHSCORES", "LIMIT", 0, SCAN_CAP)
  local first, last, step = #ev - 1, 1, -2  -- oldest first, so sums run in time order
  local n10, n1, n24
  if #ev == 2 * SCAN_CAP then
    n24 = redis.call("ZCOUNT", ok, tday, lo)
    if n24 > SCAN_CAP then
      ev = redis.call("ZRANGEBYSCORE", ok, ev[#ev], lo, "WITHSCORES")
      first, last, step = 1, #ev - 1, 2
      n10 = redis.call("ZCOUNT", ok, ms(t - MIN10), lo)
      n1 = redis.call("ZCOUNT", ok, ms(t - HOUR), lo)
    end
  end
  for j = first, last, step do
    local e, te = ev[j], tonumber(ev[j + 1])
    local ef = byte(e, 7)
    local dur = struct.unpack(">d", e, 8)
    local eb = sub(e, 28)
    local ans = band(ef, 1) ~= 0
    local short = dur < SHORT
    c24 = c24 + 1
    if not b24[eb] then b24[eb] = true; nb24 = nb24 + 1 end
    if ans then a24 = a24 + 1; d24 = d24 + dur end
    if short then s24 = s24 + 1 end
    if band(ef, 2) ~= 0 then local x = sub(e, 16, 21); if not imeis[x] then imeis[x] = true; ni = ni + 1 end end
    if band(ef, 4) ~= 0 then local x = sub(e, 22, 27); if not cells[x] then cells[x] = true; nc = nc + 1 end end
    if te >= t - HOUR then
      c1 = c1 + 1
      if not b1[eb] then b1[eb] = true; nb1 = nb1 + 1 end
      if ans then a1 = a1 + 1; d1 = d1 + dur end
      if short then s1 = s1 + 1 end
      if te >= t - MIN10 then
        c10 = c10 + 1
        if not b10[eb] then b10[eb] = true; nb10 = nb10 + 1 end
      end
    end
  end
  if n1 and n1 > c1 then a1, s1, d1 = a1 * n1 / c1, s1 * n1 / c1, d1 * n1 / c1 end
  if n24 and n24 > c24 then a24, s24, d24 = a24 * n24 / c24, s24 * n24 / c24, d24 * n24 / c24 end
  c10, c1, c24 = n10 or c10, n1 or c1, n24 or c24

  -- calls at t or later: the duplicate check (same key at score t) and the newest event time
  local dup, newest = 0, t
  local later = redis.call("ZRANGEBYSCORE", ok, ts, "+inf", "WITHSCORES")
  for j = 1, #later, 2 do
    local te = tonumber(later[j + 1])
    if te == t and sub(later[j], 1, 6) == key then dup = 1 end
    if te > newest then newest = te end
  end

  local back = redis.call("HGET", P .. "c:" .. b, a)
  local fwd = redis.call("HGET", P .. "c:" .. a, b)
  local callee_before = before(back, t) >= t - HISTORY and 1 or 0
  local caller_before = before(fwd, t) >= t - HISTORY and 1 or 0
  local inbound = redis.call("ZCOUNT", P .. "i:" .. a, tday, lo)

  local per_imei, per_number, n_cells = -1, -1, -1
  local dk, on_imei
  if imei then
    dk = P .. "d:" .. raw_imei  -- the raw IMEI: a national key space is too big for a digest
    local all = redis.call("HGETALL", dk)
    per_imei = 1
    for j = 1, #all, 2 do
      if all[j] ~= a and before(all[j + 1], t) >= t - DAY then per_imei = per_imei + 1 end
      if all[j] == a then on_imei = all[j + 1] end
    end
    per_number = ni + (imeis[imei] and 0 or 1)
  end
  if cell then n_cells = nc + (cells[cell] and 0 or 1) end

  local reg = redis.call("HGET", P .. "sub:" .. sub(a, 1, -3), string.char(tonumber(sub(a, -2))))
  local owners = 0
  if reg and band(byte(reg, 1), 64) ~= 0 then
    owners = tonumber(redis.call("HGET", P .. "own:" .. sub(reg, -8, -7), sub(reg, -6)) or 0)
  end
  registry[#registry + 1] = reg or ""
  for _, kind in ipairs(KINDS) do
    local entry = redis.call("HGET", P .. "list:" .. kind, a)
    if entry then
      lists[#lists + 1] = i - 7
      lists[#lists + 1] = kind
      lists[#lists + 1] = entry
    end
  end

  numbers[#numbers + 1] = struct.pack(">dddddddddddddddddddd",
    c10, c1, c24, nb10, nb1, nb24, a1, s1, d1, a24, s24, d24,
    callee_before, caller_before, inbound, per_imei, per_number, n_cells, dup, owners)

  if apply and dup == 0 then
    -- a call older than the caller's retention would be trimmed at once: same state, less work
    if t >= newest - EVENT_RETAIN then
      redis.call("ZADD", ok, t, m)
      redis.call("ZREMRANGEBYSCORE", ok, "-inf", "(" .. ms(newest - EVENT_RETAIN))
      redis.call("PEXPIRE", ok, EVENT_TTL)
    end
    add_event(P .. "i:" .. b, t, key, EVENT_RETAIN, EVENT_TTL)
    touch(P .. "c:" .. a, b, fwd, t, RELATION_RETAIN, RELATION_TTL)
    if imei then touch(dk, a, on_imei, t, EVENT_RETAIN, EVENT_TTL) end
  end
end
return {table.concat(numbers), registry, lists}
