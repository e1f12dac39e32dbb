"""The :class:`Hub`: subscriptions, publishing, the fan-out hot loop
(DESIGN.md §4) and presence, over the values it holds.

A hub is composed, not inherited: it holds its :class:`ChannelRules`
(replaced whole on a reload), its subscription :class:`Tables`, its
:class:`ConnectionIndex` and one broker.  Which broker it holds decides
the paths: an in-process :class:`Broker` serves the synchronous
``publish``/``subscribe``; a :class:`RemoteBroker` serves the ``*_async``
ones and merges presence across nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub.broker import Broker, BrokerUnavailable, RemoteBroker, Replay
from realtime.hub.held import HeldLeaves
from realtime.hub.index import Connection, ConnectionIndex
from realtime.hub.inprocess import InProcessBroker
from realtime.hub.results import HubError, PublishResult, SubscribeResult
from realtime.hub.rules import ChannelRules
from realtime.hub.tables import Channel, Tables
from realtime.protocol import replies
from realtime.protocol.frames import encode_text_frame

__all__ = ["Hub"]

B = TypeVar("B", Broker, RemoteBroker)


def _unavailable() -> HubError:
    return HubError("unavailable", "the message broker is unreachable; try again")


def _serving(broker: B | None, misuse: str) -> B:
    """``broker`` when the hub holds that kind; else the caller took the
    other kind's path (``hub.remote`` says which), a programming error."""
    if broker is None:
        raise TypeError(misuse)
    return broker


class Hub:
    """Channels, subscriptions, history recovery, fan-out and presence.

    Args:
        rules: the ``[[channel]]`` tables, in file order.
        ws: the ``[websocket]`` settings (limits).
        broker: numbering, history and delivery; :class:`InProcessBroker`
            when ``None``.
        rule_cache_size: channel names whose rule lookup is remembered.
        clock: monotonic seconds, for holding ``leave`` events (see
            :meth:`tick`); tests pass their own.
    """

    def __init__(
        self,
        rules: tuple[ChannelRule, ...],
        ws: WebSocketSettings,
        broker: Broker | RemoteBroker | None = None,
        *,
        rule_cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connections = ConnectionIndex()
        self.rules = ChannelRules(rules, ws, rule_cache_size)
        self.tables = Tables()
        self._rule_cache_size = rule_cache_size
        self._clock = clock
        self.held = HeldLeaves()
        chosen: Broker | RemoteBroker = broker if broker is not None else InProcessBroker.for_settings(ws)
        self.broker = chosen
        # Exactly one of the two is set: the paths are chosen here, once,
        # by the broker's tag (Literal[True] or Literal[False]).
        self._local: Broker | None = None
        self._remote: RemoteBroker | None = None
        if chosen.remote:
            self._remote = chosen
            chosen.attach(self)
        else:
            self._local = chosen
            chosen.bind(self.deliver)
        self.remote = self._remote is not None
        # Webhook events (SPEC §12): (type, data), set by the server when
        # [[webhook]] tables exist; None costs one check per event.
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None

    def _event(self, type_: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(type_, data)

    @property
    def remote_broker(self) -> RemoteBroker | None:
        """The networked broker, or ``None`` in process (server API requests)."""
        return self._remote

    def share_revocation(self, jti: str, exp: float) -> None:
        """Send a revocation to the other nodes; in process there are none."""
        if self._remote is not None:
            self._remote.share_revocation(jti, exp)

    # -- rules --------------------------------------------------------------

    def update_rules(
        self, rules: tuple[ChannelRule, ...], ws: WebSocketSettings
    ) -> list[tuple[Connection, str]]:
        """Apply a reloaded ``[[channel]]`` list and ``[websocket]`` limits.

        History sizes change at once (a smaller one drops the oldest kept
        messages).  Subscriptions the new rules no longer allow are removed
        and returned (see :meth:`revalidate`) so the session can tell each
        client with an ``error``.
        """
        self.rules = ChannelRules(rules, ws, self._rule_cache_size)
        if isinstance(self.broker, InProcessBroker):
            self.broker.set_limits(ws)
            self.broker.retain(self.rules.history_for, self.rules.history_bytes_for)
        else:
            self.broker.retain(self.rules.history_for)
        return self.revalidate()

    def rule_for(self, channel: str) -> ChannelRule | None:
        """The first rule whose pattern matches ``channel``, or ``None``."""
        return self.rules.rule_for(channel)

    def allows_any_channel(self, scopes: frozenset[str]) -> bool:
        """See :meth:`ChannelRules.allows_any_channel` (the handshake's 403)."""
        return self.rules.allows_any_channel(scopes)

    # -- publishing ---------------------------------------------------------

    def _prepare_publish(self, channel: str, data: Any, scopes: frozenset[str]) -> tuple[ChannelRule, bytes]:
        """Check the publish scope and encode ``data`` once (both broker paths)."""
        rule = self.rules.check_publish(channel, scopes)
        try:
            return rule, replies.encode_json(data)
        except (TypeError, ValueError, RecursionError):
            raise HubError("bad_data", "data cannot be encoded as JSON") from None

    def publish(self, channel: str, data: Any, *, from_sub: str, scopes: frozenset[str]) -> PublishResult:
        """Publish ``data`` to ``channel`` and fan it out before returning.

        Only with an in-process broker (``hub.remote`` false).

        Raises:
            HubError: ``bad_channel``, ``unknown_channel``, ``forbidden``,
                ``bad_data`` (not JSON-encodable: NaN, a set, too deep).
        """
        rule, data_json = self._prepare_publish(channel, data, scopes)
        broker = _serving(self._local, "a hub with a remote broker publishes through publish_async")
        seq, delivered = broker.publish(channel, from_sub, data_json, rule.history, keep_bytes=rule.history_bytes)
        if self.on_event is not None:  # the publish path: not even a kwargs dict without hooks
            self._event("publish", channel=channel, seq=seq, sub=from_sub, data=data)
        return PublishResult(delivered, seq)

    async def publish_async(self, channel: str, data: Any, *, from_sub: str, scopes: frozenset[str]) -> PublishResult:
        """:meth:`publish` through a remote broker.

        ``delivered`` counts subscribers on every node, as the nodes last
        reported them to Redis.  The local fan-out happens when the message
        comes back from the broker, in ``seq`` order with everyone else's.

        Raises:
            HubError: what :meth:`publish` raises, and ``unavailable``
                when the broker cannot be reached (nothing was published).
        """
        rule, data_json = self._prepare_publish(channel, data, scopes)
        broker = _serving(self._remote, "publish_async needs a remote broker; this hub's is in process")
        try:
            seq, delivered = await broker.publish_async(channel, from_sub, data_json, rule.history)
        except BrokerUnavailable:
            raise _unavailable() from None
        if self.on_event is not None:  # the publish path: not even a kwargs dict without hooks
            self._event("publish", channel=channel, seq=seq, sub=from_sub, data=data)
        return PublishResult(delivered, seq)

    def deliver(self, channel: str, frame: bytes) -> int:
        """Offer one prepared frame to every local subscriber of ``channel``.

        The broker calls this; it is the hot loop of DESIGN.md §4.  Returns
        how many subscribers were offered the frame.
        """
        ch = self.tables.channels.get(channel)
        if ch is None:
            return 0
        subs = ch.fanout()
        for conn in subs:
            conn.offer(frame)
        return len(subs)

    def deliver_event(self, channel: str, frame: bytes, skip_sub: str) -> int:
        """Offer a ``join``/``leave`` frame from a remote broker.

        The connections of ``skip_sub`` itself are skipped: nobody is told
        of their own join (as on one node).
        """
        ch = self.tables.channels.get(channel)
        if ch is None:
            return 0
        sub_of = ch.sub_of
        offered = 0
        for conn in ch.fanout():
            if sub_of.get(conn.conn_id) != skip_sub:
                conn.offer(frame)
                offered += 1
        return offered

    @staticmethod
    def _announce(ch: Channel, payload: bytes, skip: Connection | None) -> None:
        """A local ``join``/``leave``: offered to everyone on ``ch`` but ``skip``."""
        frame = encode_text_frame(payload)
        for conn in ch.fanout():
            if conn is not skip:
                conn.offer(frame)

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
        :meth:`subscribe_async`); ``None`` asks the in-process broker.

        Raises:
            HubError: ``bad_channel``, ``unknown_channel``, ``forbidden``,
                ``too_many_subscriptions``.
        """
        self.tick()  # a leave whose window is over goes before this join
        rule = self.rules.check_subscribe(channel, conn.sub, conn.scopes)
        limit = self.rules.ws.max_subscriptions
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
                replay = _serving(self._local, "a hub with a remote broker replays through subscribe_async").replay(
                    channel, since)

        ch, count, created = self.tables.add(conn, channel)
        if created:
            self.broker.watch(channel)
        self._event("subscribe", channel=channel, sub=conn.sub, client_id=conn.client_id, conn_id=conn.conn_id)
        if self._remote is not None:
            self._remote.report(channel, conn.sub)
        else:
            if created:  # across nodes, the broker tells (see RemoteBroker.report)
                self._event("channel_occupied", channel=channel)
            if count == 0 and rule is not None and rule.join_leave:
                # The sub's leave still held (it left within the window): the
                # listeners never saw it go, so they need no join either.
                if not self.held.cancel(channel, conn.sub):
                    self._announce(ch, replies.join(channel, conn.sub), skip=conn)
                    self._event("join", channel=channel, sub=conn.sub)
                self.held.joined(channel, conn.sub, self._clock())
        return SubscribeResult(replay.frames, replay.recovered, replay.last_seq, True)

    async def subscribe_async(self, conn: Connection, channel: str, since: int | None = None) -> SubscribeResult:
        """:meth:`subscribe` through a remote broker (see "Remote brokers" in
        :mod:`realtime.hub`).

        Raises:
            HubError: what :meth:`subscribe` raises, and ``unavailable``
                when the broker cannot be reached.
        """
        rule = self.rules.check_subscribe(channel, conn.sub, conn.scopes)
        if channel in self.tables.channels_of(conn):
            return self.subscribe(conn, channel, since)
        broker = _serving(self._remote, "subscribe_async needs a remote broker; this hub's is in process")
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
                raise _unavailable() from None
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
        if not self.tables.forget(conn, channel):
            return False
        self._detach(channel, conn.conn_id)
        return True

    def drop(self, conn: Connection) -> None:
        """Forget a closing connection: every subscription and its index entry.

        Idempotent; safe to call from inside ``offer`` during a fan-out.
        """
        for channel in self.tables.forget_all(conn):
            self._detach(channel, conn.conn_id)
        self.connections.remove(conn)

    def _detach(self, channel: str, conn_id: int) -> None:
        """The channel side of leaving: watch, report or announce the change."""
        detached = self.tables.detach(channel, conn_id)
        if detached is None:
            return
        ch, sub, count = detached
        self._event("unsubscribe", channel=channel, sub=sub, conn_id=conn_id)
        if self._remote is not None:
            self._remote.report(channel, sub)
        if not ch.subs:
            self.broker.unwatch(channel)
            self.held.discard_channel(channel)  # nobody left to tell
            if self._remote is None:
                if count == 0 and self.rules.announces(channel):
                    self._event("leave", channel=channel, sub=sub)
                self._event("channel_vacated", channel=channel)
        elif count == 0 and self._remote is None and self.rules.announces(channel):
            window, now = self.rules.ws.join_leave_debounce, self._clock()
            if window > 0 and self.held.joined_within(channel, sub, now, window):
                self.held.hold(channel, sub, now + window)
            else:
                self._announce(ch, replies.leave(channel, sub), skip=None)
                self._event("leave", channel=channel, sub=sub)

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
                self._event("leave", channel=channel, sub=sub)
                sent += 1
        return sent

    def subscriptions_of(self, conn: Connection) -> tuple[str, ...]:
        """``conn``'s channels in subscribe order."""
        return tuple(self.tables.channels_of(conn))

    def revalidate(self, conn: Connection | None = None) -> list[tuple[Connection, str]]:
        """Remove subscriptions the current rules and scopes no longer allow.

        Call with a connection after its in-band refresh (the new token may
        hold fewer scopes); :meth:`update_rules` calls it for all of them.
        Returns the removed ``(connection, channel)`` pairs so the session
        can tell each client (an ``error`` without ``id`` naming the
        channel) that it no longer receives it.
        """
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
                    self.rules.check_subscribe(channel, c.sub, c.scopes)
                except HubError:
                    removed.append((c, channel))
        for c, channel in removed:
            self.unsubscribe(c, channel)
        return removed

    # -- presence -----------------------------------------------------------

    def presence_page(
        self, channel: str, *, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """Members on this node, at most ``[websocket] max_presence_members``,
        and whether cut.

        Raises:
            HubError: what :meth:`ChannelRules.check_presence` raises.
        """
        self.rules.check_presence(channel, sub, scopes)
        self.tick()
        ch = self.tables.channels.get(channel)
        if ch is None:
            return [], False
        limit = self.rules.presence_limit
        # Presence is a snapshot of who is subscribed: a sub whose leave is
        # held (join_leave_debounce) has no connection left and is not
        # listed, though its leave event has not gone out yet.
        return ch.members_page(limit)

    def presence(self, channel: str, *, sub: str, scopes: frozenset[str]) -> list[tuple[str, int]]:
        """``(sub, connections)`` subscribed to ``channel``, in join order
        (capped; see :meth:`presence_page`)."""
        return self.presence_page(channel, sub=sub, scopes=scopes)[0]

    async def presence_async(
        self, channel: str, *, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """:meth:`presence_page` across every node, through the remote broker.

        Raises:
            HubError: as :meth:`presence_page`, and ``unavailable``.
        """
        self.rules.check_presence(channel, sub, scopes)
        broker = _serving(self._remote, "presence_async needs a remote broker; this hub's is in process")
        try:
            return await broker.presence(channel, self.rules.presence_limit)
        except BrokerUnavailable:
            raise _unavailable() from None

    def cluster_events(self, channel: str, change: int, events: list[tuple[str, str]]) -> None:
        """Across nodes (a remote broker's report): occupied/vacated and
        join/leave, told to the webhooks by the one node that caused them."""
        if self.on_event is None:
            return
        if change > 0:
            self._event("channel_occupied", channel=channel)
        for kind, sub in events:
            self._event("join" if kind == "J" else "leave", channel=channel, sub=sub)
        if change < 0:
            self._event("channel_vacated", channel=channel)

    def local_counts(self, channel: str, sub: str) -> tuple[int, int]:
        """``(connections of sub, all connections)`` on ``channel`` here."""
        return self.tables.counts(channel, sub)

    def local_members(self, channel: str) -> list[str]:
        """Every ``sub`` with a connection on ``channel`` here (resync)."""
        ch = self.tables.channels.get(channel)
        return [] if ch is None else list(ch.members)

    # -- introspection ------------------------------------------------------

    def subscriber_count(self, channel: str) -> int:
        ch = self.tables.channels.get(channel)
        return 0 if ch is None else len(ch.subs)

    def channels(self) -> Iterable[str]:
        """Channels with at least one local subscriber."""
        return tuple(self.tables.channels)

    @property
    def channel_count(self) -> int:
        return len(self.tables.channels)

    @property
    def subscription_count(self) -> int:
        return self.tables.subscription_count()
