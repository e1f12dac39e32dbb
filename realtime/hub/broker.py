"""The broker seam (DESIGN.md §8): who numbers, keeps and spreads messages.

The hub owns what is local to this process: which connections are
subscribed, scopes, presence, the fan-out loop.  The broker owns what
several nodes would have to share: each channel's ``seq`` counter, its
kept history, and getting a published message to every node whose hub has
subscribers.  In one process that is :class:`InProcessBroker`; a
Redis/Valkey broker (streams for seq and history, pub/sub for delivery)
becomes another class behind the same :class:`Broker` protocol.

Flow of a publish::

    Hub.publish ── scope check, encode data once ──▶ Broker.publish
        assign seq ─ build the frame once ─ keep it in history
        ─▶ deliver(channel, frame) on every node with subscribers
           (in process: the bound Hub.deliver, synchronously)

A networked broker cannot answer ``publish`` without a round trip; it will
add an ``async`` publish for the shell to await and call ``deliver`` from
its own subscriber task.  The hub side (``Hub.deliver``, ``watch`` /
``unwatch`` for SUBSCRIBE / UNSUBSCRIBE, ``replay`` for recovery) is
already the shape that needs.

History is kept as finished frames, so a ``since`` replay costs no
encoding at all.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Protocol

import attrs

from realtime.protocol.frames import encode_text_frame
from realtime.protocol.messages import message_from_json

__all__ = ["Broker", "BrokerUnavailable", "DeliverFn", "InProcessBroker", "Replay"]

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


class Broker(Protocol):
    """The hub's view of channel numbering, history and cross-node delivery.

    ``remote`` is ``False`` for a broker that answers synchronously (the
    in-process one: the hub's sync ``publish`` path).  A ``remote`` broker
    (:class:`realtime.net.redis.broker.RedisBroker`) is driven through the hub's
    ``async`` methods instead; its sync ``publish`` is never called.
    """

    remote: bool

    def bind(self, deliver: DeliverFn) -> None:
        """Register the local hub's delivery function (once, by the hub)."""
        ...

    def publish(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        """Number a message, keep it, deliver it everywhere.

        Args:
            channel: a validated channel name.
            from_sub: the publisher's ``sub`` (the ``from`` field).
            data_json: ``data`` already encoded by
                :func:`realtime.protocol.messages.encode_json`.
            keep: how many messages this channel keeps (its rule's
                ``history``; 0 keeps none).

        Returns:
            ``(seq, delivered)``: the message's ``seq`` and how many local
            subscribers it was offered to.
        """
        ...

    def replay(self, channel: str, since: int) -> Replay:
        """Kept messages after ``since`` (see :class:`Replay`)."""
        ...

    def last_seq(self, channel: str) -> int:
        """The channel's newest ``seq``; 0 before its first message."""
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


class _Log:
    """One channel's counter and kept frames."""

    __slots__ = ("seq", "frames", "watched")

    def __init__(self) -> None:
        self.seq = 0
        self.frames: deque[bytes] = deque(maxlen=0)
        self.watched = False


class InProcessBroker:
    """The single-process :class:`Broker`: plain dicts and deques.

    Memory stays bounded however many channel names clients invent: a
    channel with local subscribers is always kept; one without (idle) keeps
    its counter and history in a least-recently-used set of at most
    ``max_idle_channels``, and the oldest idle channel is forgotten beyond
    that.  Keeping idle counters (rather than freeing a channel the moment
    its last subscriber leaves) keeps ``seq`` rising across a reconnect, so
    ``since`` stays exact for a client that was briefly the only listener.
    A forgotten channel starts again at ``seq`` 1, which a later ``since``
    reports as ``recovered: false`` (see :mod:`realtime.hub`).

    Args:
        max_idle_channels: idle channels kept (counter and history).
    """

    remote = False

    def __init__(self, max_idle_channels: int = 10_000) -> None:
        if max_idle_channels < 0:
            raise ValueError("max_idle_channels must be >= 0")
        self.max_idle_channels = max_idle_channels
        self._logs: dict[str, _Log] = {}
        self._idle: dict[str, None] = {}  # insertion order = LRU order
        self._deliver: DeliverFn = _deliver_nowhere

    def bind(self, deliver: DeliverFn) -> None:
        self._deliver = deliver

    # -- idle bookkeeping ---------------------------------------------------

    def _touch_idle(self, channel: str) -> None:
        idle = self._idle
        idle.pop(channel, None)
        idle[channel] = None
        if len(idle) > self.max_idle_channels:
            oldest = next(iter(idle))
            del idle[oldest]
            del self._logs[oldest]

    # -- Broker -------------------------------------------------------------

    def publish(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = _Log()
        seq = log.seq = log.seq + 1
        frame = encode_text_frame(message_from_json(channel, seq, from_sub, data_json))
        frames = log.frames
        if frames.maxlen != keep:
            frames = log.frames = deque(frames, maxlen=max(keep, 0))
        if keep > 0:
            frames.append(frame)
        if not log.watched:
            self._touch_idle(channel)
            return seq, 0
        return seq, self._deliver(channel, frame)

    def replay(self, channel: str, since: int) -> Replay:
        log = self._logs.get(channel)
        if log is None:
            # Never numbered here (or forgotten): a client that saw seq > 0
            # belongs to an earlier numbering and may have missed anything.
            return Replay([], since == 0, 0)
        last = log.seq
        if since >= last:
            # since > last: a seq this channel never issued in its current
            # numbering (restart, forgotten idle channel).  Say so.
            return Replay([], since == last, last)
        wanted = last - since
        frames = log.frames
        kept = len(frames)
        if wanted <= kept:
            return Replay(list(itertools.islice(frames, kept - wanted, None)), True, last)
        return Replay(list(frames), False, last)

    def last_seq(self, channel: str) -> int:
        log = self._logs.get(channel)
        return 0 if log is None else log.seq

    def watch(self, channel: str) -> None:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = _Log()
        else:
            self._idle.pop(channel, None)
        log.watched = True

    def unwatch(self, channel: str) -> None:
        log = self._logs.get(channel)
        if log is None or not log.watched:
            return
        log.watched = False
        if log.seq == 0:
            # Nothing was ever published: nothing worth remembering.
            del self._logs[channel]
        else:
            self._touch_idle(channel)

    def retain(self, keep_for: Callable[[str], int]) -> None:
        for channel, log in self._logs.items():
            keep = max(keep_for(channel), 0)
            if log.frames.maxlen != keep:
                log.frames = deque(log.frames, maxlen=keep)

    # -- introspection (metrics, tests) -------------------------------------

    def channel_count(self) -> int:
        """Channels with a counter in memory (watched or idle)."""
        return len(self._logs)

    def kept_messages(self) -> int:
        """Messages held in history across all channels."""
        return sum(len(log.frames) for log in self._logs.values())


def _deliver_nowhere(channel: str, frame: bytes) -> int:
    return 0
