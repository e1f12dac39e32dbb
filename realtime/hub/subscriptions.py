"""Subscriptions: the per-channel and per-connection tables, history
replay on subscribe (see "Recovery" in :mod:`realtime.hub`) and the
member counts behind presence (join/leave on one node)."""

from __future__ import annotations

from collections.abc import Iterable

from realtime.hub.broker import Broker, BrokerUnavailable, Replay
from realtime.hub.index import Connection, ConnectionIndex
from realtime.hub.remote import RemoteBroker
from realtime.hub.results import HubError, SubscribeResult
from realtime.hub.rules import ChannelRules
from realtime.protocol import messages as protocol
from realtime.protocol.frames import encode_text_frame


class _Channel:
    """A channel with local subscribers (one exists only while it has any)."""

    __slots__ = ("name", "subs", "sub_of", "members", "snapshot")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subs: dict[int, Connection] = {}
        self.sub_of: dict[int, str] = {}  # conn_id -> sub at subscribe time
        self.members: dict[str, int] = {}  # sub -> subscribed connections
        # The fan-out list, rebuilt only after (un)subscribes: a publish
        # allocates nothing per subscriber and is safe against a session
        # that drops itself from inside offer().
        self.snapshot: tuple[Connection, ...] | None = None


class _Subscriber:
    """One connection's subscriptions, in subscribe order."""

    __slots__ = ("conn", "channels")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.channels: dict[str, None] = {}


class Subscriptions(ChannelRules):
    """Subscribing, unsubscribing and dropping connections.

    A mixin of :class:`realtime.hub.Hub`, whose constructor sets the
    broker and the tables declared here.
    """

    connections: ConnectionIndex
    broker: Broker
    remote: bool
    _channels: dict[str, _Channel]
    _subscribers: dict[int, _Subscriber]

    def _remote(self) -> RemoteBroker:
        return self.broker  # type: ignore[return-value]


    # -- subscriptions ------------------------------------------------------

    def subscribe(
        self,
        conn: Connection,
        channel: str,
        since: int | None = None,
        *,
        replay: Replay | None = None,
    ) -> SubscribeResult:
        """Subscribe ``conn`` to ``channel``; replay history after ``since``.

        ``replay``: what a remote broker's ``prepare`` returned (see
        :meth:`subscribe_async`); ``None`` asks the broker synchronously.

        Raises:
            HubError: ``bad_channel``, ``unknown_channel``, ``forbidden``,
                ``too_many_subscriptions``.
        """
        rule = self.check_subscribe(channel, conn.sub, conn.scopes)
        entry = self._subscribers.get(conn.conn_id)
        if entry is not None:
            if channel in entry.channels:
                return SubscribeResult([], True, self.broker.last_seq(channel), False)
            if len(entry.channels) >= self.ws.max_subscriptions:
                raise HubError(
                    "too_many_subscriptions",
                    f"at most {self.ws.max_subscriptions} subscriptions per connection",
                )
        elif self.ws.max_subscriptions < 1:
            raise HubError("too_many_subscriptions", "subscriptions are disabled")

        if replay is None:
            if since is None:
                replay = Replay([], True, self.broker.last_seq(channel))
            else:
                replay = self.broker.replay(channel, since)

        if entry is None:
            entry = self._subscribers[conn.conn_id] = _Subscriber(conn)
        entry.channels[channel] = None
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel(channel)
            self.broker.watch(channel)
        ch.subs[conn.conn_id] = conn
        ch.sub_of[conn.conn_id] = conn.sub
        ch.snapshot = None
        count = ch.members.get(conn.sub, 0)
        ch.members[conn.sub] = count + 1
        if self.remote:
            self._remote().report(channel, conn.sub)
        elif count == 0 and rule is not None and rule.join_leave:
            self._announce(ch, protocol.join(channel, conn.sub), skip=conn)
        return SubscribeResult(replay.frames, replay.recovered, replay.last_seq, True)

    async def subscribe_async(self, conn: Connection, channel: str, since: int | None = None) -> SubscribeResult:
        """:meth:`subscribe` through a remote broker (see "Remote brokers" in
        :mod:`realtime.hub`).

        Raises:
            HubError: what :meth:`subscribe` raises, and ``unavailable``
                when the broker cannot be reached.
        """
        rule = self.check_subscribe(channel, conn.sub, conn.scopes)
        entry = self._subscribers.get(conn.conn_id)
        if entry is not None and channel in entry.channels:
            return self.subscribe(conn, channel, since)
        broker = self._remote()
        broker.hold(channel)
        announced = False
        try:
            try:
                if rule is not None and (rule.presence or rule.join_leave):
                    # Presence first: when the ack goes out, every node
                    # already sees this member (and has its join).
                    count, total = self.local_counts(channel, conn.sub)
                    announced = True
                    await broker.report_now(channel, conn.sub, count + 1, total + 1)
                replay = await broker.prepare(channel, since)
            except BrokerUnavailable:
                raise HubError("unavailable", "the message broker is unreachable; try again") from None
            # No await from here on: the replay ends where live delivery starts.
            result = self.subscribe(conn, channel, since, replay=replay)
            announced = False  # subscribe() queued the real count
            return result
        finally:
            broker.release(channel)
            if announced:  # refused or cancelled after the early report: correct it
                broker.report(channel, conn.sub)

    def unsubscribe(self, conn: Connection, channel: str) -> bool:
        """Leave ``channel``.  Returns ``False`` if ``conn`` was not on it."""
        entry = self._subscribers.get(conn.conn_id)
        if entry is None or channel not in entry.channels:
            return False
        del entry.channels[channel]
        if not entry.channels:
            del self._subscribers[conn.conn_id]
        self._detach(channel, conn.conn_id)
        return True

    def drop(self, conn: Connection) -> None:
        """Forget a closing connection: every subscription and its index entry.

        Idempotent; safe to call from inside ``offer`` during a fan-out.
        """
        entry = self._subscribers.pop(conn.conn_id, None)
        if entry is not None:
            for channel in entry.channels:
                self._detach(channel, conn.conn_id)
        self.connections.remove(conn)

    def subscriptions_of(self, conn: Connection) -> tuple[str, ...]:
        """``conn``'s channels in subscribe order."""
        entry = self._subscribers.get(conn.conn_id)
        return tuple(entry.channels) if entry is not None else ()

    def revalidate(self, conn: Connection | None = None) -> list[tuple[Connection, str]]:
        """Remove subscriptions the current rules and scopes no longer allow.

        Call with a connection after its in-band refresh (the new token may
        hold fewer scopes); :meth:`update_rules` calls it for all of them.
        Returns the removed ``(connection, channel)`` pairs so the session
        can tell each client (an ``error`` without ``id`` naming the
        channel) that it no longer receives it.
        """
        if conn is None:
            entries = list(self._subscribers.values())
        else:
            one = self._subscribers.get(conn.conn_id)
            entries = [] if one is None else [one]
        removed: list[tuple[Connection, str]] = []
        for entry in entries:
            c = entry.conn
            for channel in list(entry.channels):
                try:
                    self.check_subscribe(channel, c.sub, c.scopes)
                except HubError:
                    removed.append((c, channel))
        for c, channel in removed:
            self.unsubscribe(c, channel)
        return removed

    def _detach(self, channel: str, conn_id: int) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.subs.pop(conn_id, None) is None:
            return
        ch.snapshot = None
        sub = ch.sub_of.pop(conn_id)
        count = ch.members[sub] - 1
        if count:
            ch.members[sub] = count
        else:
            del ch.members[sub]
        if self.remote:
            self._remote().report(channel, sub)
        if not ch.subs:
            del self._channels[channel]
            self.broker.unwatch(channel)
        elif count == 0 and not self.remote:
            rule = self.rule_for(channel)
            if rule is not None and rule.join_leave:
                self._announce(ch, protocol.leave(channel, sub), skip=None)

    @staticmethod
    def _announce(ch: _Channel, payload: bytes, skip: Connection | None) -> None:
        frame = encode_text_frame(payload)
        subs = ch.snapshot
        if subs is None:
            subs = ch.snapshot = tuple(ch.subs.values())
        for conn in subs:
            if conn is not skip:
                conn.offer(frame)

    # -- introspection ------------------------------------------------------

    def subscriber_count(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return 0 if ch is None else len(ch.subs)

    def channels(self) -> Iterable[str]:
        """Channels with at least one local subscriber."""
        return tuple(self._channels)

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def subscription_count(self) -> int:
        return sum(len(e.channels) for e in self._subscribers.values())
