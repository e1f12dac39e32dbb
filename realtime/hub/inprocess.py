"""The single-process :class:`realtime.hub.broker.Broker`: plain dicts and
deques, answering synchronously (see :mod:`realtime.hub.broker` for the
seam and the flow of a publish).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Literal

from realtime.hub.broker import DeliverFn, Replay
from realtime.protocol.frames import encode_text_frame
from realtime.protocol.replies import message_from_json

__all__ = ["InProcessBroker"]


class ChannelLog:
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

    remote: Literal[False] = False

    def __init__(self, max_idle_channels: int = 10_000) -> None:
        if max_idle_channels < 0:
            raise ValueError("max_idle_channels must be >= 0")
        self.max_idle_channels = max_idle_channels
        self._logs: dict[str, ChannelLog] = {}
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
            log = self._logs[channel] = ChannelLog()
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

    def retain(self, keep_for: Callable[[str], int]) -> None:
        for channel, log in self._logs.items():
            keep = max(keep_for(channel), 0)
            if log.frames.maxlen != keep:
                log.frames = deque(log.frames, maxlen=keep)

    # -- introspection (metrics, tests) -------------------------------------

    def channel_count(self) -> int:
        """Channels with a counter in memory (watched or idle)."""
        return len(self._logs)



def _deliver_nowhere(channel: str, frame: bytes) -> int:
    return 0
