"""What each client message does (SPEC.md §4, §5, §5a), without I/O.

:class:`Dispatcher` takes one whole client message, the session it came on
(:class:`Peer`: its identity, its publish bucket, and the hub
``Connection`` the hub files it under), the server's services
(:class:`App`) and ``now`` on the session's timer clock, and returns a
:class:`Reply`: the frames for this client, an optional :class:`Close`,
and the new claims after a good ``refresh``.  The trio shell
(:mod:`realtime.net.websocket`) only reads, writes and keeps time; how
the shell turns a ``Reply`` into writes and deadlines is its business.

Why a value out instead of writing through the session: every decision is
visible in one place and testable without a socket (h11's ``Connection``
returns bytes rather than sending them).  What does change during a call is
the state the decision is about: the hub's tables (subscribe,
unsubscribe, publish), the publish bucket, and on a good ``refresh`` the
peer's identity (:meth:`Peer.adopt`), the hub's index and the
subscriptions the new scopes no longer allow; never the socket or the
clock.  The hub still calls the peer's
``offer`` during a call (a publish reaching its own publisher, a ``join``
on subscribe); those frames go out before the ``Reply``'s, which is the
order the client has always seen (the message, then the ``ack``).

The dispatcher holds nothing: one instance serves every session of every
server, so it costs an idle socket no memory.  It imports no trio.  With a
remote broker (``hub.remote``) ``subscribe``, ``publish`` and ``presence``
need a round trip: :meth:`Dispatcher.receive` then returns a coroutine the
shell awaits (one at a time per connection, which keeps a connection's
publishes in order).  The in-process broker answers synchronously, so
the hot path builds no coroutine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from realtime.hub import Connection, HubError, SubscribeResult
from realtime.protocol import frames
from realtime.protocol import messages
from realtime.protocol import replies
from realtime.protocol.close import BINARY_REFUSED, RATE_LIMITED, Close, CloseCode
from realtime.session.refresh import Refused
from realtime.session.refresh import refresh as refresh_session
from realtime.tokens.keyring import AccessClaims

if TYPE_CHECKING:
    from realtime.config.settings import Settings
    from realtime.hub import Hub, PublishResult
    from realtime.session.ratelimit import RateLimiter
    from realtime.tokens.keyring import KeyRing, RevokedSet

__all__ = ["App", "MESSAGE_RATE_LIMITED", "Metrics", "Peer", "Reply", "Dispatcher", "presence_answer"]

#: Past ``[websocket] message_rate``: any client message counts, so
#: subscribe/unsubscribe churn (join/leave to every listener) is bounded
#: like publishing is.
MESSAGE_RATE_LIMITED = Close(CloseCode.RATE_LIMITED, "message rate limit")


class Metrics(Protocol):
    """The counters a message moves (``/metrics``)."""

    messages_in: int
    publishes: int
    deliveries: int
    refreshes: Counter[str]


class App(Protocol):
    """The server's services, as a session sees them.  ``settings`` is
    read on every message: a reload replaces it whole.  (Read-only
    properties, so any object that has these attributes fits.)"""

    @property
    def settings(self) -> Settings: ...
    @property
    def keyring(self) -> KeyRing: ...
    @property
    def revoked(self) -> RevokedSet: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def metrics(self) -> Metrics: ...


class Peer(Connection, Protocol):
    """The session a message came on: the hub's ``Connection`` (identity
    fields and ``offer``), plus what the dispatcher reads and changes."""

    echo: bool  # the conformance echo endpoint: messages come straight back
    publish_limit: RateLimiter
    message_limit: RateLimiter  # every client message ([websocket] message_rate)

    def adopt(self, claims: AccessClaims) -> None:
        """Take a refreshed token's identity (``sub`` ... ``scopes``, ``exp``)."""
        ...


@attrs.define
class Reply:
    """What to do after one client message.

    Attributes:
        frames: prepared frames for this client, in order.
        close: end the session so, after writing ``frames``.
        claims: a good ``refresh``'s token: the session's deadline moves to
            its ``exp`` (the peer has already adopted it).
    """

    frames: list[bytes] = attrs.Factory(list)
    close: Close | None = None
    claims: AccessClaims | None = None


def _text(payload: bytes) -> Reply:
    return Reply([frames.encode_text_frame(payload)])


def _refused(mid: replies.MessageId, code: str, text: str) -> Reply:
    return _text(replies.error(mid, code, text))


def _answered(mid: replies.MessageId, **extra: Any) -> Reply:
    """The ``ack`` when the message had an ``id``; nothing otherwise."""
    return Reply() if mid is None else _text(replies.ack(mid, **extra))


_Handler = Callable[["Dispatcher", Any, Peer, App, float], Reply]
_RemoteHandler = Callable[["Dispatcher", Any, Peer, App, float], Coroutine[Any, Any, Reply]]


class Dispatcher:
    """Client message in, :class:`Reply` out.  Stateless; see the module."""

    __slots__ = ()

    def receive(self, data: str | bytes, peer: Peer, app: App, now: float) -> Reply | Awaitable[Reply]:
        """Handle one whole client message.

        Args:
            data: the whole message (text or binary) as protocol/ws_reader.py assembled it.
            peer: the session it came on.
            app: the server's services.
            now: the session's timer clock (for the rate limits).

        Returns:
            A :class:`Reply`, or, only for what a remote broker must answer,
            an awaitable of one.
        """
        app.metrics.messages_in += 1
        if peer.echo:
            if isinstance(data, str):
                return _text(data.encode())
            return Reply([frames.encode_binary_frame(data)])
        if not peer.message_limit.allow(now):
            return Reply(close=MESSAGE_RATE_LIMITED)
        if isinstance(data, bytes):
            return Reply(close=BINARY_REFUSED)
        try:
            message = messages.parse_client_message(data, max_channel=app.settings.websocket.max_channel_name)
        except messages.InvalidJSON as exc:
            return Reply(close=exc.close())
        except messages.MessageError as exc:
            return _refused(exc.id, exc.code, exc.message)
        if app.hub.remote:
            remote = _REMOTE_HANDLERS.get(type(message))
            if remote is not None:
                return remote(self, message, peer, app, now)
        handler = _HANDLERS.get(type(message))
        if handler is None:
            return _refused(message.id, "unsupported", "not supported")
        return handler(self, message, peer, app, now)

    # -- ping, subscribe, unsubscribe ------------------------------------------
    def ping(self, message: messages.Ping, peer: Peer, app: App, now: float) -> Reply:
        return _text(replies.pong(message.id))

    def subscribe(self, message: messages.Subscribe, peer: Peer, app: App, now: float) -> Reply:
        try:
            result = app.hub.subscribe(peer, message.channel, message.since)
        except HubError as exc:
            return _refused(message.id, exc.code, exc.message)
        return self._subscribed(message, result)

    async def subscribe_remote(self, message: messages.Subscribe, peer: Peer, app: App, now: float) -> Reply:
        try:
            result = await app.hub.subscribe_async(peer, message.channel, message.since)
        except HubError as exc:
            return _refused(message.id, exc.code, exc.message)
        return self._subscribed(message, result)

    @staticmethod
    def _subscribed(message: messages.Subscribe, result: SubscribeResult) -> Reply:
        # The ack tells whether `since` was fully recovered (realtime.hub
        # docstring); the replay follows it in the same Reply, with no await
        # in between, so no live message can slip ahead of the history.
        if message.since is not None:
            reply = _text(replies.ack(message.id, recovered=result.recovered))
        else:
            reply = _answered(message.id)
        reply.frames.extend(result.replay)
        return reply

    def unsubscribe(self, message: messages.Unsubscribe, peer: Peer, app: App, now: float) -> Reply:
        app.hub.unsubscribe(peer, message.channel)
        return _answered(message.id)

    # -- publish: the in-process broker answers at once; a remote one needs
    # the awaited twin.  Both share the rate check and the accounting.
    def publish(self, message: messages.Publish, peer: Peer, app: App, now: float) -> Reply:
        if not peer.publish_limit.allow(now):
            return Reply(close=RATE_LIMITED)
        try:
            result = app.hub.publish(message.channel, message.data, from_sub=peer.sub, scopes=peer.scopes)
        except HubError as exc:
            return _refused(message.id, exc.code, exc.message)
        return self._published(message, result, app)

    async def publish_remote(self, message: messages.Publish, peer: Peer, app: App, now: float) -> Reply:
        if not peer.publish_limit.allow(now):
            return Reply(close=RATE_LIMITED)
        try:
            result = await app.hub.publish_async(message.channel, message.data, from_sub=peer.sub, scopes=peer.scopes)
        except HubError as exc:
            return _refused(message.id, exc.code, exc.message)
        return self._published(message, result, app)

    @staticmethod
    def _published(message: messages.Publish, result: PublishResult, app: App) -> Reply:
        app.metrics.publishes += 1
        app.metrics.deliveries += result.delivered
        return _answered(message.id, seq=result.seq)

    # -- refresh -----------------------------------------------------------------
    def refresh(self, message: messages.Refresh, peer: Peer, app: App, now: float) -> Reply:
        """SPEC §4: "replace the connection's token (same ``sub`` and
        ``client_id``); moves its deadline" (the rule: :mod:`realtime.session.refresh`)."""
        outcome = refresh_session(message.token, peer, app)
        if isinstance(outcome, Refused):
            return _refused(message.id, outcome.code, outcome.message)
        reply = _text(replies.refreshed(outcome.claims.exp, message.id))
        reply.claims = outcome.claims
        for channel in outcome.lost:
            reply.frames.append(frames.encode_text_frame(
                replies.error(None, "subscription_revoked", f"token no longer allows {channel}")))
        return reply

    # -- presence ----------------------------------------------------------------
    def presence(self, message: messages.Presence, peer: Peer, app: App, now: float) -> Reply:
        try:
            members, truncated = app.hub.presence_page(message.channel, sub=peer.sub, scopes=peer.scopes)
        except HubError as exc:
            return _refused(message.id, exc.code, exc.message)
        return _text(presence_answer(app, message.channel, members, truncated, message.id))

    async def presence_remote(self, message: messages.Presence, peer: Peer, app: App, now: float) -> Reply:
        try:
            members, truncated = await app.hub.presence_async(message.channel, sub=peer.sub, scopes=peer.scopes)
        except HubError as exc:
            return _refused(message.id, exc.code, exc.message)
        return _text(presence_answer(app, message.channel, members, truncated, message.id))


class _HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


def presence_answer(
    app: _HasSettings, channel: str, members: list[tuple[str, int]], truncated: bool, mid: Any = None
) -> bytes:
    """The ``presence`` object (SPEC §5a), with each user's ``display_name``.

    Shared with ``GET /api/presence``, which answers the same object.
    """
    users = app.settings.users
    listed = [(sub, count, users[sub].display_name if sub in users else None) for sub, count in members]
    return replies.presence(channel, listed, mid, truncated)


_HANDLERS: dict[type, _Handler] = {
    messages.Ping: Dispatcher.ping,
    messages.Subscribe: Dispatcher.subscribe,
    messages.Unsubscribe: Dispatcher.unsubscribe,
    messages.Publish: Dispatcher.publish,
    messages.Refresh: Dispatcher.refresh,
    messages.Presence: Dispatcher.presence,
}

# Used instead when a remote broker is configured (hub.remote).
_REMOTE_HANDLERS: dict[type, _RemoteHandler] = {
    messages.Subscribe: Dispatcher.subscribe_remote,
    messages.Publish: Dispatcher.publish_remote,
    messages.Presence: Dispatcher.presence_remote,
}
