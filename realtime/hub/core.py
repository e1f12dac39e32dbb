"""The :class:`Hub`: construction, rule reloads, publishing and the
fan-out hot loop (DESIGN.md §4)."""

from __future__ import annotations

from typing import Any

from realtime.hub.broker import Broker, BrokerUnavailable, InProcessBroker
from realtime.hub.index import Connection, ConnectionIndex
from realtime.hub.presence import Presence
from realtime.hub.results import HubError, PublishResult
from realtime.hub.subscriptions import _Channel, _Subscriber
from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.protocol import messages as protocol


class Hub(Presence):
    """Channels, subscriptions, history recovery, fan-out and presence.

    Args:
        rules: the ``[[channel]]`` tables, in file order.
        ws: the ``[websocket]`` settings (limits).
        broker: numbering, history and delivery; :class:`InProcessBroker`
            when ``None``.
        rule_cache_size: channel names whose rule lookup is remembered.
    """

    def __init__(
        self,
        rules: tuple[ChannelRule, ...],
        ws: WebSocketSettings,
        broker: Broker | None = None,
        *,
        rule_cache_size: int = 4096,
    ) -> None:
        self.connections = ConnectionIndex()
        self.broker: Broker = broker if broker is not None else InProcessBroker()
        self.broker.bind(self.deliver)
        self.remote = bool(getattr(self.broker, "remote", False))
        self._cache_size = rule_cache_size
        self._cache: dict[str, ChannelRule | None] = {}
        self._channels: dict[str, _Channel] = {}
        self._subscribers: dict[int, _Subscriber] = {}
        self._set_rules(rules, ws)
        if self.remote:
            self._remote().attach(self)

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
        self._set_rules(rules, ws)
        self.broker.retain(self._history_for)
        return self.revalidate()

    # -- publishing ---------------------------------------------------------

    def _prepare_publish(self, channel: str, data: Any, scopes: frozenset[str]) -> tuple[ChannelRule, bytes]:
        """Check the publish scope and encode ``data`` once (both broker paths)."""
        rule = self.check_publish(channel, scopes)
        try:
            return rule, protocol.encode_json(data)
        except (TypeError, ValueError, RecursionError):
            raise HubError("bad_data", "data cannot be encoded as JSON") from None

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        from_sub: str,
        scopes: frozenset[str],
    ) -> PublishResult:
        """Publish ``data`` to ``channel`` and fan it out before returning.

        Raises:
            HubError: ``bad_channel``, ``unknown_channel``, ``forbidden``,
                ``bad_data`` (not JSON-encodable: NaN, a set, too deep).
        """
        rule, data_json = self._prepare_publish(channel, data, scopes)
        seq, delivered = self.broker.publish(channel, from_sub, data_json, rule.history)
        return PublishResult(delivered, seq)

    async def publish_async(
        self,
        channel: str,
        data: Any,
        *,
        from_sub: str,
        scopes: frozenset[str],
    ) -> PublishResult:
        """:meth:`publish` through a remote broker.

        ``delivered`` counts subscribers on every node, as the nodes last
        reported them to Redis.  The local fan-out happens when the message
        comes back from the broker, in ``seq`` order with everyone else's.

        Raises:
            HubError: what :meth:`publish` raises, and ``unavailable``
                when the broker cannot be reached (nothing was published).
        """
        rule, data_json = self._prepare_publish(channel, data, scopes)
        try:
            seq, delivered = await self._remote().publish_async(channel, from_sub, data_json, rule.history)
        except BrokerUnavailable:
            raise HubError("unavailable", "the message broker is unreachable; try again") from None
        return PublishResult(delivered, seq)

    def deliver(self, channel: str, frame: bytes) -> int:
        """Offer one prepared frame to every local subscriber of ``channel``.

        The broker calls this; it is the hot loop of DESIGN.md §4.  Returns
        how many subscribers were offered the frame.
        """
        ch = self._channels.get(channel)
        if ch is None:
            return 0
        subs = ch.snapshot
        if subs is None:
            subs = ch.snapshot = tuple(ch.subs.values())
        for conn in subs:
            conn.offer(frame)
        return len(subs)

    def deliver_event(self, channel: str, frame: bytes, skip_sub: str) -> int:
        """Offer a ``join``/``leave`` frame from a remote broker.

        The connections of ``skip_sub`` itself are skipped: nobody is told
        of their own join (as on one node).
        """
        ch = self._channels.get(channel)
        if ch is None:
            return 0
        subs = ch.snapshot
        if subs is None:
            subs = ch.snapshot = tuple(ch.subs.values())
        sub_of = ch.sub_of
        offered = 0
        for conn in subs:
            if sub_of.get(conn.conn_id) != skip_sub:
                conn.offer(frame)
                offered += 1
        return offered
