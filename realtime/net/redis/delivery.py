"""Pub/sub delivery for :class:`realtime.net.redis.broker.RedisBroker`:
subscribe and unsubscribe channels as local subscribers come and go, bring
each one's cursor up to date from the stream, offer what pub/sub brings
to the hub in ``seq`` order, once, and answer a subscribe's replay (the
module docstring of :mod:`realtime.net.redis.broker` describes the scheme).
"""

from __future__ import annotations

from typing import Any

import trio

from realtime.hub.broker import BrokerUnavailable, HubView, Replay
from realtime.net.cork import PassCork
from realtime.net.redis import lua
from realtime.net.redis.streams import REFRESH_CHANNEL
from realtime.net.redis.state import (
    CATCH_UP_TIMEOUT,
    READY_TIMEOUT,
    REDIS_ERRORS,
    BrokerState,
    Watch,
    as_bytes,
    as_text,
    log,
)
from realtime.protocol import replies
from realtime.protocol.frames import encode_text_frame

__all__ = ["Delivery"]


class Delivery:
    """Which channels reach this node, and getting their messages to the hub.

    Args:
        state: shared with the broker's :class:`realtime.net.redis.link.Link`,
            which runs :meth:`resubscribe`, :meth:`control` and :meth:`pump`
            on each connection.
    """

    def __init__(self, state: BrokerState) -> None:
        self.state = state

    # -- what the hub asks (sync) ----------------------------------------------------

    def last_seq(self, channel: str) -> int:
        w = self.state.watches.get(channel)
        return 0 if w is None else w.cursor

    def watch(self, channel: str) -> None:
        w = self.state.watch(channel)
        w.wanted = True
        if not w.subscribed:
            self.state.ctl_wake.set()

    def unwatch(self, channel: str) -> None:
        w = self.state.watches.get(channel)
        if w is not None:
            w.wanted = False
            if not w.needed:
                self.state.ctl_wake.set()

    def hold(self, channel: str) -> None:
        self.state.watch(channel).holds += 1

    def release(self, channel: str) -> None:
        w = self.state.watches.get(channel)
        if w is not None:
            w.holds -= 1
            if not w.needed:
                self.state.ctl_wake.set()

    # -- a subscribe's replay ----------------------------------------------------------

    async def prepare(self, channel: str, since: int | None) -> Replay:
        """See :meth:`realtime.hub.RemoteBroker.prepare`."""
        state = self.state
        w = state.watch(channel)
        if not w.ready:
            if not state.up:
                raise BrokerUnavailable("the message broker is unreachable")
            state.ctl_wake.set()
            with trio.move_on_after(READY_TIMEOUT):
                while not w.ready and state.up:
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

    async def _wait_for(self, channel: str, w: Watch, since: int) -> None:
        """``since`` is ahead of this node's cursor: if Redis issued it, it
        is in flight to us; wait (bounded) until it is delivered here."""
        client = self.state.live_client()
        try:
            counter = await client.get(lua.PREFIX_COUNTER + as_bytes(channel))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if int(counter or 0) < since:
            return  # never issued: the client's position predates this numbering
        with trio.move_on_after(CATCH_UP_TIMEOUT):
            while w.cursor < since and w.ready:
                if w.advanced is None:
                    w.advanced = trio.Event()
                await w.advanced.wait()

    async def _read_since(self, channel: str, w: Watch, since: int) -> Replay:
        client = self.state.live_client()
        stream = lua.PREFIX_STREAM + as_bytes(channel)
        frames: list[bytes] = []
        start, end = since + 1, w.cursor
        try:
            while start <= end:
                entries = await client.xrange(stream, f"{start}-0", f"{end}-0")
                for entry in entries:
                    frames.append(encode_text_frame(entry.field_values[b"m"]))
                # Live delivery may have moved on while we read: read the rest.
                start, end = end + 1, w.cursor
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if not w.ready:
            raise BrokerUnavailable("the message broker connection dropped")
        # Entry ids are unique and within (since, cursor]: all there iff as many.
        return Replay(frames, len(frames) == w.cursor - since, w.cursor)

    # -- on each connection (run by the link) ---------------------------------------

    def reset(self) -> None:
        """The connection dropped: nothing is subscribed or live any more."""
        for w in self.state.watches.values():
            w.subscribed = False
            w.ready = False
            w.pending.clear()
            w.settled.set()  # wake waiting subscribes: they answer "unavailable"
            w.settled = trio.Event()
            w.moved()

    async def resubscribe(self, ps: Any) -> None:
        """Subscribe every channel still needed and bring each one live."""
        watches = self.state.watches
        for channel in [c for c, w in watches.items() if not w.needed]:
            del watches[channel]
        if watches:
            await ps.subscribe(*(lua.PREFIX_CHANNEL + as_bytes(c) for c in watches))
            for w in watches.values():
                w.subscribed = True
            for channel, w in list(watches.items()):
                await self._sync_watch(channel, w)

    async def _sync_watch(self, channel: str, w: Watch) -> None:
        """A channel just subscribed: raise the counter to what we have
        seen, fill the gap since our cursor from the stream, go live."""
        state = self.state
        name = as_bytes(channel)
        counter = int(await state.scripts["seed"](
            keys=[lua.PREFIX_COUNTER + name, lua.PREFIX_STREAM + name], args=[w.cursor]))
        entries: list[Any] = []
        if w.cursor and counter > w.cursor:
            entries = await state.client.xrange(
                lua.PREFIX_STREAM + name, f"{w.cursor + 1}-0", f"{counter}-0")
        if not w.subscribed:
            return  # dropped meanwhile
        # From here no await: nothing can be delivered in between.
        for entry in entries:
            seq = int(entry.identifier.split(b"-", 1)[0])
            if seq > w.cursor:
                w.cursor = seq
                self._offer(channel, entry.field_values[b"m"])
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
                self._offer(channel, body)
            elif seq > w.cursor + 1:  # cannot happen (pub/sub is ordered); stay safe
                w.pending.append((seq, body))
        if w.pending:
            w.ready = False
            state.ctl_wake.set()
            return
        w.settled.set()
        w.moved()

    def _offer(self, channel: str, body: bytes) -> None:
        hub = self.state.hub
        if hub is not None:
            self.state.delivered += hub.deliver(channel, encode_text_frame(body))

    async def control(self, ps: Any) -> None:
        """Subscribe channels that got their first local subscriber,
        unsubscribe those that lost their last."""
        state = self.state
        watches = state.watches
        while True:
            await state.ctl_wake.wait()
            state.ctl_wake = trio.Event()
            new = [c for c, w in watches.items() if w.needed and not w.subscribed]
            gone = [c for c, w in watches.items() if not w.needed]
            if new:
                await ps.subscribe(*(lua.PREFIX_CHANNEL + as_bytes(c) for c in new))
                for channel in new:
                    w = watches.get(channel)
                    if w is not None:
                        w.subscribed = True
                for channel in new:
                    w = watches.get(channel)
                    if w is not None and w.subscribed and not w.ready:
                        await self._sync_watch(channel, w)
            stale = [c for c, w in watches.items() if w.subscribed and not w.ready and c not in new]
            for channel in stale:  # a gap left after a sync (never expected)
                w = watches.get(channel)
                if w is not None:
                    await self._sync_watch(channel, w)
            if gone:
                gone = [c for c in gone if (w := watches.get(c)) is not None and not w.needed]
                for channel in gone:
                    del watches[channel]
                await ps.unsubscribe(*(lua.PREFIX_CHANNEL + as_bytes(c) for c in gone))

    async def pump(self, ps: Any) -> None:
        """Deliver what pub/sub brings, in order, once.

        coredis hands its messages over one per scheduling batch (its reader
        task, then its pub/sub task, each awaits per message), so each
        delivery tells the cork that more may follow: messages that came in
        one read from Redis then go to each recipient as one write
        (:mod:`realtime.net.cork`).
        """
        prefix = lua.PREFIX_CHANNEL
        cut = len(prefix)
        watches = self.state.watches
        hub: HubView | None = self.state.hub
        cork = PassCork.current()
        while True:
            message = await ps.get_message()
            if message is None or message["type"] != "message":
                continue
            key: bytes = message["channel"]
            data: bytes = message["data"]
            if key == lua.REVOKE_CHANNEL:
                self._on_revocation(data)
                continue
            if key.startswith(lua.CTL_PREFIX):
                if self.state.on_ctl is not None:
                    self.state.on_ctl(key, data)
            if key == REFRESH_CHANNEL:  # an SSE stream's refresh from another node
                if self.state.on_stream_refresh is not None:
                    self.state.on_stream_refresh(data)
                continue
            if not key.startswith(prefix):
                continue
            channel = as_text(key[cut:])
            w = watches.get(channel)
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
                self._offer(channel, data[space + 1:])
                w.moved()
                cork.streaming()
            elif kind in (b"J", b"L") and hub is not None:
                sub = as_text(data[1:])
                event = replies.join(channel, sub) if kind == b"J" else replies.leave(channel, sub)
                hub.deliver_event(channel, encode_text_frame(event), sub)
                cork.streaming()

    async def _fill(self, channel: str, w: Watch, upto: int) -> None:
        """Offer kept messages ``cursor+1 .. upto`` (a gap in pub/sub)."""
        entries = await self.state.client.xrange(
            lua.PREFIX_STREAM + as_bytes(channel), f"{w.cursor + 1}-0", f"{upto}-0")
        for entry in entries:
            seq = int(entry.identifier.split(b"-", 1)[0])
            if seq > w.cursor:
                w.cursor = seq
                self._offer(channel, entry.field_values[b"m"])
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
        on_revoke = self.state.on_revoke
        if node.decode("ascii", "replace") != self.state.node and on_revoke is not None:
            on_revoke(as_text(jti), expiry)
