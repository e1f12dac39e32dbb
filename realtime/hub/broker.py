"""The broker seam (DESIGN.md §8): who numbers, keeps and spreads messages.

The hub owns what is local to this process: which connections are
subscribed, scopes, presence, the fan-out loop.  The broker owns what
several nodes would have to share: each channel's ``seq`` counter, its
kept history, and getting a published message to every node whose hub has
subscribers.

Two kinds of broker, two protocols, each declaring only what it serves:

- :class:`Broker` answers synchronously, in process
  (:class:`realtime.hub.inprocess.InProcessBroker`): ``publish`` numbers,
  keeps and delivers before it returns; ``replay`` reads history.
- :class:`RemoteBroker` needs a round trip to number a message or read
  history (:class:`realtime.net.redis.broker.RedisBroker`): it has
  ``publish_async`` and ``prepare`` instead, delivers from its own task,
  and merges presence across nodes.

Both share :class:`ChannelFeed` (which channels reach this node, the
newest ``seq`` seen, history sizes).  The hub picks its paths once, by the
broker's ``remote`` tag.

Flow of a publish::

    Hub.publish ── scope check, encode data once ──▶ Broker.publish
        assign seq ─ build the frame once ─ keep it in history
        ─▶ deliver(channel, frame) on every node with subscribers
           (in process: the bound Hub.deliver, synchronously)

History is kept as finished frames, so a ``since`` replay costs no
encoding at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import attrs

from realtime.config.settings import ChannelRule

__all__ = ["Broker", "BrokerUnavailable", "ChannelFeed", "DeliverFn", "HubView", "RemoteBroker", "Replay"]

DeliverFn = Callable[[str, bytes], int]
"""``deliver(channel, frame) -> local subscribers offered the frame``."""


class BrokerUnavailable(ConnectionError):
    """A networked broker cannot be reached right now.

    A publish answers it with WebSocket error ``unavailable`` or HTTP 503;
    at startup it ends the process with exit code 1 (it is an ``OSError``,
    which ``realtime serve`` reports as "cannot start").
    """


@attrs.frozen
class Replay:
    """What a ``since`` subscription gets before live messages.

    Attributes:
        frames: kept messages with ``seq > since``, oldest first, as frames.
        recovered: ``True`` when ``frames`` is every message after
            ``since``: nothing was missed.
        last_seq: the channel's newest ``seq`` (0 when none yet).
    """

    frames: list[bytes]
    recovered: bool
    last_seq: int


class ChannelFeed(Protocol):
    """What every broker serves synchronously: the channels this node
    receives, their newest ``seq``, and history sizes."""

    def last_seq(self, channel: str) -> int:
        """The channel's newest ``seq`` (here); 0 before its first message."""
        ...

    def watch(self, channel: str) -> None:
        """This node has subscribers on ``channel`` now (first one came)."""
        ...

    def unwatch(self, channel: str) -> None:
        """This node has no subscribers on ``channel`` any more."""
        ...

    def retain(self, keep_for: Callable[[str], int]) -> None:
        """Apply new history sizes after a reload: ``keep_for(channel)``."""
        ...


class Broker(ChannelFeed, Protocol):
    """An in-process broker: numbers, keeps and delivers synchronously, so
    the hub's ``publish`` and ``subscribe`` never await."""

    remote: Literal[False]

    def bind(self, deliver: DeliverFn) -> None:
        """Register the local hub's delivery function (once, by the hub)."""
        ...

    def publish(
        self, channel: str, from_sub: str, data_json: bytes, keep: int, *, keep_bytes: int | None = None
    ) -> tuple[int, int]:
        """Number a message, keep it, deliver it.

        Args:
            channel: a validated channel name.
            from_sub: the publisher's ``sub`` (the ``from`` field).
            data_json: ``data`` already encoded by
                :func:`realtime.protocol.messages.encode_json`.
            keep: how many messages this channel keeps (its rule's
                ``history``; 0 keeps none).
            keep_bytes: how many bytes of frames it keeps (its rule's
                ``history_bytes``); ``None``: only the broker's own budget.

        Returns:
            ``(seq, delivered)``: the message's ``seq`` and how many local
            subscribers it was offered to.
        """
        ...

    def replay(self, channel: str, since: int) -> Replay:
        """Kept messages after ``since`` (see :class:`Replay`)."""
        ...


class HubView(Protocol):
    """What a :class:`RemoteBroker` reads from and hands to the hub it
    serves (:class:`realtime.hub.Hub` is one)."""

    @property
    def channel_count(self) -> int: ...

    def channels(self) -> Iterable[str]: ...

    def rule_for(self, channel: str) -> ChannelRule | None: ...

    def local_counts(self, channel: str, sub: str) -> tuple[int, int]: ...

    def local_members(self, channel: str) -> list[str]: ...

    def deliver(self, channel: str, frame: bytes) -> int: ...

    def deliver_event(self, channel: str, frame: bytes, skip_sub: str) -> int: ...

    def cluster_events(self, channel: str, change: int, events: list[tuple[str, str]]) -> None:
        """Webhook events a report of this node caused across the cluster:
        ``change`` 1 occupied, -1 vacated; ``events`` ("J"|"L", sub)."""
        ...


class RemoteBroker(ChannelFeed, Protocol):
    """A networked broker, driven through the hub's ``async`` methods (see
    "Remote brokers" in :mod:`realtime.hub`)."""

    remote: Literal[True]

    def attach(self, hub: HubView) -> None:
        """Called once by the hub: deliveries, events and counts come from it."""
        ...

    async def publish_async(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        """:meth:`Broker.publish` over the network; ``delivered`` counts every node."""
        ...

    async def prepare(self, channel: str, since: int | None) -> Replay:
        """Make sure ``channel`` reaches this node; return its replay.

        The replay ends at this node's delivery position for the channel
        at the moment it returns, so a synchronous ``subscribe`` right
        after it sees no gap and no duplicate.
        """
        ...

    def hold(self, channel: str) -> None:
        """Keep ``channel`` subscribed while a ``prepare`` is under way."""
        ...

    def release(self, channel: str) -> None:
        """Undo one :meth:`hold`."""
        ...

    def report(self, channel: str, sub: str) -> None:
        """``sub``'s local connection count on ``channel`` changed (sync, queued)."""
        ...

    async def report_now(self, channel: str, sub: str, count: int, total: int) -> None:
        """Write ``sub``'s coming count before its subscribe is answered, so
        the ``join`` and the presence list are there when the ``ack`` is."""
        ...

    async def presence(self, channel: str, limit: int) -> tuple[list[tuple[str, int]], bool]:
        """Members across nodes, at most ``limit``, and whether cut."""
        ...

    def share_revocation(self, jti: str, exp: float) -> None:
        """Tell every other node that ``jti`` is revoked until ``exp``, so
        their sockets on it close too (never blocks: queued for the link)."""
        ...

    async def history(self, channel: str, since: int, limit: int) -> tuple[list[bytes], int]:
        """Kept message JSONs after ``since`` (at most ``limit``, oldest
        first) and the channel's newest ``seq`` (server API history)."""
        ...

    async def ask(self, op: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Run a server API operation on every other node (a bounded wait);
        their answers, and ``True`` when some live node did not answer."""
        ...

    async def claim_key(self, key: str, ttl: float) -> bytes | None:
        """Idempotent publish: ``None`` when ``key`` is new (it is now held
        for ``ttl`` seconds), else the answer stored for it (``b""`` while
        the first publish is still under way)."""
        ...

    async def store_key(self, key: str, answer: bytes, ttl: float) -> None:
        """Keep the answer of the publish that claimed ``key``."""
        ...

    async def share_cutoff(self, sub: str, client_id: str, issued_before: float, keep_until: float) -> None:
        """Keep a revocation cut-off where nodes that are away find it later."""
        ...

    async def forget_key(self, key: str) -> None:
        """Release ``key`` (its publish failed)."""
        ...

