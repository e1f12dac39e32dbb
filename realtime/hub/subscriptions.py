"""Subscribing and leaving: the permission and limit checks, the replay a
subscription starts with, watching a channel's feed from the broker, and
passing each membership change on (to the remote broker, or to
:class:`Presence` on one node).

This is the side of the hub that writes the subscription tables; the
publishing side (:mod:`realtime.hub.hub`) only reads them, per message,
and hands nothing to this one on the way.  See "Recovery" and "Remote
brokers" in :mod:`realtime.hub` for why a replay and live delivery meet
with no gap.
"""

from __future__ import annotations

from collections.abc import Callable

from realtime.hub.broker import Broker, BrokerUnavailable, RemoteBroker, Replay
from realtime.hub.index import Connection
from realtime.hub.paths import serving, unavailable
from realtime.hub.presence import Emit, Presence
from realtime.hub.results import HubError, SubscribeResult
from realtime.hub.rules import ChannelRules
from realtime.hub.tables import Tables

__all__ = ["Subscriptions"]


class Subscriptions:
    """The hub's subscription changes, one connection and channel at a time.

    Args:
        tables: the hub's subscription tables (written here).
        broker: the hub's broker, of either kind.
        presence: join/leave on one node; its held leaves go first.
        emit: the hub's webhook events, ``emit(type, **data)``.

    Every method takes the hub's current :class:`ChannelRules`: a reload
    replaces them whole, so they are passed in, never kept here (across
    an await, as a getter: see subscribe_async).
    """

    __slots__ = ("tables", "broker", "presence", "_local", "_remote", "_emit")

    def __init__(self, tables: Tables, broker: Broker | RemoteBroker, presence: Presence, emit: Emit) -> None:
        self.tables = tables
        self.broker = broker
        self.presence = presence
        # Exactly one of the two is set, as on the hub.
        self._local: Broker | None = None
        self._remote: RemoteBroker | None = None
        if broker.remote:
            self._remote = broker
        else:
            self._local = broker
        self._emit = emit

    def subscribe(
        self,
        rules: ChannelRules,
        conn: Connection,
        channel: str,
        since: int | None = None,
        replay: Replay | None = None,
    ) -> SubscribeResult:
        """Subscribe ``conn`` to ``channel``; replay history after ``since``.

        ``replay``: what a remote broker's ``prepare`` returned (see
        :meth:`subscribe_async`); ``None`` asks the in-process broker.

        Raises:
            HubError: ``bad_channel``, ``unknown_channel``, ``forbidden``,
                ``too_many_subscriptions``.
        """
        self.presence.tick()  # a leave whose window is over goes before this join
        rule = rules.check_subscribe(channel, conn.sub, conn.scopes)
        limit = rules.ws.max_subscriptions
        mine = self.tables.channels_of(conn)
        if channel in mine:
            return SubscribeResult([], True, self.broker.last_seq(channel), False)
        if mine and len(mine) >= limit:
            raise HubError("too_many_subscriptions", f"at most {limit} subscriptions per connection")
        if not mine and limit < 1:
            raise HubError("too_many_subscriptions", "subscriptions are disabled")

        if replay is None:
            if since is None:
                replay = Replay([], True, self.broker.last_seq(channel))
            else:
                replay = serving(self._local, "a hub with a remote broker replays through subscribe_async").replay(
                    channel, since)

        ch, count, created = self.tables.add(conn, channel)
        if created:
            self.broker.watch(channel)
        self._emit("subscribe", channel=channel, sub=conn.sub, client_id=conn.client_id, conn_id=conn.conn_id)
        if self._remote is not None:
            self._remote.report(channel, conn.sub)
        else:
            self.presence.joined(ch, conn, count, created, rule)
        return SubscribeResult(replay.frames, replay.recovered, replay.last_seq, True)

    async def subscribe_async(
        self, current_rules: Callable[[], ChannelRules], conn: Connection, channel: str, since: int | None = None
    ) -> SubscribeResult:
        """:meth:`subscribe` through a remote broker (see "Remote brokers" in
        :mod:`realtime.hub`).

        Takes the rules as a getter, not a value: a reload during the
        broker's round trip replaces them, and its revalidation cannot see
        this subscription yet, so the final check must read the new ones.

        Raises:
            HubError: what :meth:`subscribe` raises, and ``unavailable``
                when the broker cannot be reached.
        """
        rules = current_rules()
        rule = rules.check_subscribe(channel, conn.sub, conn.scopes)
        if channel in self.tables.channels_of(conn):
            return self.subscribe(rules, conn, channel, since)
        broker = serving(self._remote, "subscribe_async needs a remote broker; this hub's is in process")
        broker.hold(channel)
        announced = False
        try:
            try:
                if rule is not None and (rule.presence or rule.join_leave):
                    # Presence first: when the ack goes out, every node
                    # already sees this member (and has its join).
                    count, total = self.tables.counts(channel, conn.sub)
                    announced = True
                    await broker.report_now(channel, conn.sub, count + 1, total + 1)
                replay = await broker.prepare(channel, since)
            except BrokerUnavailable:
                raise unavailable() from None
            # No await from here on: the replay ends where live delivery starts.
            result = self.subscribe(current_rules(), conn, channel, since, replay)
            announced = False  # subscribe() queued the real count
            return result
        finally:
            broker.release(channel)
            if announced:  # refused or cancelled after the early report: correct it
                broker.report(channel, conn.sub)

    def unsubscribe(self, rules: ChannelRules, conn: Connection, channel: str) -> bool:
        """Leave ``channel``.  Returns ``False`` if ``conn`` was not on it."""
        if not self.tables.forget(conn, channel):
            return False
        self._detach(rules, channel, conn.conn_id)
        return True

    def leave_all(self, rules: ChannelRules, conn: Connection) -> None:
        """Take a closing connection off every channel.

        Idempotent; safe to call from inside ``offer`` during a fan-out.
        """
        for channel in self.tables.forget_all(conn):
            self._detach(rules, channel, conn.conn_id)

    def _detach(self, rules: ChannelRules, channel: str, conn_id: int) -> None:
        """The channel side of leaving: watch, report or announce the change."""
        detached = self.tables.detach(channel, conn_id)
        if detached is None:
            return
        ch, sub, count = detached
        self._emit("unsubscribe", channel=channel, sub=sub, conn_id=conn_id)
        if self._remote is not None:
            self._remote.report(channel, sub)
        if not ch.subs:
            self.broker.unwatch(channel)
        if self._remote is None:
            self.presence.left(ch, sub, count, rules)

    def revalidate(self, rules: ChannelRules, conn: Connection | None = None) -> list[tuple[Connection, str]]:
        """Remove subscriptions ``rules`` and the scopes no longer allow:
        ``conn``'s, or everyone's when ``None``.  Returns the removed
        ``(connection, channel)`` pairs."""
        subscribers = self.tables.subscribers
        if conn is None:
            entries = list(subscribers.values())
        else:
            one = subscribers.get(conn.conn_id)
            entries = [] if one is None else [one]
        removed: list[tuple[Connection, str]] = []
        for entry in entries:
            c = entry.conn
            for channel in list(entry.channels):
                try:
                    rules.check_subscribe(channel, c.sub, c.scopes)
                except HubError:
                    removed.append((c, channel))
        for c, channel in removed:
            self.unsubscribe(rules, c, channel)
        return removed
