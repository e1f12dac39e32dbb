"""The Redis broker: several nodes share channels, history, presence and
revocations (SPEC §2 ``[broker] url``, DESIGN.md §8, issues 9 and 12).

Talks to Redis or Valkey through ``coredis`` (built on anyio, so it runs
on trio).  The key layout and the scripts are in :mod:`realtime.broker_lua`.

Publish
-------

:meth:`RedisBroker.publish_async` runs one script: ``INCR`` the channel's
counter (the global ``seq``), ``XADD`` the finished message JSON to a
stream capped at the channel's ``history`` with entry id ``<seq>-0``, and
``PUBLISH`` it on the channel's pub/sub channel.  The publisher's node
built the JSON around a hole for the number, so no node parses ``data``;
each node frames a message once for its local fan-out.

Delivery
--------

A node subscribes (``SUBSCRIBE rt:c:C``) only to channels it has
subscribers on, and keeps per channel a *cursor*: the highest ``seq`` it
has offered locally.  Pub/sub delivers in ``seq`` order (the script makes
``PUBLISH`` order ``INCR`` order), so a message with ``seq <= cursor`` is a
duplicate and is dropped, and one past ``cursor + 1`` means messages were
missed (only around a (re)subscription); those are read from the stream
first.  When a channel is first watched the node subscribes, then reads
the counter: everything above it will arrive by pub/sub; messages that
arrive meanwhile wait in the channel's pending list.

Faults
------

- At start, :meth:`check` pings Redis; unreachable → :class:`BrokerUnavailable`
  (an ``OSError``), and ``realtime serve`` logs "cannot start" and exits 1.
- Connection lost while running: publishes, ``since`` subscribes and
  presence answer ``unavailable`` (``/api/publish``: 503); WebSockets stay
  open.  :meth:`run` reconnects with exponential backoff (0.1 s doubling to
  5 s), logging every attempt, then resubscribes every watched channel,
  raises each channel counter to at least what this node has seen (so a
  Redis that lost its data goes on numbering upwards), fills each gap from
  the stream by the cursor, and reports presence again.  No message is
  offered twice or out of order on a node; messages published while a
  node was cut off reach it late if they are still in the stream (history
  > 0), else they are skipped.  Joins and leaves sent while a node was cut
  off are not replayed; a ``presence`` request gives the current list.
- Revocations made while Redis is down are queued and sent when it is back;
  on every (re)connect the node reads the whole revoked set.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import coredis
import coredis.exceptions
from coredis.retry import NoRetryPolicy
import trio

from realtime import broker_lua as lua
from realtime.broker import BrokerUnavailable, DeliverFn, Replay
from realtime.ws import protocol
from realtime.ws.frames import encode_text_frame

if TYPE_CHECKING:
    from realtime.hub import Hub

__all__ = ["RedisBroker"]

log = logging.getLogger("realtime.broker")

IDLE_TTL = 24 * 3600.0  # an unwatched, unused channel's counter and stream are kept this long
REVOCATION_GRACE = 300.0  # revoked jtis are kept this long past their exp (RevokedSet.grace)
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
READY_TIMEOUT = 5.0  # a subscribe waits this long for its channel to be subscribed in Redis
CATCH_UP_TIMEOUT = 2.0  # a `since` ahead of this node waits this long for delivery to reach it
_REDIS_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class _Watch:
    """One channel this node receives: its cursor and subscription state."""

    __slots__ = ("cursor", "wanted", "holds", "subscribed", "ready", "settled", "pending", "advanced")

    def __init__(self) -> None:
        self.cursor = 0
        self.wanted = False  # the hub has local subscribers
        self.holds = 0  # subscribes under way (Hub.subscribe_async)
        self.subscribed = False  # SUBSCRIBE confirmed on the current connection
        self.ready = False  # cursor valid: live messages are delivered
        self.settled = trio.Event()  # set when ready, or when the connection drops
        self.pending: list[tuple[int, bytes]] = []  # messages seen before ready
        self.advanced: trio.Event | None = None  # set when the cursor moves (someone waits)

    @property
    def needed(self) -> bool:
        return self.wanted or self.holds > 0


class RedisBroker:
    """A :class:`realtime.hub.RemoteBroker` on Redis/Valkey.

    Args:
        url: ``redis://HOST:PORT/DB`` (also ``rediss://`` and ``unix://``).
        node_ttl: a node silent this long is dead; heartbeats go every
            quarter of it, so a dead node's presence goes within
            ``1.25 * node_ttl``.
        on_revoke: called with ``(jti, exp)`` for a revocation made on
            another node (or found at connect); the server closes those
            sockets with 4003.
    """

    remote = True

    def __init__(
        self,
        url: str,
        *,
        node_ttl: float = 10.0,
        on_revoke: Callable[[str, float], Any] | None = None,
        idle_ttl: float = IDLE_TTL,
    ) -> None:
        self.url = url
        self.node = secrets.token_hex(8)
        self.node_ttl = node_ttl
        self.idle_ttl = idle_ttl
        self.on_revoke = on_revoke
        self._hub: Hub | None = None
        self._client: Any = None  # coredis.Redis while run() is connected
        self._up = False
        self._watches: dict[str, _Watch] = {}
        self._ctl_wake = trio.Event()
        self._flush_wake = trio.Event()
        self._dirty: dict[str, set[str]] = {}
        self._revocations: deque[tuple[str, float]] = deque(maxlen=100_000)
        self._scripts: dict[str, Any] = {}
        # counters for /metrics and tests
        self.delivered = 0
        self.reconnects = 0
        self.connected = trio.Event()  # set once connected; replaced on every loss
        self.lost = trio.Event()  # set on a loss; replaced once connected again

    # -- wiring ----------------------------------------------------------------

    def bind(self, deliver: DeliverFn) -> None:
        pass  # the hub is attached whole (attach), deliver is Hub.deliver

    def attach(self, hub: "Hub") -> None:
        self._hub = hub

    @property
    def up(self) -> bool:
        return self._up

    def _new_client(self) -> Any:
        # No retries inside coredis: a failed command answers "unavailable"
        # at once, and run() owns reconnecting (with its backoff and logs).
        return coredis.Redis.from_url(
            self.url, decode_responses=False, connect_timeout=2.0, stream_timeout=5.0,
            retry_policy=NoRetryPolicy(),
        )

    async def check(self) -> None:
        """Ping Redis once; at startup an unreachable broker is fatal.

        Raises:
            BrokerUnavailable: with the URL and the reason.
        """
        try:
            with trio.fail_after(5):
                async with self._new_client() as client:
                    await client.ping()
        except trio.TooSlowError:
            raise BrokerUnavailable(f"broker {self.url} is unreachable: no answer within 5s") from None
        except Exception as exc:  # coredis raises inside an ExceptionGroup here
            raise BrokerUnavailable(f"broker {self.url} is unreachable: {_reason(exc)}") from None

    # -- the Broker protocol (sync side) ------------------------------------------

    def publish(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        raise RuntimeError("a remote broker publishes through publish_async")

    def replay(self, channel: str, since: int) -> Replay:
        raise RuntimeError("a remote broker replays through prepare")

    def last_seq(self, channel: str) -> int:
        w = self._watches.get(channel)
        return 0 if w is None else w.cursor

    def watch(self, channel: str) -> None:
        w = self._watch(channel)
        w.wanted = True
        if not w.subscribed:
            self._ctl_wake.set()

    def unwatch(self, channel: str) -> None:
        w = self._watches.get(channel)
        if w is not None:
            w.wanted = False
            if not w.needed:
                self._ctl_wake.set()

    def hold(self, channel: str) -> None:
        self._watch(channel).holds += 1

    def release(self, channel: str) -> None:
        w = self._watches.get(channel)
        if w is not None:
            w.holds -= 1
            if not w.needed:
                self._ctl_wake.set()

    def retain(self, keep_for: Callable[[str], int]) -> None:
        pass  # each publish trims the stream to the channel's current history

    def _watch(self, channel: str) -> _Watch:
        w = self._watches.get(channel)
        if w is None:
            w = self._watches[channel] = _Watch()
        return w

    def report(self, channel: str, sub: str) -> None:
        subs = self._dirty.get(channel)
        if subs is None:
            self._dirty[channel] = {sub}
        else:
            subs.add(sub)
        self._flush_wake.set()

    def share_revocation(self, jti: str, exp: float) -> None:
        """Send a local revocation to every node (queued while Redis is down)."""
        self._revocations.append((jti, exp))
        self._flush_wake.set()

    # -- the async side --------------------------------------------------------------

    def _script(self, name: str) -> Any:
        if self._client is None or not self._up:
            raise BrokerUnavailable("the message broker is unreachable")
        return self._scripts[name]

    async def publish_async(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        script = self._script("publish")
        name = _b(channel)
        prefix = b'{"type":"message","channel":' + protocol.encode_json(channel) + b',"seq":'
        suffix = b',"from":' + protocol.encode_json(from_sub) + b',"data":' + data_json + b"}"
        try:
            seq, delivered = await script(
                keys=[lua.PREFIX_COUNTER + name, lua.PREFIX_STREAM + name,
                      lua.PREFIX_CHANNEL + name, lua.PREFIX_COUNTS + name],
                args=[prefix, suffix, max(keep, 0), int(self.idle_ttl * 1000)],
            )
        except _REDIS_ERRORS as exc:
            log.warning("publish on %r failed: %s", channel, exc)
            raise BrokerUnavailable(str(exc)) from None
        return int(seq), int(delivered)

    async def report_now(self, channel: str, sub: str, count: int, total: int) -> None:
        script = self._script("report")
        hub = self._hub
        rule = hub.rule_for(channel) if hub is not None else None
        jl = "1" if rule is not None and rule.join_leave else "0"
        try:
            await script(args=[self.node, _b(channel), total, jl, int(self.idle_ttl * 1000), _b(sub), count])
        except _REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def prepare(self, channel: str, since: int | None) -> Replay:
        w = self._watch(channel)
        if not w.ready:
            if not self._up:
                raise BrokerUnavailable("the message broker is unreachable")
            self._ctl_wake.set()
            with trio.move_on_after(READY_TIMEOUT):
                while not w.ready and self._up:
                    await w.settled.wait()
            if not w.ready:
                raise BrokerUnavailable("the message broker is unreachable")
        if since is None:
            return Replay([], True, w.cursor)
        if since > w.cursor:
            await self._wait_for(channel, w, since)
            if since > w.cursor:
                return Replay([], False, w.cursor)
            if since == w.cursor:
                return Replay([], True, w.cursor)
        return await self._read_since(channel, w, since)

    async def _wait_for(self, channel: str, w: _Watch, since: int) -> None:
        """``since`` is ahead of this node's cursor: if Redis issued it, it
        is in flight to us; wait (bounded) until it is delivered here."""
        client = self._client
        if client is None:
            raise BrokerUnavailable("the message broker is unreachable")
        try:
            counter = await client.get(lua.PREFIX_COUNTER + _b(channel))
        except _REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if int(counter or 0) < since:
            return  # never issued: the client's position predates this numbering
        with trio.move_on_after(CATCH_UP_TIMEOUT):
            while w.cursor < since and w.ready:
                if w.advanced is None:
                    w.advanced = trio.Event()
                await w.advanced.wait()

    async def _read_since(self, channel: str, w: _Watch, since: int) -> Replay:
        client = self._client
        if client is None:
            raise BrokerUnavailable("the message broker is unreachable")
        stream = lua.PREFIX_STREAM + _b(channel)
        frames: list[bytes] = []
        start, end = since + 1, w.cursor
        try:
            while start <= end:
                entries = await client.xrange(stream, f"{start}-0", f"{end}-0")
                for entry in entries:
                    frames.append(encode_text_frame(entry.field_values[b"m"]))
                # Live delivery may have moved on while we read: read the rest.
                start, end = end + 1, w.cursor
        except _REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if not w.ready:
            raise BrokerUnavailable("the message broker connection dropped")
        # Entry ids are unique and within (since, cursor]: all there iff as many.
        return Replay(frames, len(frames) == w.cursor - since, w.cursor)

    async def presence(self, channel: str, limit: int) -> tuple[list[tuple[str, int]], bool]:
        script = self._script("presence")
        try:
            flat = await script(args=[_b(channel), limit])
        except _REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        truncated = bool(int(flat[0]))
        members = sorted((_s(flat[i]), int(flat[i + 1])) for i in range(1, len(flat) - 1, 2))
        return members, truncated

    # -- the connection task -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected: subscribe, deliver, heartbeat, report; reconnect
        with backoff.  Runs in the server's root nursery until cancelled."""
        started = False
        ever = False  # connected at least once
        backoff = BACKOFF_FIRST
        attempt = 0  # attempts since the last good connection
        try:
            while True:
                attempt += 1
                try:
                    async with self._new_client() as client:
                        self._client = client
                        self._scripts = {
                            "publish": client.register_script(lua.PUBLISH),
                            "seed": client.register_script(lua.SEED),
                            "report": client.register_script(lua.REPORT),
                            "heartbeat": client.register_script(lua.HEARTBEAT),
                            "revoke": client.register_script(lua.REVOKE),
                            "presence": client.register_script(lua.PRESENCE),
                        }
                        async with client.pubsub(
                            retry_policy=None, ignore_subscribe_messages=True,
                            subscription_timeout=READY_TIMEOUT, max_idle_seconds=max(1.0, self.node_ttl / 4),
                        ) as ps:
                            await self._connected(client, ps)
                            if ever:
                                log.info("broker: reconnected to %s (attempt %d); resubscribed %d channel(s)",
                                         self.url, attempt, len(self._watches))
                            else:
                                log.info("broker: connected to %s as node %s", self.url, self.node)
                            ever = True
                            attempt = 0
                            backoff = BACKOFF_FIRST
                            if not started:
                                started = True
                                task_status.started()
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._heartbeat)
                                nursery.start_soon(self._flusher)
                                nursery.start_soon(self._control, ps)
                                await self._pump(ps)
                except Exception as exc:  # ExceptionGroup from the pub/sub task group too
                    self._down()
                    reason = _reason(exc)
                    if attempt == 0:
                        log.warning("broker: lost connection to %s: %s", self.url, reason)
                    else:
                        log.warning("broker: cannot reach %s (attempt %d): %s; retrying in %.1fs",
                                    self.url, attempt, reason, backoff)
                self._down()
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                log.info("broker: reconnecting to %s", self.url)
        finally:
            self._down()
            await self._leave()

    async def _leave(self) -> None:
        """On shutdown: remove this node's presence at once (no waiting for
        the node_ttl), best effort."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                async with self._new_client() as client:
                    await client.register_script(lua.HEARTBEAT)(
                        args=[self.node, int(self.node_ttl * 1000), int(self.idle_ttl * 1000),
                              int(time.time() - REVOCATION_GRACE), "1"])
            except Exception:  # noqa: BLE001 - best effort; others reap us after node_ttl
                log.info("broker: could not remove node %s at shutdown; other nodes will after %.0fs",
                         self.node, self.node_ttl)

    def _down(self) -> None:
        if self._up:
            self.reconnects += 1
            self.lost.set()
        self._up = False
        self._client = None
        self.connected = trio.Event() if self.connected.is_set() else self.connected
        for w in self._watches.values():
            w.subscribed = False
            w.ready = False
            w.pending.clear()
            w.settled.set()  # wake waiting subscribes: they answer "unavailable"
            w.settled = trio.Event()
            if w.advanced is not None:
                w.advanced.set()
                w.advanced = None

    async def _connected(self, client: Any, ps: Any) -> None:
        """(Re)build everything this node holds in Redis, before any delivery."""
        await ps.subscribe(lua.REVOKE_CHANNEL)
        # Revocations made here while Redis was away go out first.
        while self._revocations:
            jti, exp = self._revocations[0]
            await client.register_script(lua.REVOKE)(args=[self.node, exp, jti])
            self._revocations.popleft()
        horizon = time.time() - REVOCATION_GRACE
        revoked = await client.zrangebyscore(lua.REVOKED, horizon, "+inf", withscores=True)
        if self.on_revoke is not None:
            for jti, exp in revoked:
                self.on_revoke(_s(jti), float(exp))
        self._up = True
        for channel in [c for c, w in self._watches.items() if not w.needed]:
            del self._watches[channel]
        if self._watches:
            await ps.subscribe(*(lua.PREFIX_CHANNEL + _b(c) for c in self._watches))
            for w in self._watches.values():
                w.subscribed = True
            for channel, w in list(self._watches.items()):
                await self._sync_watch(channel, w)
        # Presence and counts: report everything again (absolute values).
        self._report_all()
        self.lost = trio.Event()
        self.connected.set()

    def _report_all(self) -> None:
        hub = self._hub
        if hub is None:
            return
        for channel in hub.channels():
            self._dirty.setdefault(channel, set()).update(hub.local_members(channel))
        self._flush_wake.set()

    async def _sync_watch(self, channel: str, w: _Watch) -> None:
        """A channel just subscribed: raise the counter to what we have
        seen, fill the gap since our cursor from the stream, go live."""
        name = _b(channel)
        counter = int(await self._scripts["seed"](
            keys=[lua.PREFIX_COUNTER + name, lua.PREFIX_STREAM + name], args=[w.cursor]))
        entries: list[Any] = []
        if w.cursor and counter > w.cursor:
            entries = await self._client.xrange(
                lua.PREFIX_STREAM + name, f"{w.cursor + 1}-0", f"{counter}-0")
        if not w.subscribed:
            return  # dropped meanwhile
        # From here no await: nothing can be delivered in between.
        hub = self._hub
        for entry in entries:
            seq = int(entry.identifier.split(b"-", 1)[0])
            if seq > w.cursor:
                w.cursor = seq
                self._offer(hub, channel, entry.field_values[b"m"])
        if counter > w.cursor:
            if w.cursor:
                log.warning("broker: %d message(s) on %r were no longer kept; skipped",
                            counter - w.cursor - len(entries), channel)
            w.cursor = counter
        pending, w.pending = w.pending, []
        w.ready = True
        for seq, body in pending:
            if seq == w.cursor + 1:
                w.cursor = seq
                self._offer(hub, channel, body)
            elif seq > w.cursor + 1:  # cannot happen (pub/sub is ordered); stay safe
                w.pending.append((seq, body))
        if w.pending:
            w.ready = False
            self._ctl_wake.set()
            return
        w.settled.set()
        self._advanced(w)

    def _offer(self, hub: "Hub | None", channel: str, body: bytes) -> None:
        if hub is not None:
            self.delivered += hub.deliver(channel, encode_text_frame(body))

    @staticmethod
    def _advanced(w: _Watch) -> None:
        if w.advanced is not None:
            w.advanced.set()
            w.advanced = None

    async def _control(self, ps: Any) -> None:
        """Subscribe channels that got their first local subscriber,
        unsubscribe those that lost their last."""
        while True:
            await self._ctl_wake.wait()
            self._ctl_wake = trio.Event()
            new = [c for c, w in self._watches.items() if w.needed and not w.subscribed]
            gone = [c for c, w in self._watches.items() if not w.needed]
            if new:
                await ps.subscribe(*(lua.PREFIX_CHANNEL + _b(c) for c in new))
                for channel in new:
                    w = self._watches.get(channel)
                    if w is not None:
                        w.subscribed = True
                for channel in new:
                    w = self._watches.get(channel)
                    if w is not None and w.subscribed and not w.ready:
                        await self._sync_watch(channel, w)
            stale = [c for c, w in self._watches.items() if w.subscribed and not w.ready and c not in new]
            for channel in stale:  # a gap left after a sync (never expected)
                w = self._watches.get(channel)
                if w is not None:
                    await self._sync_watch(channel, w)
            if gone:
                gone = [c for c in gone if (w := self._watches.get(c)) is not None and not w.needed]
                for channel in gone:
                    del self._watches[channel]
                await ps.unsubscribe(*(lua.PREFIX_CHANNEL + _b(c) for c in gone))

    async def _pump(self, ps: Any) -> None:
        """Deliver what pub/sub brings, in order, once."""
        prefix = lua.PREFIX_CHANNEL
        cut = len(prefix)
        hub = self._hub
        while True:
            message = await ps.get_message()
            if message is None or message["type"] != "message":
                continue
            key: bytes = message["channel"]
            data: bytes = message["data"]
            if key == lua.REVOKE_CHANNEL:
                self._on_revocation(data)
                continue
            if not key.startswith(prefix):
                continue
            channel = _s(key[cut:])
            w = self._watches.get(channel)
            if w is None:
                continue
            kind = data[:1]
            if kind == b"M":
                space = data.index(b" ")
                seq = int(data[1:space])
                if not w.ready:
                    w.pending.append((seq, data[space + 1:]))
                    continue
                if seq <= w.cursor:
                    continue  # already delivered (a replayed gap overlapping live)
                if seq > w.cursor + 1:
                    await self._fill(channel, w, seq - 1)
                    if not w.ready or seq <= w.cursor:
                        continue
                w.cursor = seq
                self._offer(hub, channel, data[space + 1:])
                if w.advanced is not None:
                    self._advanced(w)
            elif kind in (b"J", b"L") and hub is not None:
                sub = _s(data[1:])
                event = protocol.join(channel, sub) if kind == b"J" else protocol.leave(channel, sub)
                hub.deliver_event(channel, encode_text_frame(event), sub)

    async def _fill(self, channel: str, w: _Watch, upto: int) -> None:
        """Offer kept messages ``cursor+1 .. upto`` (a gap in pub/sub)."""
        entries = await self._client.xrange(
            lua.PREFIX_STREAM + _b(channel), f"{w.cursor + 1}-0", f"{upto}-0")
        for entry in entries:
            seq = int(entry.identifier.split(b"-", 1)[0])
            if seq > w.cursor:
                w.cursor = seq
                self._offer(self._hub, channel, entry.field_values[b"m"])
        if w.cursor < upto:
            log.warning("broker: messages %d..%d on %r were no longer kept; skipped", w.cursor + 1, upto, channel)
            w.cursor = upto

    def _on_revocation(self, data: bytes) -> None:
        try:
            node, exp, jti = data.split(b" ", 2)
            expiry = float(exp)
        except ValueError:
            log.warning("broker: malformed revocation message ignored")
            return
        if node.decode("ascii", "replace") != self.node and self.on_revoke is not None:
            self.on_revoke(_s(jti), expiry)

    async def _heartbeat(self) -> None:
        every = self.node_ttl / 4
        script = self._scripts["heartbeat"]
        while True:
            fresh, reaped = await script(args=[
                self.node, int(self.node_ttl * 1000), int(self.idle_ttl * 1000),
                int(time.time() - REVOCATION_GRACE), "0"])
            if int(reaped):
                log.info("broker: removed %d dead node(s) and their presence", int(reaped))
            if int(fresh) and self._hub is not None and self._hub.channel_count:
                log.info("broker: node %s was not registered (reaped or Redis restarted); reporting again", self.node)
                self._report_all()
            await trio.sleep(every)

    async def _flusher(self) -> None:
        """Send queued revocations and presence/count reports."""
        revoke = self._scripts["revoke"]
        report = self._scripts["report"]
        ttl = int(self.idle_ttl * 1000)
        while True:
            await self._flush_wake.wait()
            self._flush_wake = trio.Event()
            while self._revocations:
                jti, exp = self._revocations[0]
                await revoke(args=[self.node, exp, jti])
                self._revocations.popleft()
            hub = self._hub
            while self._dirty and hub is not None:
                channel, subs = self._dirty.popitem()
                rule = hub.rule_for(channel)
                track = rule is not None and (rule.presence or rule.join_leave)
                jl = "1" if rule is not None and rule.join_leave else "0"
                args: list[Any] = [self.node, _b(channel), 0, jl, ttl]
                total = 0
                for sub in subs:
                    count, total = hub.local_counts(channel, sub)
                    if track:
                        args += [_b(sub), count]
                if not subs:
                    total = hub.local_counts(channel, "")[1]
                args[2] = total
                try:
                    await report(args=args)
                except BaseException:
                    self._dirty.setdefault(channel, set()).update(subs)
                    raise


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception group, as text."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
