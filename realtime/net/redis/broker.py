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

The broker holds its parts: a :class:`~realtime.net.redis.state.BrokerState`
value (:mod:`realtime.net.redis.state`) shared by a
:class:`~realtime.net.redis.delivery.Delivery` (pub/sub delivery, cursors,
replays) and a :class:`~realtime.net.redis.link.Link` (the connection
task), and here serves the :class:`realtime.hub.RemoteBroker` protocol
the hub calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from coredis.tokens import PureToken

import trio

from realtime.hub.broker import BrokerUnavailable, HubView, Replay
from realtime.net.redis import lua
from realtime.net.redis.delivery import Delivery
from realtime.net.redis.link import Link
from realtime.net.redis.publishing import PublishBatches
from realtime.net.redis.requests import OnControl, Requests
from realtime.net.redis.state import IDLE_TTL, REDIS_ERRORS, BrokerState, as_bytes, as_text, log
from realtime.protocol import replies

__all__ = ["RedisBroker"]


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
        idle_ttl: how long an unwatched, unused channel's counter and
            stream are kept in Redis.
    """

    remote: Literal[True] = True

    def __init__(
        self,
        url: str,
        *,
        node_ttl: float = 10.0,
        on_revoke: Callable[[str, float], Any] | None = None,
        idle_ttl: float = IDLE_TTL,
    ) -> None:
        self.state = BrokerState(url, node_ttl=node_ttl, idle_ttl=idle_ttl, on_revoke=on_revoke)
        self.delivery = Delivery(self.state)
        self.requests = Requests(self.state)
        self.state.on_ctl = self.requests.on_message
        self.publishes = PublishBatches(self.state)
        self.link = Link(self.state, self.delivery, self.requests, self.publishes)

    # -- what the server sets and reads ---------------------------------------------
    # Everything else observable (``connected``/``lost`` events, counters,
    # ``node``) is on :attr:`state`.

    @property
    def on_revoke(self) -> Callable[[str, float], Any] | None:
        return self.state.on_revoke

    @on_revoke.setter
    def on_revoke(self, callback: Callable[[str, float], Any] | None) -> None:
        self.state.on_revoke = callback

    @property
    def on_control(self) -> OnControl | None:
        """Runs a server API operation another node asked for."""
        return self.requests.on_control

    @on_control.setter
    def on_control(self, callback: OnControl | None) -> None:
        self.requests.on_control = callback

    @property
    def up(self) -> bool:
        return self.state.up

    # -- the connection ----------------------------------------------------------------

    async def check(self) -> None:
        """See :meth:`realtime.net.redis.link.Link.check`."""
        await self.link.check()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """See :meth:`realtime.net.redis.link.Link.run`."""
        await self.link.run(task_status=task_status)

    async def stop(self, timeout: float) -> None:
        """Leave Redis in order (see :meth:`realtime.net.redis.link.Link.stop`)
        and wait up to ``timeout`` seconds for :meth:`run` to return."""
        self.link.stop()
        with trio.move_on_after(timeout):
            await self.link.stopped.wait()

    # -- the RemoteBroker protocol (sync side) ---------------------------------------

    def attach(self, hub: HubView) -> None:
        self.state.hub = hub

    def last_seq(self, channel: str) -> int:
        return self.delivery.last_seq(channel)

    def watch(self, channel: str) -> None:
        self.delivery.watch(channel)

    def unwatch(self, channel: str) -> None:
        self.delivery.unwatch(channel)

    def hold(self, channel: str) -> None:
        self.delivery.hold(channel)

    def release(self, channel: str) -> None:
        self.delivery.release(channel)

    def retain(self, keep_for: Callable[[str], int]) -> None:
        pass  # each publish trims the stream to the channel's current history

    def report(self, channel: str, sub: str) -> None:
        self.link.report(channel, sub)

    def share_revocation(self, jti: str, exp: float) -> None:
        """Send a local revocation to every node (queued while Redis is down)."""
        self.link.share_revocation(jti, exp)

    # -- the async side --------------------------------------------------------------

    async def publish_async(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        name = as_bytes(channel)
        prefix = b'{"type":"message","channel":' + replies.encode_json(channel) + b',"seq":'
        suffix = b',"from":' + replies.encode_json(from_sub) + b',"data":' + data_json + b"}"
        seq, delivered = await self.publishes.publish(
            keys=[lua.PREFIX_COUNTER + name, lua.PREFIX_STREAM + name,
                  lua.PREFIX_CHANNEL + name, lua.PREFIX_COUNTS + name],
            args=[prefix, suffix, max(keep, 0), int(self.state.idle_ttl * 1000)],
        )
        return int(seq), int(delivered)

    async def report_now(self, channel: str, sub: str, count: int, total: int) -> None:
        state = self.state
        script = state.script("report")
        hub = state.hub
        rule = hub.rule_for(channel) if hub is not None else None
        jl = "1" if rule is not None and rule.join_leave else "0"
        try:
            result = await script(args=[state.node, as_bytes(channel), total, jl, int(state.idle_ttl * 1000),
                                        as_bytes(sub), count])
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        state.reported(channel, result)

    async def prepare(self, channel: str, since: int | None) -> Replay:
        return await self.delivery.prepare(channel, since)

    async def presence(self, channel: str, limit: int) -> tuple[list[tuple[str, int]], bool]:
        script = self.state.script("presence")
        try:
            flat = await script(args=[as_bytes(channel), limit])
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        truncated = bool(int(flat[0]))
        members = sorted((as_text(flat[i]), int(flat[i + 1])) for i in range(1, len(flat) - 1, 2))
        return members, truncated

    async def history(self, channel: str, since: int, limit: int) -> tuple[list[bytes], int]:
        name = as_bytes(channel)
        try:
            client = self.state.live_client()
            top = int(await client.get(lua.PREFIX_COUNTER + name) or 0)
            entries = await client.xrange(lua.PREFIX_STREAM + name, f"{since + 1}-0", "+", count=limit)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        return [entry.field_values[b"m"] for entry in entries], top

    async def ask(self, op: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        return await self.requests.ask(op, args)

    async def claim_key(self, key: str, ttl: float) -> bytes | None:
        name = lua.IDEMPOTENCY_PREFIX + as_bytes(key)
        try:
            client = self.state.live_client()
            if await client.set(name, b"", condition=PureToken.NX, px=max(1, int(ttl * 1000))):
                return None
            return bytes(await client.get(name) or b"")
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def store_key(self, key: str, answer: bytes, ttl: float) -> None:
        name = lua.IDEMPOTENCY_PREFIX + as_bytes(key)
        try:
            await self.state.live_client().set(name, answer, px=max(1, int(ttl * 1000)))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def share_cutoff(self, sub: str, client_id: str, issued_before: float, keep_until: float) -> None:
        """Keep a revocation cut-off in Redis for nodes away right now (see
        :meth:`realtime.net.redis.link.Link._apply_cutoffs`); a later one wins."""
        field = json.dumps([sub, client_id])
        try:
            client = self.state.live_client()
            old = await client.hget(lua.CUTOFFS, field)
            if old is not None and json.loads(old)[0] >= issued_before:
                return
            await client.hset(lua.CUTOFFS, {field: json.dumps([issued_before, keep_until])})
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def forget_key(self, key: str) -> None:
        try:
            await self.state.live_client().delete([lua.IDEMPOTENCY_PREFIX + as_bytes(key)])
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
