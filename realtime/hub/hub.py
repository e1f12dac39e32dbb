"""The :class:`Hub`: publishing and the fan-out hot loop (DESIGN.md §4),
the reload of its rules, and the one face the sessions and the server
API call for subscriptions and presence too.

A hub is composed, not inherited: it holds its :class:`ChannelRules`
(replaced whole on a reload), its subscription :class:`Tables`, its
:class:`ConnectionIndex`, one broker, its :class:`Subscriptions`
(``subscriptions``: the side that subscribes and leaves,
:mod:`realtime.hub.subscriptions`) and its :class:`Presence` (``roster``:
join/leave and member lists, :mod:`realtime.hub.presence`).  Which broker
it holds decides the paths: an in-process :class:`Broker` serves the
synchronous ``publish``/``subscribe``; a :class:`RemoteBroker` serves the
``*_async`` ones and merges presence across nodes.

Publishing and delivery stay here, written out in full: they run per
message, so they call into no other part of the hub.  Everything else is
handed to the part whose job it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub.broker import Broker, BrokerUnavailable, RemoteBroker, Replay
from realtime.hub.held import HeldLeaves
from realtime.hub.index import Connection, ConnectionIndex
from realtime.hub.inprocess import InProcessBroker
from realtime.hub.paths import serving, unavailable
from realtime.hub.presence import Presence
from realtime.hub.results import HubError, PublishResult, SubscribeResult
from realtime.hub.rules import ChannelRules
from realtime.hub.subscriptions import Subscriptions
from realtime.hub.tables import Tables
from realtime.protocol import replies

__all__ = ["Hub"]


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
        chosen: Broker | RemoteBroker = broker if broker is not None else InProcessBroker.for_settings(ws)
        self.broker = chosen
        # Its parts, before a broker can reach the hub through them.
        self.roster = Presence(self.tables, chosen if chosen.remote else None, self._event, clock)
        self.subscriptions = Subscriptions(self.tables, chosen, self.roster, self._event)
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
    def held(self) -> HeldLeaves:
        """The ``leave`` events the join/leave debounce holds (see :mod:`realtime.hub.held`)."""
        return self.roster.held

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
        broker = serving(self._local, "a hub with a remote broker publishes through publish_async")
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
        broker = serving(self._remote, "publish_async needs a remote broker; this hub's is in process")
        try:
            seq, delivered = await broker.publish_async(channel, from_sub, data_json, rule.history)
        except BrokerUnavailable:
            raise unavailable() from None
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

    # -- subscriptions ------------------------------------------------------

    def subscribe(
        self,
        conn: Connection,
        channel: str,
        since: int | None = None,
        *,
        replay: Replay | None = None,
    ) -> SubscribeResult:
        """Subscribe ``conn`` to ``channel``; replay history after ``since``
        (see :meth:`Subscriptions.subscribe`).

        Raises:
            HubError: ``bad_channel``, ``unknown_channel``, ``forbidden``,
                ``too_many_subscriptions``.
        """
        return self.subscriptions.subscribe(self.rules, conn, channel, since, replay)

    async def subscribe_async(self, conn: Connection, channel: str, since: int | None = None) -> SubscribeResult:
        """:meth:`subscribe` through a remote broker (see
        :meth:`Subscriptions.subscribe_async`).

        Raises:
            HubError: what :meth:`subscribe` raises, and ``unavailable``
                when the broker cannot be reached.
        """
        return await self.subscriptions.subscribe_async(lambda: self.rules, conn, channel, since)

    def unsubscribe(self, conn: Connection, channel: str) -> bool:
        """Leave ``channel``.  Returns ``False`` if ``conn`` was not on it."""
        return self.subscriptions.unsubscribe(self.rules, conn, channel)

    def drop(self, conn: Connection) -> None:
        """Forget a closing connection: every subscription and its index entry.

        Idempotent; safe to call from inside ``offer`` during a fan-out.
        """
        self.subscriptions.leave_all(self.rules, conn)
        self.connections.remove(conn)

    def tick(self) -> int:
        """Send the held ``leave`` events whose window is over; returns how
        many (see :meth:`Presence.tick`)."""
        return self.roster.tick()

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
        return self.subscriptions.revalidate(self.rules, conn)

    # -- presence -----------------------------------------------------------

    def presence_page(
        self, channel: str, *, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """Members on this node, at most ``[websocket] max_presence_members``,
        and whether cut (see :meth:`Presence.page`).

        Raises:
            HubError: what :meth:`ChannelRules.check_presence` raises.
        """
        return self.roster.page(self.rules, channel, sub, scopes)

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
        return await self.roster.page_async(self.rules, channel, sub, scopes)

    def cluster_events(self, channel: str, change: int, events: list[tuple[str, str]]) -> None:
        """Across nodes (a remote broker's report): the webhook events of
        :meth:`Presence.cluster_events`; nothing without hooks."""
        if self.on_event is not None:
            self.roster.cluster_events(channel, change, events)

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
