-- Subscriber registry writes, with the owner counts kept in step (a later record replaces
-- the earlier one: the old record's owner loses a number, the new one's gains one).
-- ARGV[1] prefix, ARGV[2] "u" (upsert) or "d" (delete), then per bucket:
--   bucket, n, then n times (field, packed record) for "u", or n fields for "d".
-- Records of one bucket are read with one HMGET and written with one HSET; a field that
-- occurs twice in a group is applied in order (the later record wins).
-- Returns how many records were written (upsert) or existed (delete).
local P, op = ARGV[1], ARGV[2]
local band, byte, sub = bit.band, string.byte, string.sub
local upsert = op == "u"
local step = upsert and 2 or 1

-- owner deltas are summed over the call and applied once per owner at the end
local deltas, owners = {}, {}
local function owner(rec, delta)
  if band(byte(rec, 1), 64) == 0 then return end
  local o = sub(rec, -8)
  if not deltas[o] then deltas[o] = 0; owners[#owners + 1] = o end
  deltas[o] = deltas[o] + delta
end

local done = 0
local i = 3
while i <= #ARGV do
  local key, n = P .. "sub:" .. ARGV[i], tonumber(ARGV[i + 1])
  local first = i + 2
  local fields = {}
  for k = 0, n - 1 do fields[k + 1] = ARGV[first + k * step] end
  local olds = redis.call("HMGET", key, unpack(fields))
  local current, writes, gone = {}, {}, {}
  for k = 1, n do
    local f = fields[k]
    local old = current[f]
    if old == nil then old = olds[k] end
    if upsert then
      local new = ARGV[first + (k - 1) * 2 + 1]
      if old ~= new then
        if old then owner(old, -1) end
        owner(new, 1)
        writes[#writes + 1] = f
        writes[#writes + 1] = new
      end
      current[f] = new
      done = done + 1
    elseif old then
      owner(old, -1)
      gone[#gone + 1] = f
      current[f] = false
      done = done + 1
    end
  end
  if #writes > 0 then redis.call("HSET", key, unpack(writes)) end
  if #gone > 0 then redis.call("HDEL", key, unpack(gone)) end
  i = first + n * step
end
for _, o in ipairs(owners) do
  local d = deltas[o]
  if d ~= 0 then
    local key, field = P .. "own:" .. sub(o, 1, 2), sub(o, 3)
    if redis.call("HINCRBY", key, field, d) <= 0 then redis.call("HDEL", key, field) end
  end
end
return done
