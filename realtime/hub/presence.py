"""Presence (SPEC §5a): who is on a channel, and telling the others when
that changes (see "Presence" in :mod:`realtime.hub`).

On one node, :class:`Presence` announces ``join``/``leave`` itself after
each membership change the subscribing side reports, holds the leave of
a sub that churns (:mod:`realtime.hub.held`) and sends it when the window
ends (:meth:`Presence.tick`), and answers ``presence`` from the hub's
tables.  With a remote broker the broker announces across nodes and
answers ``presence`` from Redis; what is left here is turning the changes
it reports into webhook events (:meth:`Presence.cluster_events`).

Apart from the hub because it has state of its own (the held leaves and
the clock that times them) and no part in publishing: nothing here runs
per message.
"""

from __future__ import annotations

from collections.abc import Callable

from realtime.config.settings import ChannelRule
from realtime.hub.broker import BrokerUnavailable, RemoteBroker
from realtime.hub.held import HeldLeaves
from realtime.hub.index import Connection
from realtime.hub.paths import serving, unavailable
from realtime.hub.rules import ChannelRules
from realtime.hub.tables import Channel, Tables
from realtime.protocol import replies
from realtime.protocol.frames import encode_text_frame

__all__ = ["Presence"]

Emit = Callable[..., None]
"""The hub's webhook hook: ``emit(type, **data)``, a no-op without hooks."""


class Presence:
    """Join/leave announcements, their debounce, and presence answers.

    Args:
        tables: the hub's subscription tables (read only here).
        remote: the hub's broker when it is remote, else ``None``.
        emit: the hub's webhook events, ``emit(type, **data)``.
        clock: monotonic seconds, for holding ``leave`` events.

    Methods that check a permission take the hub's current
    :class:`ChannelRules`: a reload replaces them whole, so they are
    passed in, never kept here.
    """

    __slots__ = ("tables", "held", "_remote", "_emit", "_clock")

    def __init__(
        self, tables: Tables, remote: RemoteBroker | None, emit: Emit, clock: Callable[[], float]
    ) -> None:
        self.tables = tables
        self.held = HeldLeaves()
        self._remote = remote
        self._emit = emit
        self._clock = clock

    @staticmethod
    def _announce(ch: Channel, payload: bytes, skip: Connection | None) -> None:
        """A local ``join``/``leave``: offered to everyone on ``ch`` but ``skip``."""
        frame = encode_text_frame(payload)
        for conn in ch.fanout():
            if conn is not skip:
                conn.offer(frame)

    # -- changes on one node (in-process broker) ------------------------------

    def joined(self, ch: Channel, conn: Connection, count: int, created: bool, rule: ChannelRule | None) -> None:
        """``conn`` was filed on ``ch``; ``count`` connections of its sub
        were there before, and ``created`` says the channel is new here."""
        channel, sub = ch.name, conn.sub
        if created:  # across nodes, the broker tells (see RemoteBroker.report)
            self._emit("channel_occupied", channel=channel)
        if count == 0 and rule is not None and rule.join_leave:
            # The sub's leave still held (it left within the window): the
            # listeners never saw it go, so they need no join either.
            if not self.held.cancel(channel, sub):
                self._announce(ch, replies.join(channel, sub), skip=conn)
                self._emit("join", channel=channel, sub=sub)
            self.held.joined(channel, sub, self._clock())

    def left(self, ch: Channel, sub: str, count: int, rules: ChannelRules) -> None:
        """A connection of ``sub`` came off ``ch``, leaving ``count`` of
        that sub there: send its ``leave`` now, hold it, or (nobody left
        on the channel) only tell the webhooks."""
        channel = ch.name
        if not ch.subs:
            self.held.discard_channel(channel)  # nobody left to tell
            if count == 0 and rules.announces(channel):
                self._emit("leave", channel=channel, sub=sub)
            self._emit("channel_vacated", channel=channel)
        elif count == 0 and rules.announces(channel):
            window, now = rules.ws.join_leave_debounce, self._clock()
            if window > 0 and self.held.joined_within(channel, sub, now, window):
                self.held.hold(channel, sub, now + window)
            else:
                self._announce(ch, replies.leave(channel, sub), skip=None)
                self._emit("leave", channel=channel, sub=sub)

    def tick(self) -> int:
        """Send the held ``leave`` events whose window is over; returns how
        many.  The hub calls it on each subscribe and presence; the server
        also calls it a few times a second (``realtime.net``), so a leave
        is late by at most the window plus that period."""
        due = self.held.take_due(self._clock())
        sent = 0
        for channel, sub in due:
            ch = self.tables.channels.get(channel)
            if ch is not None:
                self._announce(ch, replies.leave(channel, sub), skip=None)
                self._emit("leave", channel=channel, sub=sub)
                sent += 1
        return sent

    # -- answers --------------------------------------------------------------

    def page(
        self, rules: ChannelRules, channel: str, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """Members on this node, at most ``[websocket] max_presence_members``,
        and whether cut.

        Raises:
            HubError: what :meth:`ChannelRules.check_presence` raises.
        """
        rules.check_presence(channel, sub, scopes)
        self.tick()
        ch = self.tables.channels.get(channel)
        if ch is None:
            return [], False
        limit = rules.presence_limit
        # Presence is a snapshot of who is subscribed: a sub whose leave is
        # held (join_leave_debounce) has no connection left and is not
        # listed, though its leave event has not gone out yet.
        return ch.members_page(limit)

    async def page_async(
        self, rules: ChannelRules, channel: str, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """:meth:`page` across every node, through the remote broker.

        Raises:
            HubError: as :meth:`page`, and ``unavailable``.
        """
        rules.check_presence(channel, sub, scopes)
        broker = serving(self._remote, "presence_async needs a remote broker; this hub's is in process")
        try:
            return await broker.presence(channel, rules.presence_limit)
        except BrokerUnavailable:
            raise unavailable() from None

    # -- changes across nodes (remote broker) ---------------------------------

    def cluster_events(self, channel: str, change: int, events: list[tuple[str, str]]) -> None:
        """Across nodes (a remote broker's report): occupied/vacated and
        join/leave, told to the webhooks by the one node that caused them."""
        if change > 0:
            self._emit("channel_occupied", channel=channel)
        for kind, sub in events:
            self._emit("join" if kind == "J" else "leave", channel=channel, sub=sub)
        if change < 0:
            self._emit("channel_vacated", channel=channel)
