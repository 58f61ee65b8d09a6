"""The Lua scripts of ``RedisRunQueue`` (``runqueue.py`` says what they do): each runs
atomically on the server, so two receivers never both take one entry.

KEYS/ARGV: claim ``[stream, dead]`` / ``group, consumer, min-idle ms, limit,
max_receives``; extend ``[stream]`` / ``group, idle ms, (id, consumer, count)...``; drain
``[dead]`` / ``limit``.
"""

# Take over idle entries (at most 10 XAUTOCLAIM passes); move the over-delivered ones to
# the dead stream. Returns {id, run, count} per delivered entry.
CLAIM = """
local limit, maxr = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, cursor = {}, '0-0'
for _ = 1, 10 do
  local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
                           'COUNT', limit - #out)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    local id, fields = entry[1], entry[2]
    if type(fields) == 'table' then
      local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      local count = pending[1][4]
      if maxr > 0 and count > maxr then
        redis.call('XADD', KEYS[2], '*', 'run', fields[2])
        redis.call('XACK', KEYS[1], ARGV[1], id)
        redis.call('XDEL', KEYS[1], id)
      else
        table.insert(out, {id, fields[2], count})
      end
    end
  end
  if cursor == '0-0' or #out >= limit then break end
end
return out
"""

# ARGV: group, idle ms, then (id, consumer, count) triples: set the idle time of each
# entry still held by that consumer at that delivery count.
EXTEND = """
for i = 3, #ARGV, 3 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[i + 1] and p[1][4] == tonumber(ARGV[i + 2]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[i + 1], 0, ARGV[i], 'IDLE', ARGV[2], 'JUSTID')
  end
end
return 0
"""

DRAIN = """
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
local runs = {}
for _, entry in ipairs(entries) do
  redis.call('XDEL', KEYS[1], entry[1])
  table.insert(runs, entry[2][2])
end
return runs
"""
