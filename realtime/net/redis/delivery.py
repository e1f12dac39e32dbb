"""Pub/sub delivery for :class:`realtime.net.redis.broker.RedisBroker`:
subscribe and unsubscribe channels as local subscribers come and go, bring
each one's cursor up to date from the stream, and offer what pub/sub brings
to the hub in ``seq`` order, once (the module docstring of
:mod:`realtime.net.redis.broker` describes the scheme).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from realtime.net.redis import lua
from realtime.net.redis.state import _b, _RedisState, _s, _Watch, log
from realtime.protocol import messages as protocol
from realtime.protocol.frames import encode_text_frame

if TYPE_CHECKING:
    from realtime.hub import Hub


class _Delivery(_RedisState):
    """The pub/sub delivery layer of :class:`realtime.net.redis.broker.RedisBroker`."""

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
