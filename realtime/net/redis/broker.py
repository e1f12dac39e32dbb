"""The Redis broker: several nodes share channels, history, presence and
revocations (SPEC §2 ``[broker] url``, DESIGN.md §8, issues 9 and 12).

Talks to Redis or Valkey through ``coredis`` (built on anyio, so it runs
on trio).  The key layout and the scripts are in :mod:`realtime.net.redis.lua`.

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

The broker is built in layers: the shared state
(:mod:`realtime.net.redis.state`), pub/sub delivery
(:mod:`realtime.net.redis.delivery`), the connection task
(:mod:`realtime.net.redis.link`), and here the Broker protocol
the hub calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from realtime.net.redis import lua
from realtime.hub.broker import BrokerUnavailable, DeliverFn, Replay
from realtime.net.redis.link import _Connection
from realtime.net.redis.state import (
    _REDIS_ERRORS,
    CATCH_UP_TIMEOUT,
    READY_TIMEOUT,
    _b,
    _s,
    _Watch,
    log,
)
from realtime.protocol import messages as protocol
from realtime.protocol.frames import encode_text_frame

if TYPE_CHECKING:
    from realtime.hub import Hub

__all__ = ["RedisBroker"]


class RedisBroker(_Connection):
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

    # -- wiring ----------------------------------------------------------------

    def bind(self, deliver: DeliverFn) -> None:
        pass  # the hub is attached whole (attach), deliver is Hub.deliver

    def attach(self, hub: "Hub") -> None:
        self._hub = hub

    @property
    def up(self) -> bool:
        return self._up

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
