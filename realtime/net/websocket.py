"""One WebSocket connection after the 101: the trio shell (DESIGN.md §1).

The token's ``exp`` *is* the session's cancel-scope deadline.  Whoever
ends a session first sets ``close_code`` and then cancels the scope, so the
one ``finally`` in :meth:`Session.run` sends the right close frame:

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
:class:`~realtime.session.clock.Clock` (:class:`TrioClock` by default), so
tests drive every timer with trio's ``autojump_clock``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from realtime.net.cork import CORK
from realtime.net.inbound import Fragments
from realtime.net.transport import BacklogOverflow, Transport, TransportClosed
from realtime.protocol import frames
from realtime.protocol import replies
from realtime.protocol.close import TOO_BIG, CloseCode, ProtocolError
from realtime.session.clock import Clock
from realtime.session.dispatch import Dispatcher, Reply
from realtime.session.identity import TokenIdentity
from realtime.session.ratelimit import RateLimiter
from realtime.session.timers import Timers
from realtime.tokens.keyring import AccessClaims

if TYPE_CHECKING:
    from realtime.api.app import App

log = logging.getLogger("realtime.ws")

CLOSE_WAIT = 2.0  # how long we wait for the peer's close frame after ours
# While closing, try to send this often even without a writable event: the
# kernel reports a socket writable only once a third of its (autotuned,
# up to 4 MiB) buffer is free, which a slow reader may take many seconds
# to read, though a small close frame would fit much sooner.
CLOSE_RETRY = 0.05
EVENTS_PER_CHECKPOINT = 64  # frames the reader handles between two checkpoints
#: Connection ids, unique in the process across transports (the hub keys
#: its tables by them; SSE streams draw from the same counter).
next_conn_id = itertools.count(1).__next__


@attrs.frozen
class TrioClock:
    """The session's :class:`~realtime.session.clock.Clock` in the trio shell.

    ``now`` is trio's clock (a ``MockClock`` under ``autojump_clock``);
    ``wall`` is the epoch clock token ``exp`` values are on.  A test passes
    a ``wall`` that follows trio's clock, so nothing waits in real time.
    """

    wall: Callable[[], float] = time.time

    def now(self) -> float:
        return trio.current_time()

    def deadline(self, exp: float) -> float:
        return trio.current_time() + (exp - self.wall())


TRIO_CLOCK = TrioClock()


class Session(TokenIdentity):
    """Implements the hub's ``Connection`` protocol for one socket, and the
    dispatcher's :class:`~realtime.session.dispatch.Peer`."""

    # Thousands live at once: slots instead of a per-instance dict.
    __slots__ = (
        "conn_id", "transport", "state", "clock", "echo", "ws", "publish_limit", "message_limit", "close_code", "close_reason",
        "peer_close", "_parse_failed", "_scope", "_nursery", "_writer_running", "_writer_wanted", "_timer",
        "_partial", "_held", "_room", "timers", "remote", "connected_at",
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
        # For the server API's connection list (SPEC §11).
        self.remote = "%s:%d" % transport.peer()
        self.connected_at = int(time.time())
        self.state = state
        self.clock = clock
        self.echo = echo
        self.adopt(claims)
        ws = state.settings.websocket
        self.ws = WSConnection(ConnectionType.SERVER, trailing_data=trailing_data)
        self.publish_limit = RateLimiter.from_spec(ws.publish_rate)
        self.message_limit = RateLimiter.for_messages(ws.message_rate, ws.max_subscriptions)
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
        self._partial: Fragments | None = None  # a message cut by that hand-over
        # Frames kept while the cork is held (net/cork.py), each with whether
        # it is charged to the slow-consumer limit (see offer and _apply).
        self._held: list[tuple[bytes, bool]] | None = None
        # Set by the writer when paced answers have drained enough for the
        # reader, which stopped reading messages, to go on (see _reader).
        self._room: trio.Event | None = None
        # Timers live in the reader's receive deadline, not in tasks of their
        # own: a task per idle socket costs memory and handshake time.
        self.timers = Timers()

    # -- the hub-facing, synchronous side -------------------------------------
    def offer(self, frame: bytes) -> None:
        """Queue one prepared frame; never blocks, never awaits.

        Charged to the slow-consumer limit (``max_backlog_bytes``): fan-out
        and everything else the peer did not ask for in the message being
        handled.
        """
        self._write(frame, charged=True)

    def _write(self, frame: bytes, *, charged: bool) -> None:
        if self.close_code is not None:
            return
        if CORK.active:
            held = self._held
            if held is None:
                self._held = [(frame, charged)]
                CORK.held.append(self)
            else:
                held.append((frame, charged))
            return
        try:
            self.transport.write(frame, charged=charged)
        except (BacklogOverflow, TransportClosed) as exc:
            self._write_failed(exc)

    def release_held(self) -> None:
        """Write the frames kept under the cork, each run of frames with the
        same charge as one chunk.  They were accepted before any withdraw in
        the same batch (an ack before a 4008), so they go out even if the
        session is closing now."""
        held, self._held = self._held, None
        if not held:
            return
        try:
            for charged, run in itertools.groupby(held, key=lambda item: item[1]):
                chunk = [frame for frame, _ in run]
                self.transport.write(chunk[0] if len(chunk) == 1 else b"".join(chunk), charged=charged)
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
            self._scope.deadline = self.clock.deadline(self.exp)
            with self._scope:
                if not self.echo and not head:
                    self.send_obj(replies.welcome(self.sub, self.exp))
                ws = self.state.settings.websocket
                self.timers.start(self.clock.now(), self._scope.deadline, ws.expiry_warning, ws.ping_interval)
                if await self._reader():  # it stepped out: a backlog needs the writer
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self._writer_running = True
                        nursery.start_soon(self._writer)
                        await self._reader()
                        nursery.cancel_scope.cancel()
            if self.close_code is None and self._scope.cancelled_caught:
                self.close_code, self.close_reason = CloseCode.TOKEN_EXPIRED, "token expired"
        finally:
            self._nursery = None
            hub.drop(self)
            await self._close()

    async def _close(self) -> None:
        code = self.close_code if self.close_code is not None else CloseCode.NORMAL
        transport = self.transport
        with trio.CancelScope(shield=True):
            try:
                if code != CloseCode.ABORT and not transport.closed:
                    reply = self.peer_close
                    if reply is not None and code == CloseCode.NORMAL:
                        code = reply.code if reply.code not in (CloseCode.NO_STATUS, CloseCode.ABORT) else CloseCode.NORMAL
                    if code == CloseCode.SLOW_CONSUMER:
                        # Frames not started yet are dropped: a slow reader
                        # reads the 4009 after the wire's tail, not after a
                        # whole backlog it cannot read in time.
                        transport.discard_queued()
                    if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                        # Not charged: a slow consumer's queue is past its limit.
                        transport.write(self.ws.send(CloseConnection(code=code, reason=self.close_reason[:100])),
                                        charged=False)
                    # The close handshake gets its usual time once our close
                    # frame is with the kernel, however long that took.
                    with trio.move_on_after(CLOSE_WAIT) as sending:
                        await transport.drain(retry_every=CLOSE_RETRY)
                    if not sending.cancelled_caught:
                        with trio.move_on_after(CLOSE_WAIT):
                            if self._parse_failed:
                                # wsproto's parser is dead after a protocol error
                                # and would never see the peer's close: RFC 6455
                                # §7.1.7 "Fail the WebSocket Connection" — our close
                                # is out, so half-close and drop what still comes.
                                await transport.linger_close(CLOSE_WAIT)
                            elif self.ws.state is ConnectionState.LOCAL_CLOSING:
                                await self._await_peer_close()
            except (TransportClosed, BacklogOverflow):
                pass
            transport.close()
        self.state.metrics.closes[int(code)] += 1
        if not self.echo:
            self.state.emit("disconnect", {"sub": self.sub, "client_id": self.client_id, "conn_id": self.conn_id,
                                           "code": int(code)})
        log.debug("ws %d closed code=%s reason=%s", self.conn_id, code, self.close_reason)

    async def _await_peer_close(self) -> None:
        handled = 0
        while self.ws.state is not ConnectionState.CLOSED:
            data = await self.transport.receive_some()
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, CloseConnection):
                    return
                handled += 1
                if handled % EVENTS_PER_CHECKPOINT == 0:  # a peer still flooding (see _reader)
                    await trio.lowlevel.checkpoint()

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
            self._scope.deadline = self.clock.deadline(reply.claims.exp)
            self.timers.aim_warning(self._scope.deadline, self.state.settings.websocket.expiry_warning)
        if reply.close is not None:
            self.withdraw(reply.close.code, reply.close.reason)

    # -- timers -----------------------------------------------------------------
    def _on_timer(self, now: float) -> None:
        """The reader's receive deadline passed: run whichever timer is due."""
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
        nursery for it yet (True: run() opens one and calls again)."""
        max_bytes = self.state.settings.websocket.max_message_bytes
        message = self._partial
        self._partial = None
        while True:
            if self._writer_wanted and self._nursery is None:
                self._partial = message
                return True
            transport = self.transport
            # Paced answers past the limit wait for the peer to read them:
            # read no new message meanwhile (see _apply).
            paused = transport.paced_bytes > transport.max_backlog and self._writer_running
            data: bytes | None = None
            with trio.move_on_at(self.timers.next_wake()) as timer:
                self._timer = timer
                if paused:
                    self._room = trio.Event()
                    await self._room.wait()
                else:
                    try:
                        data = await transport.receive_some()
                    except TransportClosed:
                        data = b""
            self._timer = None
            self._room = None
            if timer.cancelled_caught:
                if self._writer_wanted and self._nursery is None:
                    continue  # handed over above; a due timer fires on the next pass
                self._on_timer(self.clock.now())
                if self.close_code is not None:
                    return False
                continue
            if data is None:  # room for more: read again
                continue
            self.timers.heard()  # any bytes at all prove the peer is alive
            self.ws.receive_data(data if data else None)
            # Parsed lazily, one frame per step: a read full of tiny frames
            # is handled with checkpoints between them (below).
            events = self.ws.events()
            event = next(events, None)
            # Several messages in one read: hold their frames and write each
            # recipient's share as one chunk (net/cork.py).
            corked = False
            handled = 0
            try:
                while event is not None:
                    following = next(events, None)
                    if following is not None and not corked:
                        corked = CORK.hold()
                    handled += 1
                    if handled % EVENTS_PER_CHECKPOINT == 0:
                        # A flood of small frames must not hold up every other
                        # connection (SPEC §7): let the loop run.
                        if corked:  # never hold frames across an await
                            CORK.release()
                            corked = False
                        await trio.lowlevel.checkpoint()
                    if isinstance(event, (TextMessage, BytesMessage)):
                        if message is None:
                            message = Fragments(isinstance(event, TextMessage))
                        if not message.add(event.data, event.frame_finished, max_bytes):
                            self.withdraw(TOO_BIG.code, TOO_BIG.reason)
                            return False
                        if event.message_finished:
                            whole, message = message.whole(), None
                            reply = self.dispatcher.receive(whole, self, self.state, self.clock.now())
                            if not isinstance(reply, Reply):  # a remote broker's round trip
                                if corked:  # never hold frames across an await
                                    CORK.release()
                                    corked = False
                                reply = await reply
                            self._apply(reply)
                            if self.close_code is not None:
                                return False
                    elif isinstance(event, Ping):
                        # A closing connection need not answer pings (RFC 6455
                        # §5.5.2 asks for a Pong only "as soon as practical").
                        # The pong is charged like any other frame: a peer that
                        # pings and never reads is a slow consumer (4009).
                        if self.ws.state is ConnectionState.OPEN:
                            self.offer(self.ws.send(event.response()))
                            if self.close_code is not None:
                                return False
                    elif isinstance(event, CloseConnection):
                        if not data:  # end of stream, no close frame: the peer is gone
                            self.withdraw(TransportClosed.close_code, TransportClosed.close_reason)
                        elif self.ws.state is ConnectionState.REMOTE_CLOSING:
                            self.peer_close = event
                        else:  # wsproto found a protocol error (1002, 1007, ...)
                            self._parse_failed = True
                            self.withdraw(event.code, event.reason or ProtocolError.close_reason)
                        return False
                    elif isinstance(event, Pong):
                        pass
                    event = following
            finally:
                if corked:
                    CORK.release()
