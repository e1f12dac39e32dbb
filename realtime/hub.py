"""Channels: who may subscribe and publish, and the fan-out (SPEC §4, §5, §5a).

Sans-I/O and synchronous: nothing here awaits.  A publish checks the
scope, encodes ``data`` once, lets the broker number and frame it once,
then offers the same bytes to every subscriber in a plain loop
(DESIGN.md §4).  No subscriber can hold that loop up: ``offer`` never
blocks, and a session that cannot keep up closes itself with 4009.

Rules
-----

- A channel name matches the first ``[[channel]]`` pattern
  (``fnmatch.fnmatchcase``, so case matters).  Subscribing needs its
  ``subscribe_scope``, publishing its ``publish_scope``; a scope of
  ``None`` lets any token in.
- ``user:<sub>`` is always subscribable by that ``sub``, with or without a
  rule, and by nobody else, whatever rules or scopes say (SPEC §5: a user's
  notifications are private).  Publishing to it needs a rule that matches
  it, e.g. ``pattern = "user:*"`` with ``publish_scope = "notify"``; with
  no such rule nobody can publish to it.  Without a rule it keeps no
  history.
- A channel name must pass :func:`realtime.ws.protocol.channel_problem`
  (non-empty, at most ``[websocket] max_channel_name`` characters, no
  control characters), whether it came over WebSocket or
  ``/api/publish``.
- Subscribing to a channel the connection is already on is a no-op that
  succeeds (ack, no second delivery, no replay).  Unsubscribing from a
  channel it is not on also succeeds (``unsubscribe`` returns ``False``).
- A connection may hold ``[websocket] max_subscriptions`` subscriptions.
- A publisher subscribed to the channel receives its own message.

Recovery (``since``)
--------------------

``seq`` starts at 1 per channel and rises by one per publish.  A
``subscribe`` with ``since`` returns, as :attr:`SubscribeResult.replay`,
the kept messages with ``seq > since`` in order, already framed, and
:attr:`SubscribeResult.recovered`:

- ``True``: the replay is every message after ``since``; nothing missed.
  Also when ``since`` equals the newest ``seq`` (nothing to replay).
- ``False``: messages after ``since`` were published but are no longer
  kept (``since < oldest kept seq - 1``, or the channel keeps no history);
  what is kept is still replayed.  Also ``False`` when ``since`` is *above*
  the newest ``seq``: this numbering never issued it, so the client's
  position is from before a server restart (or a forgotten idle channel)
  and it may have missed anything.  The client should resynchronise from
  its own source of truth and continue from the ``seq`` it now receives.

The session reports this in the ``ack`` of the ``subscribe``:
``{"type":"ack","id":...,"recovered":false}``.  A ``subscribe`` with
``since`` is always answered with that ``ack``, even without an ``id``
(then the ``ack`` has no ``id``), so the answer is never lost.  Why not an
``error`` (e.g. ``history_gap``)?  An ``error`` carrying the request's
``id`` tells the client the request *failed*, but the subscription
succeeded: live messages follow.  One ``ack`` with a flag says both things.

The session must send, with no ``await`` in between: the ``ack``, then
every frame of ``replay``, then return to reading.  Because the hub is
synchronous, no live message can slip in between the subscription and its
replay, so live messages follow the replay with no gap or duplicate.

Presence (SPEC §5a)
-------------------

The hub counts each channel's subscribed connections per ``sub``.  With
``join_leave = true`` it offers ``join`` to the other subscribers when a
``sub``'s first connection subscribes and ``leave`` when its last one goes
(unsubscribe, close via :meth:`Hub.drop`, or :meth:`Hub.revalidate`).
Joins and leaves have no ``seq`` and are not kept.  ``presence`` needs the
channel's subscribe permission and ``presence = true`` (else code
``presence_disabled``).  A member list holds at most ``[websocket]
max_presence_members`` entries (default 1000); past that the answer says
``"truncated": true`` and lists that many, so a channel with 100,000
members costs one bounded slice, never a walk of the whole set.

With a remote broker (``[broker] url``) the hub does not announce joins and
leaves itself: it reports each change of a ``sub``'s local connection count
to the broker (:meth:`RemoteBroker.report`), which merges the counts of
every node in Redis and sends ``join``/``leave`` through the channel's
fan-out on every node (:meth:`Hub.deliver_event`), once per event; the
``presence`` answer then comes from Redis too (``Hub.presence_async``).

Remote brokers
--------------

A remote broker needs a round trip to number a message or to read
history, so the shell uses :meth:`Hub.publish_async`,
:meth:`Hub.subscribe_async` and :meth:`Hub.presence_async` when
``hub.remote`` is true.  The in-process path is untouched: ``publish`` and
``subscribe`` stay synchronous and no coroutine is created for them.
``subscribe_async`` awaits the broker first (subscribe in Redis, read the
replay), then calls the synchronous ``subscribe`` with that replay and no
``await`` in between, so the exactness argument above still holds.

Error codes raised here as :class:`HubError` are listed with the parser's
in :mod:`realtime.ws.protocol`.
"""

from __future__ import annotations

import fnmatch
import re
import itertools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs

from realtime.broker import Broker, BrokerUnavailable, InProcessBroker, Replay
from realtime.connections import Connection, ConnectionIndex
from realtime.settings import ChannelRule, WebSocketSettings
from realtime.ws import protocol
from realtime.ws.frames import encode_text_frame

__all__ = [
    "USER_PREFIX",
    "Broker",
    "Connection",
    "ConnectionIndex",
    "Hub",
    "HubError",
    "InProcessBroker",
    "PublishResult",
    "RemoteBroker",
    "SubscribeResult",
]

USER_PREFIX = "user:"
_MISS: Any = object()
DEFAULT_PRESENCE_LIMIT = 1000


class RemoteBroker(Broker, Protocol):
    """What :class:`Hub` needs beyond :class:`Broker` from a networked broker."""

    def attach(self, hub: "Hub") -> None:
        """Called once by the hub: deliveries, events and counts come from it."""
        ...

    async def publish_async(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        """:meth:`Broker.publish` over the network; ``delivered`` counts every node."""
        ...

    async def prepare(self, channel: str, since: int | None) -> Replay:
        """Make sure ``channel`` reaches this node; return its replay.

        The replay ends at this node's delivery position for the channel
        at the moment it returns, so a synchronous ``subscribe`` right
        after it sees no gap and no duplicate.
        """
        ...

    def hold(self, channel: str) -> None:
        """Keep ``channel`` subscribed while a ``prepare`` is under way."""
        ...

    def release(self, channel: str) -> None:
        ...

    def report(self, channel: str, sub: str) -> None:
        """``sub``'s local connection count on ``channel`` changed (sync, queued)."""
        ...

    async def report_now(self, channel: str, sub: str, count: int, total: int) -> None:
        """Write ``sub``'s coming count before its subscribe is answered, so
        the ``join`` and the presence list are there when the ``ack`` is."""
        ...

    async def presence(self, channel: str, limit: int) -> tuple[list[tuple[str, int]], bool]:
        """Members across nodes, at most ``limit``, and whether cut."""
        ...


class HubError(Exception):
    """A refused subscribe, publish or presence; the connection stays open.

    ``code`` is stable (see :mod:`realtime.ws.protocol`); ``message`` is
    for people.  ``/api/publish`` maps ``forbidden`` to 403
    ``insufficient_scope``, ``unknown_channel``/``bad_channel``/
    ``bad_data`` to 400.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@attrs.frozen
class SubscribeResult:
    """The outcome of :meth:`Hub.subscribe`.

    Attributes:
        replay: frames to send before anything live, oldest first.
        recovered: see "Recovery" above; ``True`` without ``since``.
        seq: the channel's newest ``seq`` at this moment (0: none yet).
        new: ``False`` when the connection was already subscribed.
    """

    replay: list[bytes]
    recovered: bool
    seq: int
    new: bool = True


@attrs.frozen
class PublishResult:
    """``{"delivered": N, "seq": S}`` of ``/api/publish``."""

    delivered: int
    seq: int


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


_Matcher = Callable[[str], "re.Match[str] | None"]


class Hub:
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

    def _remote(self) -> RemoteBroker:
        return self.broker  # type: ignore[return-value]

    # -- rules --------------------------------------------------------------

    def _set_rules(self, rules: tuple[ChannelRule, ...], ws: WebSocketSettings) -> None:
        self.rules = tuple(rules)
        self.ws = ws
        # fnmatchcase(name, pat) is re.match(translate(pat), name); compile
        # once per reload instead of looking patterns up per call.
        self._matchers: list[tuple[_Matcher, ChannelRule]] = [
            (re.compile(fnmatch.translate(rule.pattern)).match, rule) for rule in self.rules
        ]
        self._cache.clear()

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

    def rule_for(self, channel: str) -> ChannelRule | None:
        """The first rule whose pattern matches ``channel``, or ``None``."""
        rule = self._cache.get(channel, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[no-any-return]
        rule = None
        for match, candidate in self._matchers:
            if match(channel) is not None:
                rule = candidate
                break
        # Only valid names are cached: a cache hit in _rule() skips the
        # name check.
        if protocol.channel_problem(channel, self.ws.max_channel_name) is None:
            self._remember(channel, rule)
        return rule

    def _remember(self, channel: str, rule: ChannelRule | None) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size:
            # Oldest first; clients invent names, so the cache must not grow.
            del cache[next(iter(cache))]
        cache[channel] = rule

    def _rule(self, channel: str) -> ChannelRule | None:
        """:meth:`rule_for` after checking the name (cache hits are valid)."""
        rule = self._cache.get(channel, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[no-any-return]
        problem = protocol.channel_problem(channel, self.ws.max_channel_name)
        if problem is not None:
            raise HubError("bad_channel", problem)
        return self.rule_for(channel)

    def _history_for(self, channel: str) -> int:
        rule = self.rule_for(channel)
        return 0 if rule is None else max(rule.history, 0)

    def allows_any_channel(self, scopes: frozenset[str]) -> bool:
        """May a token with ``scopes`` subscribe or publish anywhere?

        The handshake answers 403 when not (SPEC §4).  The token's own
        ``user:<sub>`` does not count, so a rule whose pattern starts with
        ``user:`` counts only through its ``publish_scope``.
        """
        for rule in self.rules:
            if rule.publish_scope is None or rule.publish_scope in scopes:
                return True
            if not rule.pattern.startswith(USER_PREFIX) and (
                rule.subscribe_scope is None or rule.subscribe_scope in scopes
            ):
                return True
        return False

    def check_subscribe(self, channel: str, sub: str, scopes: frozenset[str]) -> ChannelRule | None:
        """Raise :class:`HubError` unless ``sub`` with ``scopes`` may subscribe.

        Returns the channel's rule (``None`` only for the caller's own
        ``user:<sub>`` without a rule).  ``/api/presence`` uses it too.
        """
        rule = self._rule(channel)
        if channel.startswith(USER_PREFIX):
            if channel[len(USER_PREFIX):] != sub:
                raise HubError("forbidden", "user channels are private to their user")
            return rule
        if rule is None:
            raise HubError("unknown_channel", "no channel rule matches this name")
        scope = rule.subscribe_scope
        if scope is not None and scope not in scopes:
            raise HubError("forbidden", f"subscribing needs scope {scope}")
        return rule

    def check_publish(self, channel: str, scopes: frozenset[str]) -> ChannelRule:
        """Raise :class:`HubError` unless ``scopes`` may publish to ``channel``."""
        rule = self._rule(channel)
        if rule is None:
            if channel.startswith(USER_PREFIX):
                raise HubError("forbidden", "no channel rule allows publishing here")
            raise HubError("unknown_channel", "no channel rule matches this name")
        scope = rule.publish_scope
        if scope is not None and scope not in scopes:
            raise HubError("forbidden", f"publishing needs scope {scope}")
        return rule

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
        """:meth:`subscribe` through a remote broker (see "Remote brokers").

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

    # -- presence -----------------------------------------------------------

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
