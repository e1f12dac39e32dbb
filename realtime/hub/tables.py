"""The hub's subscription tables: who is on which channel, per channel and
per connection, with the member counts behind presence.

Pure bookkeeping: nothing here checks a rule, talks to a broker or sends
a frame.  :class:`realtime.hub.Hub` decides what a change means (a
``join``, a report to a remote broker) from what these methods return.
"""

from __future__ import annotations

import itertools

from realtime.hub.index import Connection

__all__ = ["Channel", "Subscriber", "Tables"]


class Channel:
    """A channel with local subscribers (one exists only while it has any)."""

    __slots__ = ("name", "subs", "sub_of", "members", "_snapshot")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subs: dict[int, Connection] = {}
        self.sub_of: dict[int, str] = {}  # conn_id -> sub at subscribe time
        self.members: dict[str, int] = {}  # sub -> subscribed connections
        self._snapshot: tuple[Connection, ...] | None = None

    def fanout(self) -> tuple[Connection, ...]:
        """The subscribers to offer a frame to, as a tuple.

        Rebuilt only after a (un)subscribe, so a publish allocates nothing
        per subscriber; and a tuple, so a session that drops itself from
        inside ``offer()`` cannot disturb the loop walking it.
        """
        subs = self._snapshot
        if subs is None:
            subs = self._snapshot = tuple(self.subs.values())
        return subs

    def add(self, conn: Connection) -> int:
        """File ``conn`` here; returns its ``sub``'s connections before it."""
        self.subs[conn.conn_id] = conn
        self.sub_of[conn.conn_id] = conn.sub
        self._snapshot = None
        count = self.members.get(conn.sub, 0)
        self.members[conn.sub] = count + 1
        return count

    def remove(self, conn_id: int) -> tuple[str, int] | None:
        """Take a connection off; ``(its sub, that sub's connections left)``,
        or ``None`` when it was not here."""
        if self.subs.pop(conn_id, None) is None:
            return None
        self._snapshot = None
        sub = self.sub_of.pop(conn_id)
        count = self.members[sub] - 1
        if count:
            self.members[sub] = count
        else:
            del self.members[sub]
        return sub, count

    def members_page(self, limit: int) -> tuple[list[tuple[str, int]], bool]:
        """At most ``limit`` ``(sub, connections)`` in join order, and
        whether some were cut: one bounded slice, never a walk of all."""
        members = self.members
        if len(members) <= limit:
            return list(members.items()), False
        return list(itertools.islice(members.items(), limit)), True


class Subscriber:
    """One connection's subscriptions, in subscribe order."""

    __slots__ = ("conn", "channels")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.channels: dict[str, None] = {}


class Tables:
    """The per-channel and the per-connection table, kept in step."""

    __slots__ = ("channels", "subscribers")

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.subscribers: dict[int, Subscriber] = {}

    def channels_of(self, conn: Connection) -> dict[str, None]:
        """``conn``'s channels (empty when it has none); do not mutate."""
        entry = self.subscribers.get(conn.conn_id)
        return {} if entry is None else entry.channels

    def add(self, conn: Connection, channel: str) -> tuple[Channel, int, bool]:
        """Subscribe ``conn``: ``(the channel, its sub's connections there
        before, whether the channel is new here)``."""
        entry = self.subscribers.get(conn.conn_id)
        if entry is None:
            entry = self.subscribers[conn.conn_id] = Subscriber(conn)
        entry.channels[channel] = None
        ch = self.channels.get(channel)
        created = ch is None
        if ch is None:
            ch = self.channels[channel] = Channel(channel)
        return ch, ch.add(conn), created

    def forget(self, conn: Connection, channel: str) -> bool:
        """Take ``channel`` off ``conn``'s list; ``False`` if it was not on it.
        The channel side is :meth:`detach`'s job."""
        entry = self.subscribers.get(conn.conn_id)
        if entry is None or channel not in entry.channels:
            return False
        del entry.channels[channel]
        if not entry.channels:
            del self.subscribers[conn.conn_id]
        return True

    def forget_all(self, conn: Connection) -> tuple[str, ...]:
        """Take every channel off ``conn``'s list; returns them."""
        entry = self.subscribers.pop(conn.conn_id, None)
        return () if entry is None else tuple(entry.channels)

    def detach(self, channel: str, conn_id: int) -> tuple[Channel, str, int] | None:
        """Take a connection off ``channel``: ``(the channel, the sub, its
        connections left)``, or ``None`` when it was not there.  The channel
        is gone from :attr:`channels` when it has nobody left."""
        ch = self.channels.get(channel)
        if ch is None:
            return None
        removed = ch.remove(conn_id)
        if removed is None:
            return None
        if not ch.subs:
            del self.channels[channel]
        return ch, removed[0], removed[1]

    def counts(self, channel: str, sub: str) -> tuple[int, int]:
        """``(connections of sub, all connections)`` on ``channel``."""
        ch = self.channels.get(channel)
        if ch is None:
            return 0, 0
        return ch.members.get(sub, 0), len(ch.subs)

    def subscription_count(self) -> int:
        return sum(len(e.channels) for e in self.subscribers.values())
