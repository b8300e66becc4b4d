"""Lua scripts for ``RedisAgentStateStore``: each operation is one atomic script.

The steps mirror ``rules.py`` function by function. Every script gets ``ARGV[1]`` = key
prefix and ``ARGV[2]`` = now (epoch seconds, as text), builds its keys from the prefix, and
returns one JSON document. Changes are published from inside the script, so the feed order
is the order in which Redis ran the scripts.
"""

from __future__ import annotations

PRELUDE = r"""
local P, NOW = ARGV[1], ARGV[2]
local NOWN = tonumber(NOW)
local RES, CHANNEL = P .. 'reservations', P .. 'changes'
local FIELDS = {'state', 'since', 'idle_since', 'max', 'res_call', 'res_exp'}
local function akey(id) return P .. 'agent:' .. id end
local function ckey(id) return P .. 'calls:' .. id end

local function load(id)
  local flat = redis.call('HGETALL', akey(id))
  if #flat == 0 then return nil end
  local rec = {id = id}
  for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  return rec
end

local function view(rec)
  local out = {calls = redis.call('SMEMBERS', ckey(rec.id)), id = rec.id}
  for _, f in ipairs(FIELDS) do out[f] = rec[f] end
  return out
end

local function save(rec)
  local args = {}
  for _, f in ipairs(FIELDS) do
    if rec[f] then args[#args + 1] = f; args[#args + 1] = rec[f] end
  end
  redis.call('DEL', akey(rec.id))
  redis.call('HSET', akey(rec.id), unpack(args))
  if rec.res_call and rec.res_exp then
    redis.call('ZADD', RES, rec.res_exp, rec.id)
  else
    redis.call('ZREM', RES, rec.id)
  end
end

local function commit(rec, cause, at, previous, call_id)
  save(rec)
  local change = {cause = cause, at = at, previous = previous, call_id = call_id,
                  agent = view(rec)}
  redis.call('PUBLISH', CHANNEL, cjson.encode(change))
end

local function enter(rec, state, at)
  if rec.state ~= state then rec.state = state; rec.since = at end
end

local function apply_expiry(rec)
  if not rec.res_call or not rec.res_exp or tonumber(rec.res_exp) > NOWN then return nil end
  local previous, call_id, at = rec.state, rec.res_call, rec.res_exp
  rec.res_call = nil; rec.res_exp = nil
  if rec.state == 'reserved' or rec.state == 'ringing' then enter(rec, 'available', at) end
  return {previous, call_id, at}
end

local function expire_due(rec)
  local expired = apply_expiry(rec)
  if expired then commit(rec, 'expiry', expired[3], expired[1], expired[2]) end
  return expired ~= nil
end

local function load_live(id)
  local rec = load(id)
  if rec then expire_due(rec) end
  return rec
end

local function reply(doc) return cjson.encode(doc) end
"""

REGISTER = r"""
local id, max = ARGV[3], ARGV[4]
local rec = load(id)
if rec then
  rec.max = max; save(rec)
else
  rec = {id = id, state = 'logged_out', since = NOW, max = max}
  redis.call('SADD', P .. 'ids', id)
  commit(rec, 'registered', NOW, nil, nil)
end
return reply({agent = view(rec)})
"""

SNAPSHOT = r"""
local ids = ARGV[3] and {ARGV[3]} or redis.call('SMEMBERS', P .. 'ids')
local agents = {}
for _, id in ipairs(ids) do
  local rec = load(id)
  if rec then apply_expiry(rec); agents[#agents + 1] = view(rec) end
end
return reply({agents = agents})
"""

SET_STATE = r"""
local id, target, sources = ARGV[3], ARGV[4], ARGV[5]
local rec = load_live(id)
if not rec then return reply({error = 'unknown'}) end
if rec.state == target then return reply({agent = view(rec)}) end
if not string.find(',' .. sources .. ',', ',' .. rec.state .. ',', 1, true) then
  return reply({error = 'transition', state = rec.state})
end
local previous, call_id = rec.state, rec.res_call
rec.res_call = nil; rec.res_exp = nil
enter(rec, target, NOW)
if target == 'available' then rec.idle_since = NOW end
commit(rec, 'set_state', NOW, previous, call_id)
return reply({agent = view(rec)})
"""

RESERVE = r"""
local call_id, expires, strict = ARGV[3], ARGV[4], ARGV[5] == '1'
local function try_reserve(rec)
  if rec.res_call then return rec.res_call == call_id end
  if redis.call('SISMEMBER', ckey(rec.id), call_id) == 1 then return false end
  local spare = redis.call('SCARD', ckey(rec.id)) < tonumber(rec.max)
  if rec.state ~= 'available' and not (rec.state == 'on_call' and spare) then return false end
  local previous = rec.state
  rec.res_call = call_id; rec.res_exp = expires
  if rec.state == 'available' then enter(rec, 'reserved', NOW) end
  commit(rec, 'reserve', NOW, previous, call_id)
  return true
end
for i = 6, #ARGV do
  local rec = load_live(ARGV[i])
  if not rec then
    if strict then return reply({error = 'unknown'}) end
  elseif try_reserve(rec) then
    return reply({reserved = ARGV[i]})
  end
end
return reply({reserved = false})
"""

CONFIRM = r"""
local id, call_id, ring_exp = ARGV[3], ARGV[4], ARGV[5]
local rec = load_live(id)
if not rec then return reply({error = 'unknown'}) end
if rec.res_call ~= call_id then return reply({error = 'lost'}) end
local previous = rec.state
if rec.state == 'reserved' then
  if ring_exp == '' then rec.res_exp = nil else rec.res_exp = ring_exp end
  enter(rec, 'ringing', NOW)
else
  rec.res_call = nil; rec.res_exp = nil
  redis.call('SADD', ckey(id), call_id)
  enter(rec, 'on_call', NOW)
end
commit(rec, 'confirm', NOW, previous, call_id)
return reply({state = rec.state})
"""

RELEASE = r"""
local id, call_id, wrap_up = ARGV[3], ARGV[4], ARGV[5] == '1'
local rec = load_live(id)
if not rec then return reply({error = 'unknown'}) end
local previous = rec.state
if rec.res_call == call_id then
  rec.res_call = nil; rec.res_exp = nil
  if rec.state == 'reserved' or rec.state == 'ringing' then enter(rec, 'available', NOW) end
elseif redis.call('SREM', ckey(id), call_id) == 1 then
  if redis.call('SCARD', ckey(id)) == 0 then
    if rec.res_call then
      enter(rec, 'reserved', NOW)
    elseif wrap_up then
      enter(rec, 'wrap_up', NOW)
    else
      enter(rec, 'available', NOW); rec.idle_since = NOW
    end
  end
else
  return reply({released = false})
end
commit(rec, 'release', NOW, previous, call_id)
return reply({released = true})
"""

SWEEP = r"""
local expired = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RES, '-inf', NOW)) do
  local rec = load(id)
  if rec == nil then
    redis.call('ZREM', RES, id)
  elseif expire_due(rec) then
    expired[#expired + 1] = id
  end
end
table.sort(expired)
return reply({expired = expired})
"""

SCRIPTS: dict[str, str] = {
    name: PRELUDE + body
    for name, body in {
        "register": REGISTER,
        "snapshot": SNAPSHOT,
        "set_state": SET_STATE,
        "reserve": RESERVE,
        "confirm": CONFIRM,
        "release": RELEASE,
        "sweep": SWEEP,
    }.items()
}
