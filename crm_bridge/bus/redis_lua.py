"""Lua for the Redis bus: each multi-step change of ownership or of a pending-entry list is
one script, so two consumers never interleave inside it. Every key is passed in ``KEYS``
and all of one stream's keys share a hash tag (``{stream}``), so this also runs on Redis
Cluster. Times come from the server (``TIME``), so consumer hosts need no clock sync."""

from __future__ import annotations

__all__ = ["SCRIPTS"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: meta, partition streams...  ARGV: partitions, group ('' = check only)
# → the stored partition count (groups are created only when it matches)
ENSURE = """
redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'partitions'))
if stored == tonumber(ARGV[1]) and ARGV[2] ~= '' then
  for i = 2, #KEYS do
    local ok = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[2], '0', 'MKSTREAM')
    if type(ok) == 'table' and ok.err and not string.find(ok.err, 'BUSYGROUP') then
      return redis.error_reply(ok.err)
    end
  end
end
return stored
"""

# KEYS: members, n lease keys, n partition streams.  ARGV: consumer, lease_ms, group
# Heartbeat, forget members silent for lease_ms, renew this consumer's leases.
# → {live members, owned partitions, pending count of each, free partitions}
SYNC = (
    _NOW
    + """
local consumer, lease_ms, group = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = (#KEYS - 1) / 2
redis.call('ZADD', KEYS[1], now, consumer)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - lease_ms))
redis.call('PEXPIRE', KEYS[1], lease_ms * 10)
local owned, pending, free = {}, {}, {}
for i = 1, n do
  local holder = redis.call('GET', KEYS[1 + i])
  if holder == consumer then
    redis.call('PEXPIRE', KEYS[1 + i], lease_ms)
    owned[#owned + 1] = i - 1
    pending[#pending + 1] = redis.call('XPENDING', KEYS[1 + n + i], group)[1]
  elseif not holder then
    free[#free + 1] = i - 1
  end
end
return {redis.call('ZCARD', KEYS[1]), owned, pending, free}
"""
)

# KEYS: lease keys...  ARGV: consumer, lease_ms → how many were taken
ACQUIRE = """
local taken = 0
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then taken = taken + 1 end
end
return taken
"""

# KEYS: lease keys...  ARGV: consumer → give back the ones this consumer holds
RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""

# KEYS: members, n lease keys, n partition streams.  ARGV: consumer, group
# Give back every lease, drop the membership, and delete the group consumer wherever it
# has nothing pending (deleting it would drop its pending entries, so those stay).
LEAVE = """
local consumer, group = ARGV[1], ARGV[2]
local n = (#KEYS - 1) / 2
redis.call('ZREM', KEYS[1], consumer)
for i = 1, n do
  if redis.call('GET', KEYS[1 + i]) == consumer then redis.call('DEL', KEYS[1 + i]) end
  local stream = KEYS[1 + n + i]
  if #redis.call('XPENDING', stream, group, '-', '+', 1, consumer) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
  end
end
return 0
"""

# Shared by CLAIM and DEAD_LETTER. An entry's event is its 'e' field, the last one if it has
# several (false when it has none: not an event), as XREADGROUP's reader sees it (redis-py's
# field dict keeps the last). A dead letter: e (or x, the first value of an entry without
# 'e'), g (group), p (partition), id (entry), n (deliveries); the entry is acknowledged in
# the same step.
_BURY = """
local function event_text(fields)
  local text = false
  for i = 1, #fields, 2 do
    if fields[i] == 'e' then text = fields[i + 1] end
  end
  return text
end
local function bury(stream, dead, dead_maxlen, group, partition, id, fields, n)
  local text = event_text(fields)
  redis.call('XADD', dead, 'MAXLEN', '~', dead_maxlen, '*', text and 'e' or 'x',
             text or fields[2], 'g', group, 'p', partition, 'id', id, 'n', n)
  redis.call('XACK', stream, group, id)
end
"""

# KEYS: partition stream, dead stream.
# ARGV: group, consumer, min_idle_ms, count, max_deliveries, partition, dead_maxlen
# Claim entries idle >= min_idle_ms (XAUTOCLAIM counts a delivery); an entry already
# delivered max_deliveries times goes to the dead stream instead and is acknowledged.
# → {{id, json or false, deliveries}..., dead-lettered count, lost (trimmed) count}
CLAIM = (
    _BURY
    + """
local group, consumer, max_n = ARGV[1], ARGV[2], tonumber(ARGV[5])
local claimed = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[3], '0-0',
                           'COUNT', ARGV[4])
local out, dead, lost = {}, 0, #(claimed[3] or {})
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  local n = redis.call('XPENDING', KEYS[1], group, id, id, 1)[1][4]
  if not fields then
    redis.call('XACK', KEYS[1], group, id)
    lost = lost + 1
  elseif n > max_n then
    bury(KEYS[1], KEYS[2], ARGV[7], group, ARGV[6], id, fields, n - 1)
    dead = dead + 1
  else
    out[#out + 1] = {id, event_text(fields), n}
  end
end
return {out, dead, lost}
"""
)

# KEYS: partition stream, dead stream.  ARGV: group, consumer, partition, dead_maxlen, ids...
# Dead-letter entries this consumer just read or claimed that are not events, in one step:
# each only while it is still pending for this consumer (one that claimed it since, after
# this one stalled, deals with it), n = its deliveries so far. An entry trimmed since it
# was read is only acknowledged.
# → how many were dead-lettered
DEAD_LETTER = (
    _BURY
    + """
local group, consumer, dead = ARGV[1], ARGV[2], 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], group, id, id, 1)[1]
  if pending and pending[2] == consumer then
    local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
    if entry then
      bury(KEYS[1], KEYS[2], ARGV[4], group, ARGV[3], id, entry[2], pending[4])
      dead = dead + 1
    else
      redis.call('XACK', KEYS[1], group, id)
    end
  end
end
return dead
"""
)

# KEYS: partition streams p0..  ARGV: maxlen, then the batch packed in ONE argument: for
# each event "<partition index from 1>:<length of the text in bytes>:<text>", back to back.
# → entries appended. One command and one argument for a whole batch: the client packs one
# request of one bulk string (not two per event) and parses one reply.
APPEND = """
local maxlen, packed = ARGV[1], ARGV[2]
local pos, last, n = 1, #packed, 0
while pos <= last do
  local colon = string.find(packed, ':', pos, true)
  local colon2 = string.find(packed, ':', colon + 1, true)
  local stop = colon2 + tonumber(string.sub(packed, colon + 1, colon2 - 1))
  local partition = tonumber(string.sub(packed, pos, colon - 1))
  redis.call('XADD', KEYS[partition], 'MAXLEN', '~', maxlen, '*', 'e',
             string.sub(packed, colon2 + 1, stop))
  pos = stop + 1
  n = n + 1
end
return n
"""

SCRIPTS = {
    "append": APPEND,
    "ensure": ENSURE,
    "sync": SYNC,
    "acquire": ACQUIRE,
    "release": RELEASE,
    "leave": LEAVE,
    "claim": CLAIM,
    "dead_letter": DEAD_LETTER,
}
