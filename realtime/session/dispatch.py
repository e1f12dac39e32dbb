"""The client-message handlers of :class:`realtime.net.websocket.Session`
(SPEC.md §4, §5, §5a): ``subscribe``, ``unsubscribe``, ``publish``,
``refresh``, ``presence`` and ``ping``, each with the awaited twin a remote
broker needs where it has one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import trio

from realtime.hub import HubError, SubscribeResult
from realtime.tokens.keyring import TokenError
from realtime.protocol import frames
from realtime.protocol import messages as protocol
from realtime.protocol.upgrade import principal_problem

if TYPE_CHECKING:
    from realtime.session.ratelimit import RateLimiter
    from realtime.api.app import App as ServerState
    from realtime.tokens.keyring import AccessClaims


def trio_deadline(exp: float) -> float:
    """Translate an epoch ``exp`` into trio's clock."""
    return trio.current_time() + (exp - time.time())


class MessageHandlers:
    """The message side of :class:`realtime.net.websocket.Session`, a mixin:
    the session sets the attributes below and defines the methods declared
    under ``TYPE_CHECKING``; the reader calls :meth:`_on_message`."""

    __slots__ = ()  # Session's instances stay dict-less

    state: ServerState
    echo: bool
    publish_limit: RateLimiter
    _scope: trio.CancelScope
    sub: str
    client_id: str
    kid: str
    jti: str
    scopes: frozenset[str]

    if TYPE_CHECKING:
        def offer(self, frame: bytes) -> None: ...
        def withdraw(self, code: int, reason: str) -> None: ...
        def send_obj(self, payload: bytes) -> None: ...
        def _set_claims(self, claims: AccessClaims) -> None: ...
        def _aim_warning(self) -> None: ...

    def _on_message(self, whole: str | bytes) -> Awaitable[None] | None:
        """Handle one client message.  Returns an awaitable only for the
        messages a remote broker must answer (see :data:`_REMOTE_HANDLERS`);
        with the in-process broker nothing is awaited."""
        if self.echo:
            if isinstance(whole, str):
                self.offer(frames.encode_text_frame(whole.encode()))
            else:
                self.offer(frames.encode_binary_frame(whole))
            return
        if isinstance(whole, bytes):
            self.withdraw(1003, "binary messages are not accepted")
            return
        try:
            message = protocol.parse_client_message(
                whole, max_channel=self.state.settings.websocket.max_channel_name
            )
        except protocol.InvalidJSON:
            self.withdraw(1007, "invalid JSON")
            return
        except protocol.MessageError as exc:
            self.send_obj(protocol.error(exc.id, exc.code, exc.message))
            return
        if self.state.hub.remote:
            remote = _REMOTE_HANDLERS.get(type(message))
            if remote is not None:
                return remote(self, message)
        handler = _HANDLERS.get(type(message))
        if handler is None:
            self.send_obj(protocol.error(message.id, "unsupported", "not supported"))
            return None
        handler(self, message)
        return None

    def _answer(self, message_id: Any, **extra: Any) -> None:
        if message_id is not None:
            self.send_obj(protocol.ack(message_id, **extra))

    def _fail(self, message_id: Any, code: str, text: str) -> None:
        self.send_obj(protocol.error(message_id, code, text))

    def _on_ping(self, message: protocol.Ping) -> None:
        self.send_obj(protocol.pong(message.id))

    def _on_subscribe(self, message: protocol.Subscribe) -> None:
        try:
            result = self.state.hub.subscribe(self, message.channel, message.since)
        except HubError as exc:
            self._fail(message.id, exc.code, exc.message)
            return
        self._subscribed(message, result)

    async def _on_subscribe_remote(self, message: protocol.Subscribe) -> None:
        try:
            result = await self.state.hub.subscribe_async(self, message.channel, message.since)
        except HubError as exc:
            self._fail(message.id, exc.code, exc.message)
            return
        self._subscribed(message, result)

    def _subscribed(self, message: protocol.Subscribe, result: "SubscribeResult") -> None:
        # The ack tells whether `since` was fully recovered (realtime.hub docstring);
        # the replay follows it with no await in between, so no live message
        # can slip ahead of the history.
        if message.since is not None:
            self.send_obj(protocol.ack(message.id, recovered=result.recovered))
        else:
            self._answer(message.id)
        for frame in result.replay:
            self.offer(frame)

    def _on_unsubscribe(self, message: protocol.Unsubscribe) -> None:
        self.state.hub.unsubscribe(self, message.channel)
        self._answer(message.id)

    # The in-process broker answers synchronously (no coroutine on the hot
    # path); a remote one needs the awaited twin.  Both share these steps.
    def _within_publish_rate(self) -> bool:
        if self.publish_limit.allow(trio.current_time()):
            return True
        self.withdraw(4008, "publish rate limit")
        return False

    def _published(self, message: protocol.Publish, result: Any) -> None:
        self.state.metrics.publishes += 1
        self.state.metrics.deliveries += result.delivered
        self._answer(message.id, seq=result.seq)

    def _on_publish(self, message: protocol.Publish) -> None:
        if not self._within_publish_rate():
            return
        try:
            result = self.state.hub.publish(message.channel, message.data, from_sub=self.sub, scopes=self.scopes)
        except HubError as exc:
            self._fail(message.id, exc.code, exc.message)
            return
        self._published(message, result)

    async def _on_publish_remote(self, message: protocol.Publish) -> None:
        if not self._within_publish_rate():
            return
        try:
            result = await self.state.hub.publish_async(
                message.channel, message.data, from_sub=self.sub, scopes=self.scopes
            )
        except HubError as exc:
            self._fail(message.id, exc.code, exc.message)
            return
        self._published(message, result)

    def _on_refresh(self, message: protocol.Refresh) -> None:
        settings = self.state.settings
        try:
            claims = self.state.keyring.verify(
                message.token,
                issuer=settings.issuer,
                audience=settings.audience,
                leeway=settings.oauth.leeway,
                revoked=self.state.revoked,
            )
        except TokenError as exc:
            self.state.metrics.refreshes["error"] += 1
            self._fail(message.id, "invalid_token", str(exc))
            return
        if claims.sub != self.sub or claims.client_id != self.client_id:
            self._fail(message.id, "invalid_token", "token is for another subject or client")
            return
        problem = principal_problem(claims, settings)
        if problem is not None:
            self._fail(message.id, "invalid_token", problem)
            return
        old = (self.sub, self.client_id, self.kid, self.jti)
        self._set_claims(claims)
        self.state.hub.connections.reindex(self, *old)
        self._scope.deadline = trio_deadline(claims.exp)
        self._aim_warning()
        self.state.metrics.refreshes["ok"] += 1
        self.send_obj(protocol.refreshed(claims.exp, message.id))
        # The new token may hold fewer scopes: drop what it no longer allows.
        for _conn, channel in self.state.hub.revalidate(self):
            self.send_obj(protocol.error(None, "subscription_revoked", f"token no longer allows {channel}"))

    def _on_presence(self, message: protocol.Presence) -> None:
        hub = self.state.hub
        try:
            members, truncated = hub.presence_page(message.channel, sub=self.sub, scopes=self.scopes)
        except HubError as exc:
            self._fail(message.id, exc.code, exc.message)
            return
        self.send_obj(presence_answer(self.state, message.channel, members, truncated, message.id))

    async def _on_presence_remote(self, message: protocol.Presence) -> None:
        try:
            members, truncated = await self.state.hub.presence_async(
                message.channel, sub=self.sub, scopes=self.scopes
            )
        except HubError as exc:
            self._fail(message.id, exc.code, exc.message)
            return
        self.send_obj(presence_answer(self.state, message.channel, members, truncated, message.id))


def presence_answer(
    state: "ServerState", channel: str, members: list[tuple[str, int]], truncated: bool, mid: Any = None
) -> bytes:
    """The ``presence`` object (SPEC §5a), with each user's ``display_name``."""
    users = state.settings.users
    listed = [
        (sub, count, users[sub].display_name if sub in users else None) for sub, count in members
    ]
    return protocol.presence(channel, listed, mid, truncated)


_HANDLERS = {
    protocol.Ping: MessageHandlers._on_ping,
    protocol.Subscribe: MessageHandlers._on_subscribe,
    protocol.Unsubscribe: MessageHandlers._on_unsubscribe,
    protocol.Publish: MessageHandlers._on_publish,
    protocol.Refresh: MessageHandlers._on_refresh,
    protocol.Presence: MessageHandlers._on_presence,
}

# Used instead when a remote broker is configured (hub.remote): these await
# the broker, so the reader awaits them (one at a time per connection,
# which also keeps a connection's publishes in order).
_REMOTE_HANDLERS = {
    protocol.Subscribe: MessageHandlers._on_subscribe_remote,
    protocol.Publish: MessageHandlers._on_publish_remote,
    protocol.Presence: MessageHandlers._on_presence_remote,
}
