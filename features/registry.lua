-- Subscriber registry writes, with the owner counts kept in step (a later record replaces
-- the earlier one: the old record's owner loses a number, the new one's gains one).
-- ARGV[1] prefix, ARGV[2] "u" (upsert) or "d" (delete), then per record:
--   upsert: bucket, field, packed record      delete: bucket, field
-- Returns how many records were written (upsert) or existed (delete).
local P, op = ARGV[1], ARGV[2]
local band, byte, sub = bit.band, string.byte, string.sub
local step = op == "u" and 3 or 2

-- owner deltas are summed over the call and applied once per owner at the end
local deltas, owners = {}, {}
local function owner(rec, delta)
  if band(byte(rec, 1), 64) == 0 then return end
  local o = sub(rec, -8)
  if not deltas[o] then deltas[o] = 0; owners[#owners + 1] = o end
  deltas[o] = deltas[o] + delta
end

local done = 0
for i = 3, #ARGV, step do
  local key, field = P .. "sub:" .. ARGV[i], ARGV[i + 1]
  local old = redis.call("HGET", key, field)
  if op == "u" then
    local new = ARGV[i + 2]
    if old ~= new then
      if old then owner(old, -1) end
      redis.call("HSET", key, field, new)
      owner(new, 1)
    end
    done = done + 1
  elseif old then
    owner(old, -1)
    redis.call("HDEL", key, field)
    done = done + 1
  end
end
for _, o in ipairs(owners) do
  local d = deltas[o]
  if d ~= 0 then
    local key, field = P .. "own:" .. sub(o, 1, 2), sub(o, 3)
    if redis.call("HINCRBY", key, field, d) <= 0 then redis.call("HDEL", key, field) end
  end
end
return done
