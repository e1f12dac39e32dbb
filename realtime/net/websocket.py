"""One WebSocket connection after the 101: the trio shell (DESIGN.md §1).

The token's ``exp`` *is* the session's cancel-scope deadline.  Whoever
ends a session first sets ``close_code`` and then cancels the scope, so the
one ``finally`` in :meth:`Session.run` sends the right close frame
(:mod:`realtime.net.websocket_close`):

- deadline passed with no refresh       → 4001
- :meth:`withdraw` (revoked, removed…)  → its code (4003, 4008, 4009, 1001…)
- the peer closed, or broke the protocol → echo / 1002 / 1007 / 1009

(The codes are :class:`realtime.protocol.close.CloseCode`.)

Outbound frames go through :meth:`offer`, which is synchronous: the hub
calls it for every subscriber without awaiting (DESIGN.md §4).

What each client message does is decided by the sans-I/O
:class:`~realtime.session.dispatch.Dispatcher`, which the session holds
(one, stateless, for every session): the session hands it each whole
message and applies the :class:`~realtime.session.dispatch.Reply` it gets
back.  This shell only reads, writes and keeps time, on an injected
:class:`~realtime.session.clock.Clock`
(:class:`~realtime.net.trio_clock.TrioClock` by default), so tests drive
every timer with trio's ``autojump_clock``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import trio

from realtime.net.transport import Transport
from realtime.net.transport_errors import BacklogOverflow, TransportClosed
from realtime.net.trio_clock import TRIO_CLOCK
from realtime.net.websocket_close import EVENTS_PER_CHECKPOINT, close_session
from realtime.protocol import frames
from realtime.protocol import replies
from realtime.protocol.close import CloseCode, CloseError
from realtime.protocol.ws_reader import CloseReceived, ConnectionState, Message, Ping, Pong, WsReader
from realtime.session.clock import Clock
from realtime.session.dispatch import Dispatcher, Reply
from realtime.session.identity import TokenIdentity
from realtime.session.ratelimit import RateLimiter
from realtime.session.timers import Timers
from realtime.tokens.keyring import AccessClaims

if TYPE_CHECKING:
    from realtime.api.app import App

__all__ = ["Session", "next_conn_id"]

#: Connection ids, unique in the process across transports (the hub keys
#: its tables by them; SSE streams draw from the same counter).
next_conn_id = itertools.count(1).__next__


class Session(TokenIdentity):
    """Implements the hub's ``Connection`` protocol for one socket, and the
    dispatcher's :class:`~realtime.session.dispatch.Peer`."""

    # Thousands live at once: slots instead of a per-instance dict.
    __slots__ = (
        "conn_id", "transport", "state", "clock", "echo", "reader", "_publish_limit", "_message_limit", "close_code",
        "close_reason", "peer_close", "deadline", "_scope", "_asking", "_nursery", "_writer_running", "_writer_wanted",
        "_room", "timers", "connected_at",
    )

    #: Stateless and shared: composing it costs an idle socket nothing.
    dispatcher = Dispatcher()

    def __init__(
        self,
        transport: Transport,
        claims: AccessClaims,
        state: "App",
        *,
        trailing_data: bytes = b"",
        echo: bool = False,
        clock: Clock = TRIO_CLOCK,
    ) -> None:
        self.conn_id = next_conn_id()
        self.transport = transport
        self.connected_at = int(time.time())  # for the server API's connection list (SPEC §11)
        self.state = state
        self.clock = clock
        self.echo = echo
        self.adopt(claims)
        # Client frames in (RFC 6455 §5), and the close handshake's state.
        self.reader = WsReader()
        self.reader.receive_data(trailing_data)  # frames sent with the upgrade request
        # The rate buckets are made when first needed: most sockets only
        # listen, and the two cost an idle one ~0.2 KB.
        self._publish_limit: RateLimiter | None = None
        self._message_limit: RateLimiter | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.peer_close: CloseReceived | None = None
        self.deadline = math.inf  # the token's exp on the timer clock, set by run()
        # The reader's wait, the one cancel scope an idle session keeps: its
        # deadline is the token's or the next timer's, whichever is first,
        # and withdraw() cancels it (a scope of its own for the whole
        # session would cost every idle socket another ~0.7 KB).
        self._scope: trio.CancelScope | None = None
        self._asking: trio.CancelScope | None = None  # waiting for a remote broker's answer
        # The writer task's nursery opens only when a backlog first appears:
        # a nursery and its cancel scope cost ~1 KB per idle socket.
        self._nursery: trio.Nursery | None = None
        self._writer_running = False
        self._writer_wanted = False
        # Set by the writer when paced answers have drained enough for the
        # reader, which stopped reading messages, to go on (see _reader).
        self._room: trio.Event | None = None
        # Timers live in the reader's receive deadline, not in tasks of their
        # own: a task per idle socket costs memory and handshake time.
        self.timers = Timers()

    @property
    def remote(self) -> str:
        """The peer's address, for the server API's connection list (SPEC §11)."""
        return "%s:%d" % self.transport.peer()

    @property
    def publish_limit(self) -> RateLimiter:
        """The ``publish_rate`` bucket (full at the first publish, as at connect)."""
        limit = self._publish_limit
        if limit is None:
            limit = self._publish_limit = RateLimiter.from_spec(self.state.settings.websocket.publish_rate)
        return limit

    @property
    def message_limit(self) -> RateLimiter:
        """The ``message_rate`` bucket every client message passes."""
        limit = self._message_limit
        if limit is None:
            ws = self.state.settings.websocket
            limit = self._message_limit = RateLimiter.for_messages(ws.message_rate, ws.max_subscriptions)
        return limit

    # -- the hub-facing, synchronous side -------------------------------------
    def offer(self, frame: bytes) -> None:
        """Queue one prepared frame; never blocks, never awaits.

        Charged to the slow-consumer limit (``max_backlog_bytes``): fan-out
        and everything else the peer did not ask for in the message being
        handled.
        """
        # _write inlined: this is the fan-out's hot loop, one call per delivery.
        if self.close_code is None:
            try:
                self.transport.write(frame)
            except (BacklogOverflow, TransportClosed) as exc:
                self._write_failed(exc)

    def _write(self, frame: bytes, *, charged: bool) -> None:
        # The transport keeps the frame until the end of this scheduling
        # pass (net/cork.py): what is written before a withdraw in the same
        # pass (an ack before a 4008) still goes out, before the close frame.
        if self.close_code is not None:
            return
        try:
            self.transport.write(frame, charged=charged)
        except (BacklogOverflow, TransportClosed) as exc:
            self._write_failed(exc)

    def _write_failed(self, exc: BacklogOverflow | TransportClosed) -> None:
        # Each error names its close (4009 slow consumer, or 1006: the peer
        # is gone).  On overflow, _close drops the queued frames not started
        # yet and sends the 4009 after what is already on the wire, so a
        # peer that reads, however slowly, learns why it was dropped and
        # can come back with `since`.
        self.withdraw(exc.close_code, exc.close_reason)

    def withdraw(self, code: int, reason: str) -> None:
        """End this session with ``code`` (first caller wins)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        for waiting in (self._scope, self._asking):  # whatever the reader waits on
            if waiting is not None:
                waiting.cancel()

    def _start_writer(self) -> None:
        if self._writer_running:
            return
        if self._nursery is not None:
            self._writer_running = True
            self._nursery.start_soon(self._writer)
        elif not self._writer_wanted:
            # No nursery yet: ask the reader to step out so run() opens one.
            self._writer_wanted = True
            if self._scope is not None:
                self._scope.cancel()

    async def _writer(self) -> None:
        transport = self.transport
        try:
            while transport.backlog_bytes:
                if await transport.send_some():
                    # The peer's TCP takes our bytes: it is alive even if a
                    # long paced answer keeps its own pong queued behind.
                    self.timers.heard()
                    room = self._room
                    if room is not None and transport.paced_bytes <= transport.max_backlog:
                        room.set()
        except TransportClosed as exc:
            self.withdraw(exc.close_code, exc.close_reason)
        finally:
            self._writer_running = False
            if self._room is not None:
                self._room.set()

    def send_obj(self, payload: bytes) -> None:
        """Send one JSON message (already encoded) to this client only."""
        self.offer(frames.encode_text_frame(payload))

    # -- lifecycle --------------------------------------------------------------
    async def run(self, head: bytes = b"") -> None:
        """Serve the socket until the session ends.  ``head``: the 101
        response (net/http_connection.py), written first, in one send with
        the welcome."""
        hub = self.state.hub
        hub.connections.add(self)
        self.transport.on_backlog = self._start_writer
        self.transport.coalesce(self.withdraw)  # overflow or a broken socket found at the pass's end
        if head:
            if not self.echo and self.close_code is None:
                head += frames.encode_text_frame(replies.welcome(self.sub, self.exp))
            try:
                self.transport.write(head)
            except (BacklogOverflow, TransportClosed) as exc:
                self._write_failed(exc)
        if not self.echo:  # a webhook event (SPEC §12); nothing without hooks
            self.state.emit("connect", {"sub": self.sub, "client_id": self.client_id, "conn_id": self.conn_id})
        try:
            self.deadline = self.clock.deadline(self.exp)
            if not self.echo and not head:
                self.send_obj(replies.welcome(self.sub, self.exp))
            ws = self.state.settings.websocket
            self.timers.start(self.clock.now(), self.deadline, ws.expiry_warning, ws.ping_interval)
            if await self._reader():  # it stepped out: a backlog needs the writer
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._writer_running = True
                    nursery.start_soon(self._writer)
                    await self._reader()
                    nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            hub.drop(self)
            await close_session(self)

    async def _remote(self, reply: Awaitable[Reply]) -> Reply | None:
        """Wait for a remote broker's answer, as withdraw() and the token's
        deadline allow (None when either came first)."""
        with trio.CancelScope(deadline=self.deadline) as scope:
            self._asking = scope
            try:
                return await reply
            finally:
                self._asking = None
        if self.close_code is None:
            self.withdraw(CloseCode.TOKEN_EXPIRED, "token expired")
        return None

    def _next_event(self, max_bytes: int) -> Message | Ping | Pong | CloseReceived | CloseError | None:
        """The reader's next event; a broken rule comes back as the error, in
        its place after the messages before it (it ends the session)."""
        try:
            event = self.reader.next_event(max_bytes)
        except CloseError as exc:
            return exc
        return event

    def _apply(self, reply: Reply) -> None:
        """Carry out the dispatcher's answer to one message.

        The answer's frames (an ack, a ``since`` replay of up to a whole
        history) are paced, not charged to the slow-consumer limit: the peer
        asked for them, and while more than ``max_backlog_bytes`` of them
        wait the reader reads no further message (_reader), so TCP holds the
        peer back instead of a 4009 cutting off a recovering subscriber.
        Queued frames are references to the hub's prepared frames, so a
        replay costs no copy.
        """
        for frame in reply.frames:
            self._write(frame, charged=False)
        if reply.claims is not None:  # a good refresh moves the deadline
            self.deadline = self.clock.deadline(reply.claims.exp)
            self.timers.aim_warning(self.deadline, self.state.settings.websocket.expiry_warning)
        if reply.close is not None:
            self.withdraw(reply.close.code, reply.close.reason)

    # -- timers -----------------------------------------------------------------
    def _on_timer(self, now: float) -> None:
        """The reader's wait passed its deadline: end the session at the
        token's (4001), or run whichever timer is due."""
        if now >= self.deadline:
            self.withdraw(CloseCode.TOKEN_EXPIRED, "token expired")
            return
        ws = self.state.settings.websocket
        due = self.timers.due(now, ws.ping_interval, ws.pong_timeout)
        if due.gone:
            # A peer that sent nothing at all for pong_timeout after a ping
            # is gone (a pulled cable): free its slot without a handshake.
            self.withdraw(CloseCode.ABORT, "ping timeout")
            return
        if due.warn:
            self.send_obj(replies.token_expiring(self.exp))
        if due.ping:
            self.offer(frames.encode_ping_frame(b"rt"))

    async def _reader(self) -> bool:
        """Read and handle client messages until the session ends (False),
        or until a backlog first needs the writer task and there is no
        nursery for it yet (True: run() opens one and calls again; a
        half-received message stays in the reader)."""
        max_bytes = self.state.settings.websocket.max_message_bytes
        reader = self.reader
        unread = reader.pending  # frames that came with the upgrade request
        while True:
            if self.close_code is not None:  # withdrawn while no wait was running
                return False
            if self._writer_wanted and self._nursery is None:
                return True
            if unread:
                unread = False
            else:
                transport = self.transport
                # Paced answers past the limit wait for the peer to read them:
                # read no new message meanwhile (see _apply).
                paused = transport.paced_bytes > transport.max_backlog and self._writer_running
                data: bytes | None = None
                with trio.CancelScope(deadline=min(self.deadline, self.timers.next_wake())) as scope:
                    self._scope = scope
                    if paused:
                        self._room = trio.Event()
                        await self._room.wait()
                    else:
                        try:
                            data = await transport.receive_some()
                        except TransportClosed:
                            data = b""
                self._scope = None
                self._room = None
                if scope.cancelled_caught:
                    if self.close_code is not None or self._writer_wanted and self._nursery is None:
                        continue  # withdrawn, or handed over: see above; a due timer fires on the next pass
                    self._on_timer(self.clock.now())
                    continue
                if data is None:  # room for more: read again
                    continue
                self.timers.heard()  # any bytes at all prove the peer is alive
                if not data:  # end of stream, no close frame: the peer is gone
                    self.withdraw(TransportClosed.close_code, TransportClosed.close_reason)
                    return False
                reader.receive_data(data)
            # Parsed lazily, one frame per step: a read full of tiny frames
            # is handled with checkpoints between them (below).
            event = self._next_event(max_bytes)
            handled = 0
            while event is not None:
                handled += 1
                if handled % EVENTS_PER_CHECKPOINT == 0:
                    # A flood of small frames must not hold up every other
                    # connection (SPEC §7): let the loop run (and the
                    # cork's flusher write what this batch fanned out).
                    await trio.lowlevel.checkpoint()
                    if self.close_code is not None:  # withdrawn meanwhile (revoked, shutdown)
                        return False
                if isinstance(event, Message):
                    reply = self.dispatcher.receive(event.data, self, self.state, self.clock.now())
                    if not isinstance(reply, Reply):  # a remote broker's round trip
                        reply = await self._remote(reply)
                        if reply is None:  # withdrawn or expired meanwhile
                            return False
                    self._apply(reply)
                    if self.close_code is not None:
                        return False
                elif isinstance(event, Ping):
                    # A closing connection need not answer pings (RFC 6455
                    # §5.5.2 asks for a Pong only "as soon as practical").
                    # The pong is charged like any other frame: a peer that
                    # pings and never reads is a slow consumer (4009).
                    if reader.state is ConnectionState.OPEN:
                        self.offer(frames.encode_pong_frame(event.payload))
                        if self.close_code is not None:
                            return False
                elif isinstance(event, CloseReceived):
                    self.peer_close = event
                    return False
                elif isinstance(event, CloseError):  # a broken rule: 1002, 1007 or 1009
                    close = event.close()
                    self.withdraw(close.code, close.reason)
                    return False
                event = self._next_event(max_bytes)
