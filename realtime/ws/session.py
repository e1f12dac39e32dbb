"""One WebSocket connection after the 101: the trio shell (DESIGN.md §1).

The token's ``exp`` *is* the session's cancel-scope deadline.  Whoever
ends a session first sets ``close_code`` and then cancels the scope, so the
one ``finally`` in :meth:`Session.run` sends the right close frame:

- deadline passed with no refresh       → 4001
- :meth:`withdraw` (revoked, removed…)  → its code (4003, 4008, 4009, 1001…)
- the peer closed, or broke the protocol → echo / 1002 / 1007 / 1009

Outbound frames go through :meth:`offer`, which is synchronous: the hub
calls it for every subscriber without awaiting (DESIGN.md §4).
"""

from __future__ import annotations

import itertools
import math
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import trio
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from realtime.ratelimit import RateLimiter
from realtime.tokens import AccessClaims, TokenError
from realtime.transport import BacklogOverflow, Transport, TransportClosed
from realtime.hub import HubError, SubscribeResult
from realtime.ws import frames, protocol
from realtime.ws.upgrade import principal_problem

if TYPE_CHECKING:
    from realtime.state import ServerState

log = logging.getLogger("realtime.ws")

ABORT = 1006  # never sent on the wire: the peer is gone, just drop the socket
CLOSE_WAIT = 2.0  # how long we wait for the peer's close frame after ours
_ids = itertools.count(1)


def trio_deadline(exp: float) -> float:
    """Translate an epoch ``exp`` into trio's clock."""
    return trio.current_time() + (exp - time.time())


class Session:
    """Implements the hub's ``Connection`` protocol for one socket."""

    # Thousands live at once: slots instead of a per-instance dict.
    __slots__ = (
        "conn_id", "transport", "state", "echo", "ws", "publish_limit", "close_code", "close_reason",
        "peer_close", "_parse_failed", "_scope", "_nursery", "_writer_running", "_writer_wanted", "_timer",
        "_partial", "_warn_at", "_ping_at", "_pong_due", "claims", "sub", "client_id", "kid", "jti", "scopes", "exp",
    )

    def __init__(
        self,
        transport: Transport,
        claims: AccessClaims,
        state: "ServerState",
        *,
        trailing_data: bytes = b"",
        echo: bool = False,
    ) -> None:
        self.conn_id = next(_ids)
        self.transport = transport
        self.state = state
        self.echo = echo
        self._set_claims(claims)
        ws = state.settings.websocket
        self.ws = WSConnection(ConnectionType.SERVER, trailing_data=trailing_data)
        self.publish_limit = RateLimiter.from_spec(ws.publish_rate)
        self.close_code: int | None = None
        self.close_reason = ""
        self.peer_close: CloseConnection | None = None
        self._parse_failed = False
        self._scope = trio.CancelScope()
        # The writer task's nursery opens only when a backlog first appears:
        # a nursery and its cancel scope cost ~1 KB per idle socket.
        self._nursery: trio.Nursery | None = None
        self._writer_running = False
        self._writer_wanted = False
        self._timer: trio.CancelScope | None = None  # the reader's receive deadline
        self._partial: tuple[list[str | bytes], int] | None = None  # a message cut by that hand-over
        # Timers live in the reader's receive deadline, not in tasks of their
        # own: a task per idle socket costs memory and handshake time.
        self._warn_at = math.inf  # trio time to send token_expiring
        self._ping_at = math.inf  # trio time to send the next keep-alive ping
        self._pong_due = math.inf  # trio time by which the peer must have spoken

    # -- identity (read by the hub's indexes) --------------------------------
    def _set_claims(self, claims: AccessClaims) -> None:
        self.claims = claims
        self.sub = claims.sub
        self.client_id = claims.client_id
        self.kid = claims.kid
        self.jti = claims.jti
        self.scopes = claims.scope
        self.exp = claims.exp

    # -- the hub-facing, synchronous side -------------------------------------
    def offer(self, frame: bytes) -> None:
        """Queue one prepared frame; never blocks, never awaits."""
        if self.close_code is not None:
            return
        try:
            self.transport.write(frame)
        except BacklogOverflow:
            # Keep the backlog: it may start with the tail of a frame the
            # kernel has half sent (and on TLS every queued byte belongs to
            # the record stream), so dropping it would garble the stream
            # and the client could never read the 4009 close frame that
            # _close queues after it.  The backlog ends on a frame boundary:
            # the frame that overflowed it was queued whole.
            self.withdraw(4009, "slow consumer")
        except TransportClosed:
            self.withdraw(ABORT, "connection lost")

    def withdraw(self, code: int, reason: str) -> None:
        """End this session with ``code`` (first caller wins)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self._scope.cancel()

    def _start_writer(self) -> None:
        if self._writer_running:
            return
        if self._nursery is not None:
            self._writer_running = True
            self._nursery.start_soon(self._writer)
        elif not self._writer_wanted:
            # No nursery yet: ask the reader to step out so run() opens one.
            self._writer_wanted = True
            if self._timer is not None:
                self._timer.cancel()

    async def _writer(self) -> None:
        try:
            while self.transport.backlog_bytes:
                await self.transport.drain()
        except TransportClosed:
            self.withdraw(ABORT, "connection lost")
        finally:
            self._writer_running = False

    def send_obj(self, payload: bytes) -> None:
        """Send one JSON message (already encoded) to this client only."""
        self.offer(frames.encode_text_frame(payload))

    # -- lifecycle --------------------------------------------------------------
    async def run(self) -> None:
        hub = self.state.hub
        hub.connections.add(self)
        self.transport.on_backlog = self._start_writer
        try:
            self._scope.deadline = trio_deadline(self.exp)
            with self._scope:
                if not self.echo:
                    self.send_obj(protocol.welcome(self.sub, self.exp))
                self._aim_warning()
                interval = self.state.settings.websocket.ping_interval
                if interval > 0:
                    self._ping_at = trio.current_time() + interval
                if await self._reader():  # it stepped out: a backlog needs the writer
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self._writer_running = True
                        nursery.start_soon(self._writer)
                        await self._reader()
                        nursery.cancel_scope.cancel()
            if self.close_code is None and self._scope.cancelled_caught:
                self.close_code, self.close_reason = 4001, "token expired"
        finally:
            self._nursery = None
            hub.drop(self)
            await self._close()

    async def _close(self) -> None:
        code = self.close_code if self.close_code is not None else 1000
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_WAIT):
                try:
                    if code != ABORT and not self.transport.closed:
                        reply = self.peer_close
                        if reply is not None and code == 1000:
                            code = reply.code if reply.code not in (1005, 1006) else 1000
                        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                            # A slow consumer's backlog is already past its
                            # limit: let the close frame join it, not fail.
                            self.transport.max_backlog = max(
                                self.transport.max_backlog, self.transport.backlog_bytes + 512
                            )
                            self.transport.write(
                                self.ws.send(CloseConnection(code=code, reason=self.close_reason[:100]))
                            )
                        await self.transport.drain()
                        if self._parse_failed:
                            # wsproto's parser is dead after a protocol error
                            # and would never see the peer's close: RFC 6455
                            # §7.1.7 "Fail the WebSocket Connection" — our close
                            # is out, so half-close and drop what still comes.
                            await self.transport.linger_close(CLOSE_WAIT)
                        elif self.ws.state is ConnectionState.LOCAL_CLOSING:
                            await self._await_peer_close()
                except (TransportClosed, BacklogOverflow):
                    pass
            self.transport.close()
        self.state.metrics.closes[code] += 1
        log.debug("ws %d closed code=%s reason=%s", self.conn_id, code, self.close_reason)

    async def _await_peer_close(self) -> None:
        while self.ws.state is not ConnectionState.CLOSED:
            data = await self.transport.receive_some()
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, CloseConnection):
                    return

    # -- timers -----------------------------------------------------------------
    def _aim_warning(self) -> None:
        """``token_expiring`` goes out at ``exp - expiry_warning``."""
        self._warn_at = self._scope.deadline - self.state.settings.websocket.expiry_warning

    def _on_timer(self, now: float) -> None:
        """The reader's receive deadline passed: run whichever timer is due."""
        ws = self.state.settings.websocket
        if now >= self._pong_due:
            # A peer that sent nothing at all for pong_timeout after a ping
            # is gone (a pulled cable): free its slot without a handshake.
            self.withdraw(ABORT, "ping timeout")
            return
        if now >= self._warn_at:
            self._warn_at = math.inf  # once per deadline; a refresh re-aims it
            self.send_obj(protocol.token_expiring(self.exp))
        if now >= self._ping_at:
            self.offer(frames.encode_ping_frame(b"rt"))
            self._ping_at = now + ws.ping_interval
            if self._pong_due == math.inf:
                self._pong_due = now + ws.pong_timeout

    async def _reader(self) -> bool:
        """Read and handle client messages until the session ends (False),
        or until a backlog first needs the writer task and there is no
        nursery for it yet (True: run() opens one and calls again)."""
        max_bytes = self.state.settings.websocket.max_message_bytes
        parts, size = self._partial or ([], 0)
        self._partial = None
        while True:
            if self._writer_wanted and self._nursery is None:
                self._partial = (parts, size) if parts else None
                return True
            with trio.move_on_at(min(self._warn_at, self._ping_at, self._pong_due)) as timer:
                self._timer = timer
                try:
                    data = await self.transport.receive_some()
                except TransportClosed:
                    data = b""
            self._timer = None
            if timer.cancelled_caught:
                if self._writer_wanted and self._nursery is None:
                    continue  # handed over above; a due timer fires on the next pass
                self._on_timer(trio.current_time())
                if self.close_code is not None:
                    return False
                continue
            self._pong_due = math.inf  # any bytes at all prove the peer is alive
            self.ws.receive_data(data if data else None)
            for event in self.ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    chunk = event.data
                    size += _utf8_size(chunk) if isinstance(chunk, str) else len(chunk)
                    if size > max_bytes:
                        self.withdraw(1009, "message too big")
                        return False
                    parts.append(chunk)
                    if event.message_finished:
                        whole = "".join(parts) if isinstance(chunk, str) else b"".join(parts)  # type: ignore[arg-type]
                        parts, size = [], 0
                        self.state.metrics.messages_in += 1
                        pending = self._on_message(whole)
                        if pending is not None:  # a remote broker's round trip
                            await pending
                        if self.close_code is not None:
                            return False
                elif isinstance(event, Ping):
                    self.transport.write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if not data:
                        self.withdraw(ABORT, "connection lost")
                    elif self.ws.state is ConnectionState.REMOTE_CLOSING:
                        self.peer_close = event
                    else:  # wsproto found a protocol error (1002, 1007, ...)
                        self._parse_failed = True
                        self.withdraw(event.code, event.reason or "protocol error")
                    return False
                elif isinstance(event, Pong):
                    pass

    # -- messages ---------------------------------------------------------------
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


def _utf8_size(text: str) -> int:
    # Cheap bound first: most messages are far below the limit.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


_HANDLERS = {
    protocol.Ping: Session._on_ping,
    protocol.Subscribe: Session._on_subscribe,
    protocol.Unsubscribe: Session._on_unsubscribe,
    protocol.Publish: Session._on_publish,
    protocol.Refresh: Session._on_refresh,
    protocol.Presence: Session._on_presence,
}

# Used instead when a remote broker is configured (hub.remote): these await
# the broker, so the reader awaits them (one at a time per connection,
# which also keeps a connection's publishes in order).
_REMOTE_HANDLERS = {
    protocol.Subscribe: Session._on_subscribe_remote,
    protocol.Publish: Session._on_publish_remote,
    protocol.Presence: Session._on_presence_remote,
}
