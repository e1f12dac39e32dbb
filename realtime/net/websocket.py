"""One WebSocket connection after the 101: the trio shell (DESIGN.md §1).

The token's ``exp`` *is* the session's cancel-scope deadline.  Whoever
ends a session first sets ``close_code`` and then cancels the scope, so the
one ``finally`` in :meth:`Session.run` sends the right close frame:

- deadline passed with no refresh       → 4001
- :meth:`withdraw` (revoked, removed…)  → its code (4003, 4008, 4009, 1001…)
- the peer closed, or broke the protocol → echo / 1002 / 1007 / 1009

Outbound frames go through :meth:`offer`, which is synchronous: the hub
calls it for every subscriber without awaiting (DESIGN.md §4).

What each client message does is in :mod:`realtime.session.dispatch`, whose
:class:`~realtime.session.dispatch.MessageHandlers` this class inherits.
"""

from __future__ import annotations

import itertools
import math
import logging
from typing import TYPE_CHECKING

import trio
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from realtime.session.ratelimit import RateLimiter
from realtime.tokens.keyring import AccessClaims
from realtime.net.transport import BacklogOverflow, Transport, TransportClosed
from realtime.protocol import frames
from realtime.protocol import messages as protocol
from realtime.net.cork import CORK
from realtime.session.dispatch import MessageHandlers, trio_deadline
from realtime.session.dispatch import presence_answer  # noqa: F401  (realtime.api imports it from here)

if TYPE_CHECKING:
    from realtime.api.app import App as ServerState

log = logging.getLogger("realtime.ws")

ABORT = 1006  # never sent on the wire: the peer is gone, just drop the socket
CLOSE_WAIT = 2.0  # how long we wait for the peer's close frame after ours
_ids = itertools.count(1)


class Session(MessageHandlers):
    """Implements the hub's ``Connection`` protocol for one socket."""

    # Thousands live at once: slots instead of a per-instance dict.
    __slots__ = (
        "conn_id", "transport", "state", "echo", "ws", "publish_limit", "close_code", "close_reason",
        "peer_close", "_parse_failed", "_scope", "_nursery", "_writer_running", "_writer_wanted", "_timer",
        "_partial", "_held", "_warn_at", "_ping_at", "_pong_due", "claims", "sub", "client_id", "kid", "jti", "scopes", "exp",
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
        self._held: list[bytes] | None = None  # frames kept while the cork is held (ws/cork.py)
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
        if CORK.active:
            held = self._held
            if held is None:
                self._held = [frame]
                CORK.held.append(self)
            else:
                held.append(frame)
            return
        try:
            self.transport.write(frame)
        except (BacklogOverflow, TransportClosed) as exc:
            self._write_failed(exc)

    def release_held(self) -> None:
        """Write the frames kept under the cork as one chunk.  They were
        accepted before any withdraw in the same batch (an ack before a
        4008), so they go out even if the session is closing now."""
        held, self._held = self._held, None
        if not held:
            return
        try:
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))
        except (BacklogOverflow, TransportClosed) as exc:
            self._write_failed(exc)

    def _write_failed(self, exc: Exception) -> None:
        if isinstance(exc, BacklogOverflow):
            # Keep the backlog: it may start with the tail of a frame the
            # kernel has half sent (and on TLS every queued byte belongs to
            # the record stream), so dropping it would garble the stream
            # and the client could never read the 4009 close frame that
            # _close queues after it.  The backlog ends on a frame boundary:
            # the frame that overflowed it was queued whole.
            self.withdraw(4009, "slow consumer")
        else:
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
            events = list(self.ws.events())
            # Several messages in one read: hold their frames and write each
            # recipient's share as one chunk (ws/cork.py).
            corked = len(events) > 1 and CORK.hold()
            try:
                for event in events:
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
                                if corked:  # never hold frames across an await
                                    CORK.release()
                                    corked = False
                                await pending
                            if self.close_code is not None:
                                return False
                    elif isinstance(event, Ping):
                        # The whole read is parsed before it is handled, so a
                        # Close later in it has already moved wsproto on: a
                        # closing connection need not answer pings (RFC 6455
                        # §5.5.2 asks for a Pong only "as soon as practical").
                        if self.ws.state is ConnectionState.OPEN:
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
            finally:
                if corked:
                    CORK.release()


def _utf8_size(text: str) -> int:
    # Cheap bound first: most messages are far below the limit.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))

