"""The single-process :class:`realtime.hub.broker.Broker`: plain dicts and
deques, answering synchronously (see :mod:`realtime.hub.broker` for the
seam and the flow of a publish).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Literal

from realtime.config.settings import WebSocketSettings
from realtime.hub.broker import DeliverFn, Replay
from realtime.protocol.frames import encode_text_frame
from realtime.protocol.replies import message_from_json

__all__ = ["InProcessBroker"]


class ChannelLog:
    """One channel's counter and kept frames (``(stamp, frame)``, oldest
    first; ``stamp`` orders every kept frame of the broker)."""

    __slots__ = ("seq", "frames", "bytes", "watched")

    def __init__(self) -> None:
        self.seq = 0
        self.frames: deque[tuple[int, bytes]] = deque()
        self.bytes = 0  # sum of the kept frames' lengths
        self.watched = False

    def drop_oldest(self) -> int:
        """Forget the oldest kept frame; returns its size."""
        size = len(self.frames.popleft()[1])
        self.bytes -= size
        return size

    def trim(self, keep: int, keep_bytes: int) -> int:
        """Keep at most ``keep`` frames and ``keep_bytes`` bytes; returns
        the bytes freed."""
        freed = 0
        frames = self.frames
        while frames and (len(frames) > keep or self.bytes > keep_bytes):
            freed += self.drop_oldest()
        return freed


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

    History is bounded in bytes too: each channel keeps at most its rule's
    ``history_bytes`` of frames, and all channels together at most
    ``max_history_bytes``.  Past that, the oldest frame of the channel
    keeping the most bytes goes first (ties: the channel whose oldest frame
    is older), again and again until the total fits.  So one busy publisher
    wears down its own channel's history, not everyone's: a channel keeping
    no more than its fair share (the budget over the channels with
    history) is never evicted by the others, as the largest one always
    holds more than that while the total is over the budget.  A ``since``
    before an evicted message is ``recovered: false``, as when ``history``
    (a count) overflows.

    Args:
        max_idle_channels: idle channels kept (counter and history).
        max_history_bytes: kept frames of every channel together.
    """

    remote: Literal[False] = False

    def __init__(self, max_idle_channels: int = 1000, max_history_bytes: int = 64 * 1024 * 1024) -> None:
        if max_idle_channels < 0 or max_history_bytes < 0:
            raise ValueError("max_idle_channels and max_history_bytes must be >= 0")
        self.max_idle_channels = max_idle_channels
        self.max_history_bytes = max_history_bytes
        self._logs: dict[str, ChannelLog] = {}
        self._idle: dict[str, None] = {}  # insertion order = LRU order
        self._deliver: DeliverFn = _deliver_nowhere
        # The channels by kept bytes, largest first, so the global budget
        # finds the channel to evict from in O(log n): entries are
        # (-bytes, oldest stamp, tiebreak, log), pushed whenever a channel's
        # history changes.  An entry no longer matching its channel's bytes
        # and oldest frame is stale and is skipped; compaction keeps their
        # number bounded by the channels'.
        self._largest: list[tuple[int, int, int, ChannelLog]] = []
        self._pushes = itertools.count()
        self._stamps = itertools.count()
        self.history_bytes = 0  # kept across all channels

    @classmethod
    def for_settings(cls, ws: WebSocketSettings) -> "InProcessBroker":
        return cls(ws.max_idle_channels, ws.max_history_bytes)

    def set_limits(self, ws: WebSocketSettings) -> None:
        """A reload's ``[websocket]`` limits, applied at once."""
        self.max_idle_channels = ws.max_idle_channels
        self.max_history_bytes = ws.max_history_bytes
        while len(self._idle) > self.max_idle_channels:
            self._forget(next(iter(self._idle)))
        self._enforce_budget()

    def bind(self, deliver: DeliverFn) -> None:
        self._deliver = deliver

    # -- idle bookkeeping ---------------------------------------------------

    def _touch_idle(self, channel: str) -> None:
        idle = self._idle
        idle.pop(channel, None)
        idle[channel] = None
        if len(idle) > self.max_idle_channels:
            self._forget(next(iter(idle)))

    def _forget(self, channel: str) -> None:
        del self._idle[channel]
        log = self._logs.pop(channel)
        self._count_dropped(log.bytes)
        log.frames.clear()  # its entries in _largest are stale now
        log.bytes = 0

    # -- the byte budget ----------------------------------------------------

    def _count_dropped(self, size: int) -> None:
        self.history_bytes -= size

    def _trim(self, log: ChannelLog, keep: int, keep_bytes: int) -> None:
        self._count_dropped(log.trim(keep, keep_bytes))

    def _rank(self, log: ChannelLog) -> None:
        """Note ``log``'s current size in the largest-first heap."""
        if log.frames:
            heapq.heappush(self._largest, (-log.bytes, log.frames[0][0], next(self._pushes), log))
            if len(self._largest) > 2 * len(self._logs) + 64:
                self._largest = [(-kept.bytes, kept.frames[0][0], next(self._pushes), kept)
                                 for kept in self._logs.values() if kept.frames]
                heapq.heapify(self._largest)

    def _enforce_budget(self) -> None:
        largest = self._largest
        while self.history_bytes > self.max_history_bytes and largest:
            neg_bytes, stamp, _, log = heapq.heappop(largest)
            if log.frames and log.bytes == -neg_bytes and log.frames[0][0] == stamp:
                self._count_dropped(log.drop_oldest())
                self._rank(log)
                largest = self._largest  # _rank may have compacted it

    # -- Broker -------------------------------------------------------------

    def publish(
        self, channel: str, from_sub: str, data_json: bytes, keep: int, *, keep_bytes: int | None = None
    ) -> tuple[int, int]:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = ChannelLog()
        seq = log.seq = log.seq + 1
        frame = encode_text_frame(message_from_json(channel, seq, from_sub, data_json))
        limit = self.max_history_bytes if keep_bytes is None else min(keep_bytes, self.max_history_bytes)
        if keep > 0 and len(frame) <= limit:
            stamp = next(self._stamps)
            log.frames.append((stamp, frame))
            log.bytes += len(frame)
            self.history_bytes += len(frame)
            self._trim(log, keep, limit)
            self._rank(log)
        else:
            # Not kept: then nothing older may be replayed as if complete.
            self._trim(log, 0, 0)
        self._enforce_budget()
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
            return Replay([f for _, f in itertools.islice(frames, kept - wanted, None)], True, last)
        return Replay([f for _, f in frames], False, last)

    def last_seq(self, channel: str) -> int:
        log = self._logs.get(channel)
        return 0 if log is None else log.seq

    def watch(self, channel: str) -> None:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = ChannelLog()
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

    def retain(self, keep_for: Callable[[str], int], bytes_for: Callable[[str], int] | None = None) -> None:
        for channel, log in self._logs.items():
            keep_bytes = self.max_history_bytes if bytes_for is None else bytes_for(channel)
            self._trim(log, max(keep_for(channel), 0), max(keep_bytes, 0))
            self._rank(log)
        self._enforce_budget()

    # -- introspection (metrics, tests) -------------------------------------

    def channel_count(self) -> int:
        """Channels with a counter in memory (watched or idle)."""
        return len(self._logs)

    def order_entries(self) -> int:
        """Entries of the largest-first eviction heap (live and stale)."""
        return len(self._largest)

    def kept_bytes(self, channel: str) -> int:
        """Bytes of frames ``channel`` keeps."""
        log = self._logs.get(channel)
        return 0 if log is None else log.bytes


def _deliver_nowhere(channel: str, frame: bytes) -> int:
    return 0
