-- Add or remove one list entry and keep the list index in step, atomically.
--
-- cs:list:{block|allow|dno} hold the entries (number -> ListEntry JSON); cs:list:index maps
-- a number on any list to the bit mask of its lists (1 block, 2 allow, 4 dno), so that
-- features/batch.lua reads one field per caller instead of three. The field "" marks the
-- index as built: when it is missing (lists written before the index existed), the first
-- change builds it from the lists as they stand, and batch.lua reads the three lists
-- directly until then.
--
-- ARGV[1] prefix, ARGV[2] "add", "del" or "index" (only build the index if missing; RedisStore
-- does this once before its first batch), ARGV[3] kind, ARGV[4] number, ARGV[5] entry JSON (add).
-- Returns what HSET / HDEL on the list returned (0 for "index").

local P, op, kind, number = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local BITS = {block = 1, allow = 2, dno = 4}
local index = P .. "list:index"

local function mask(n)
  local m = 0
  for k, b in pairs(BITS) do
    if redis.call("HEXISTS", P .. "list:" .. k, n) == 1 then m = m + b end
  end
  return m
end

if redis.call("EXISTS", index) == 0 then
  redis.call("HSET", index, "", "")
  for k in pairs(BITS) do
    for _, n in ipairs(redis.call("HKEYS", P .. "list:" .. k)) do redis.call("HSET", index, n, mask(n)) end
  end
end
if op == "index" then return 0 end
local r
if op == "add" then
  r = redis.call("HSET", P .. "list:" .. kind, number, ARGV[5])
else
  r = redis.call("HDEL", P .. "list:" .. kind, number)
end
local m = mask(number)
if m == 0 then redis.call("HDEL", index, number) else redis.call("HSET", index, number, m) end
return r
