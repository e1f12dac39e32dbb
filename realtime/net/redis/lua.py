"""The Lua scripts of the Redis broker, and the key layout they share.

Each script runs atomically in Redis, so ``seq`` numbering, history and
the pub/sub announcement of one message can never be seen half done, and
presence totals never disagree with the per-node entries they sum.

Keys (``C`` a channel name, ``N`` a node id: 16 hex digits, so
``rt:p:N:C`` cannot be read two ways)::

    rt:q:C        string  the channel's last seq
    rt:s:C        stream  kept messages, entry id "<seq>-0", field m = message JSON
    rt:c:C        pub/sub "M<seq> <message JSON>" | "J<sub>" (join) | "L<sub>" (leave)
    rt:n:C        hash    N -> subscribed connections on node N (for "delivered")
    rt:p:N:C      hash    sub -> connections of sub on node N (presence channels)
    rt:pt:C       hash    sub -> connections of sub on all live nodes
    rt:nch:N      hash    C -> "1"/"0" (join_leave): channels where N has entries
    rt:nodes      zset    N -> last heartbeat, ms on the Redis clock
    rt:revoked    zset    jti -> exp (epoch seconds)
    rt:revoke     pub/sub "<node> <exp> <jti>"
    rt:ctl        pub/sub server API requests (JSON); rt:ctl:N their answers to node N
    rt:idem:K     string  the first answer of the publish with idempotency key K
    rt:cutoffs    hash    JSON [sub, client_id] -> JSON [issued_before, keep_until]

A channel's counter and stream expire after ``idle_ttl`` once no node
has subscribers on it (clients invent channel names; Redis must not keep
every one forever); any node with subscribers makes them persistent
again.  A forgotten channel starts again at seq 1, as in the in-process
broker.  Redis must therefore not evict keys on its own
(``maxmemory-policy noeviction`` or ``volatile-*``).

Scripts touch keys they compute from their arguments, which standalone
Redis and Valkey allow; Redis Cluster does not (not supported).
"""

from __future__ import annotations

PREFIX_COUNTER = b"rt:q:"
PREFIX_STREAM = b"rt:s:"
PREFIX_CHANNEL = b"rt:c:"
PREFIX_COUNTS = b"rt:n:"
REVOKED = b"rt:revoked"
REVOKE_CHANNEL = b"rt:revoke"
CTL_PREFIX = b"rt:ctl"  # server API requests (rt:ctl) and answers (rt:ctl:<node>)
IDEMPOTENCY_PREFIX = b"rt:idem:"
CUTOFFS = b"rt:cutoffs"  # POST /api/revoke cut-offs, for nodes that were away  # idempotent publish: key -> first answer

# KEYS: counter, stream, pub/sub channel, node counts
# ARGV: message prefix (up to `"seq":`), suffix (after the number), keep, idle_ttl_ms
# Returns {seq, connections subscribed on all nodes}.
PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local body = ARGV[1] .. seq .. ARGV[2]
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', keep, seq .. '-0', 'm', body)
end
redis.call('PUBLISH', KEYS[3], 'M' .. seq .. ' ' .. body)
local n = 0
for _, v in ipairs(redis.call('HVALS', KEYS[4])) do n = n + tonumber(v) end
if n == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  if keep > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
end
return {seq, n}
"""

# KEYS: counter, stream.  ARGV: the highest seq this node has seen.
# Makes the counter at least that and at least the newest kept entry, so a
# Redis that lost its data (restarted without persistence) goes on
# numbering above what clients have already seen.  Returns the counter.
SEED = """
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top > 0 then
  local s = tonumber(string.match(top[1][1], '^(%d+)'))
  if s > want then want = s end
end
if want > c then
  redis.call('SET', KEYS[1], want)
  c = want
end
return c
"""

_SETCOUNT = """
local events = {}  -- 'J'/'L' .. sub: the joins and leaves this script caused (webhooks)
local function setcount(node, ch, sub, count, jl)
  local pk = 'rt:p:' .. node .. ':' .. ch
  local tk = 'rt:pt:' .. ch
  local old = tonumber(redis.call('HGET', pk, sub) or '0')
  if count == old then return end
  if count > 0 then redis.call('HSET', pk, sub, count) else redis.call('HDEL', pk, sub) end
  local after = redis.call('HINCRBY', tk, sub, count - old)
  local before = after - (count - old)
  if after <= 0 then redis.call('HDEL', tk, sub) end
  if jl == '1' then
    if before <= 0 and after > 0 then
      redis.call('PUBLISH', 'rt:c:' .. ch, 'J' .. sub)
      table.insert(events, 'J' .. sub)
    elseif before > 0 and after <= 0 then
      redis.call('PUBLISH', 'rt:c:' .. ch, 'L' .. sub)
      table.insert(events, 'L' .. sub)
    end
  end
end

local function idle(ch, ttl)
  if redis.call('HLEN', 'rt:n:' .. ch) == 0 then
    redis.call('PEXPIRE', 'rt:q:' .. ch, ttl)
    redis.call('PEXPIRE', 'rt:s:' .. ch, ttl)
  end
end

local function forget(node, ch, jl, ttl)
  local pk = 'rt:p:' .. node .. ':' .. ch
  local flat = redis.call('HGETALL', pk)
  for j = 1, #flat, 2 do setcount(node, ch, flat[j], 0, jl) end
  redis.call('DEL', pk)
  redis.call('HDEL', 'rt:n:' .. ch, node)
  redis.call('HDEL', 'rt:nch:' .. node, ch)
  idle(ch, ttl)
end
"""

# ARGV: node, channel, total (this node's connections on it), jl ("1"/"0"),
#       idle_ttl_ms, then (sub, count) pairs with this node's absolute counts.
# Absolute values make a report idempotent: a resync is a replay of them.
# Returns {change, event...}: change 1 when the channel had no subscriber on
# any node before and has one now (channel_occupied), -1 the other way
# (channel_vacated), else 0; then 'J'/'L' .. sub for the joins and leaves it
# caused.  Exactly one node's script sees each change: that node tells the
# webhooks, so they hear of it once across the cluster.
REPORT = _SETCOUNT + """
local node, ch, total, jl, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local before = redis.call('HLEN', 'rt:n:' .. ch)
if total == 0 then
  forget(node, ch, jl, ttl)
else
  for i = 6, #ARGV, 2 do setcount(node, ch, ARGV[i], tonumber(ARGV[i + 1]), jl) end
  redis.call('HSET', 'rt:n:' .. ch, node, total)
  redis.call('HSET', 'rt:nch:' .. node, ch, jl)
  redis.call('PERSIST', 'rt:q:' .. ch)
  redis.call('PERSIST', 'rt:s:' .. ch)
end
local after = redis.call('HLEN', 'rt:n:' .. ch)
local change = 0
if before == 0 and after > 0 then change = 1 elseif before > 0 and after == 0 then change = -1 end
local out = {change}
for _, e in ipairs(events) do table.insert(out, e) end
return out
"""

# ARGV: node, node_ttl_ms, idle_ttl_ms, revocation horizon (epoch s), leaving ("1": this
# node stops now and removes itself).  Registers this node's heartbeat, then
# removes every node silent for node_ttl: its presence goes (leave events)
# and its subscriber counts with it.  Returns {1 if this node was not
# registered (new, or reaped while cut off: it must report everything
# again), nodes reaped}.
HEARTBEAT = _SETCOUNT + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fresh = 0
local dead
if ARGV[5] == '1' then
  dead = {ARGV[1]}
else
  fresh = redis.call('ZADD', 'rt:nodes', now, ARGV[1])
  dead = redis.call('ZRANGEBYSCORE', 'rt:nodes', '-inf', now - tonumber(ARGV[2]))
end
for _, d in ipairs(dead) do
  redis.call('ZREM', 'rt:nodes', d)
  local chans = redis.call('HGETALL', 'rt:nch:' .. d)
  for i = 1, #chans, 2 do forget(d, chans[i], chans[i + 1], ARGV[3]) end
  redis.call('DEL', 'rt:nch:' .. d)
end
redis.call('ZREMRANGEBYSCORE', 'rt:revoked', '-inf', ARGV[4])
return {fresh, #dead}
"""

# ARGV: node, exp, jti
REVOKE = """
redis.call('ZADD', 'rt:revoked', 'GT', ARGV[2], ARGV[3])
redis.call('PUBLISH', 'rt:revoke', ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return 1
"""

# ARGV: channel, limit.  Returns {truncated (0/1), sub, count, sub, count...}:
# at most `limit` members, read by HSCAN so a huge channel costs a bounded
# amount of work.
PRESENCE = """
local tk = 'rt:pt:' .. ARGV[1]
local limit = tonumber(ARGV[2])
if redis.call('HLEN', tk) <= limit then
  local flat = redis.call('HGETALL', tk)
  table.insert(flat, 1, 0)
  return flat
end
local out = {1}
local cursor = '0'
repeat
  local r = redis.call('HSCAN', tk, cursor, 'COUNT', limit)
  cursor = r[1]
  local flat = r[2]
  for j = 1, #flat, 2 do
    if (#out - 1) / 2 >= limit then return out end
    table.insert(out, flat[j])
    table.insert(out, flat[j + 1])
  end
until cursor == '0'
return out
"""
