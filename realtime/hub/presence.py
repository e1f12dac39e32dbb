"""Presence queries: who is on a channel, here or across nodes (see
"Presence" in :mod:`realtime.hub`)."""

from __future__ import annotations

import itertools

from realtime.hub.broker import BrokerUnavailable
from realtime.hub.results import HubError
from realtime.hub.subscriptions import Subscriptions

DEFAULT_PRESENCE_LIMIT = 1000


class Presence(Subscriptions):
    """The presence answers of :class:`realtime.hub.Hub`, read from the
    member counts :class:`Subscriptions` keeps."""

    @property
    def presence_limit(self) -> int:
        return int(getattr(self.ws, "max_presence_members", DEFAULT_PRESENCE_LIMIT))

    def check_presence(self, channel: str, *, sub: str, scopes: frozenset[str]) -> None:
        """Raise :class:`HubError` unless ``sub`` may ask who is on ``channel``."""
        rule = self.check_subscribe(channel, sub, scopes)
        if rule is None or not rule.presence:
            raise HubError("presence_disabled", "presence is not enabled for this channel")

    def presence_page(
        self, channel: str, *, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """Members on this node, at most :attr:`presence_limit`, and whether cut.

        Raises:
            HubError: what :meth:`check_subscribe` raises, or
                ``presence_disabled``.
        """
        self.check_presence(channel, sub=sub, scopes=scopes)
        ch = self._channels.get(channel)
        if ch is None:
            return [], False
        limit = self.presence_limit
        members = ch.members
        if len(members) <= limit:
            return list(members.items()), False
        return list(itertools.islice(members.items(), limit)), True

    def presence(self, channel: str, *, sub: str, scopes: frozenset[str]) -> list[tuple[str, int]]:
        """``(sub, connections)`` subscribed to ``channel``, in join order
        (at most :attr:`presence_limit`; see :meth:`presence_page`)."""
        return self.presence_page(channel, sub=sub, scopes=scopes)[0]

    async def presence_async(
        self, channel: str, *, sub: str, scopes: frozenset[str]
    ) -> tuple[list[tuple[str, int]], bool]:
        """:meth:`presence_page` across every node, through the remote broker.

        Raises:
            HubError: as :meth:`presence_page`, and ``unavailable``.
        """
        self.check_presence(channel, sub=sub, scopes=scopes)
        try:
            return await self._remote().presence(channel, self.presence_limit)
        except BrokerUnavailable:
            raise HubError("unavailable", "the message broker is unreachable; try again") from None

    def local_counts(self, channel: str, sub: str) -> tuple[int, int]:
        """``(connections of sub, all connections)`` on ``channel`` here."""
        ch = self._channels.get(channel)
        if ch is None:
            return 0, 0
        return ch.members.get(sub, 0), len(ch.subs)

    def local_members(self, channel: str) -> list[str]:
        """Every ``sub`` with a connection on ``channel`` here (resync)."""
        ch = self._channels.get(channel)
        return [] if ch is None else list(ch.members)
