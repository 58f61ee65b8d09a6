"""The Lua scripts of ``RedisSubmissionLog`` (one per operation, so each is atomic on the
server and reaches the AOF as one MULTI/EXEC). ``submissions.py`` says what they do.

KEYS/ARGV: append ``[stream, index]`` / ``key1, job1, key2, job2...``; read ``[stream]`` /
``group, consumer|hold_ms, limit``; ack ``[stream, index]`` / ``group, id1, id2...``.
"""

# A shebang script is refused up front when Redis is out of memory (never half-run).
APPEND = """#!lua
for i = 1, #ARGV, 2 do
  local id = redis.call('XADD', KEYS[1], '*', 'k', ARGV[i], 'j', ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], id)
end
return #ARGV / 2
"""

READ = """#!lua
local stream, group, me, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
local due = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] > 0 then
    local hold = tonumber(string.match(info['name'], '|(%d+)$')) or 0
    local rows = redis.call('XPENDING', stream, group, 'IDLE', hold, '-', '+', limit, info['name'])
    for _, p in ipairs(rows) do due[#due + 1] = p[1] end
  elseif info['name'] ~= me then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
  end
end
local function split(id)
  local ms, seq = string.match(id, '(%d+)-(%d+)')
  return tonumber(ms), tonumber(seq)
end
table.sort(due, function(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  if am ~= bm then return am < bm end
  return as < bs
end)
local out = {}
for first = 1, math.min(#due, limit), 500 do
  local ids = {}
  for i = first, math.min(first + 499, #due, limit) do ids[#ids + 1] = due[i] end
  for _, e in ipairs(redis.call('XCLAIM', stream, group, me, 0, unpack(ids))) do
    if type(e) == 'table' then out[#out + 1] = e end
  end
end
if #out < limit then
  local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', limit - #out,
                       'STREAMS', stream, '>')
  if r then for _, e in ipairs(r[1][2]) do out[#out + 1] = e end end
end
return out
"""

ACK = """#!lua
for i = 2, #ARGV do
  local id = ARGV[i]
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if #e > 0 then
    local f = e[1][2]
    for j = 1, #f, 2 do
      if f[j] == 'k' and redis.call('HGET', KEYS[2], f[j + 1]) == id then
        redis.call('HDEL', KEYS[2], f[j + 1])
      end
    end
  end
  redis.pcall('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
return #ARGV - 1
"""
