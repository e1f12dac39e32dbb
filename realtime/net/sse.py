"""One Server-Sent Events stream (SPEC §13): the trio shell.

A second transport of the same session logic as
:mod:`realtime.net.websocket`, not a copy of it:

- the hub files it as a ``Connection`` (``conn_id``, ``sub`` ... ``scopes``,
  ``offer``, ``withdraw``), so fan-out, revocation (4003 through the hub's
  index), a reload's withdrawals and ``user:<sub>`` work unchanged;
- it subscribes through the hub (``subscribe``/``subscribe_async`` with
  ``since``), so resume is the WebSocket ``since`` recovery per channel;
- its deadline is the token's ``exp`` as a cancel-scope deadline, read on
  the same :class:`~realtime.session.clock.Clock` (4001 when it passes);
- a refresh goes through :func:`realtime.session.refresh.refresh`, the
  rule the WebSocket ``refresh`` message uses;
- writes go through the same :class:`~realtime.net.transport.Transport`
  (TLS included) with the same ``max_backlog_bytes``: fan-out is charged,
  a reader past it is closed with 4009 after what is already on the wire;
- the close codes are :class:`~realtime.protocol.close.CloseCode`'s, sent
  as ``event: close`` with ``{"code":N}``.

What differs is only the wire: events instead of frames
(:mod:`realtime.protocol.sse`), nothing to read from the client (its
end of stream is all the reader waits for), and ``: ping`` comments.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from realtime.hub import BrokerUnavailable, HubError
from realtime.http.responses import Response, error_response
from realtime.net.transport import Transport
from realtime.net.transport_errors import BacklogOverflow, TransportClosed
from realtime.net.trio_clock import TRIO_CLOCK
from realtime.net.websocket import next_conn_id
from realtime.net.websocket_close import CLOSE_RETRY, CLOSE_WAIT
from realtime.protocol import replies
from realtime.protocol import sse
from realtime.protocol.close import CloseCode
from realtime.protocol.upgrade import StreamRequest
from realtime.session.clock import Clock
from realtime.session.identity import TokenIdentity
from realtime.session.refresh import apply_refresh
from realtime.session.streams import Streams
from realtime.session.timers import Timers
from realtime.tokens.keyring import AccessClaims

if TYPE_CHECKING:
    from realtime.api.app import App

log = logging.getLogger("realtime.sse")

#: Bytes a client may send on its stream (nothing is expected) before it is
#: cut off: a pipelined request, at most.
MAX_INBOUND = 65536

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"server: realtime\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-store\r\n"
    b"x-accel-buffering: no\r\n"
    # The body ends when the connection does (RFC 9112 §6.3): no chunk
    # framing, so the shared event chunks go to the socket as they are.
    b"connection: close\r\n"
)


class SseSession(TokenIdentity):
    """Implements the hub's ``Connection`` and the refresh endpoint's
    :class:`~realtime.session.streams.Stream` for one ``GET /sse``."""

    __slots__ = (
        "conn_id", "stream_id", "transport", "state", "clock", "request",
        "close_code", "close_reason", "positions", "recovered", "_pending",
        "_pending_bytes", "_scope", "_nursery", "_writer_running", "_timer",
        "_started", "_extra_head", "timers",
    )

    def __init__(self, transport: Transport, request: StreamRequest, state: "App", *,
                 clock: Clock = TRIO_CLOCK, extra_head: bytes = b"") -> None:
        self.conn_id = next_conn_id()
        self.stream_id = Streams.new_id()
        self.transport = transport
        self.state = state
        self.clock = clock
        self.request = request
        self.adopt(request.claims)
        self.close_code: int | None = None
        self.close_reason = ""
        self.positions = sse.Positions()  # channel -> seq last sent (the event id)
        self.recovered = True
        # Frames offered before the response head went out, in order.
        self._pending: list[tuple[bytes, bool]] | None = []
        self._pending_bytes = 0
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._writer_running = False
        self._timer: trio.CancelScope | None = None
        self.timers = Timers()  # the warning and the keep-alive, as on the WebSocket
        self._started = False
        self._extra_head = extra_head

    # -- the hub-facing, synchronous side -----------------------------------
    def offer(self, frame: bytes) -> None:
        """A prepared WebSocket frame from the hub, sent as its SSE event."""
        self._send_frame(frame, charged=True)

    def _send_frame(self, frame: bytes, *, charged: bool) -> None:
        if self.close_code is not None:
            return
        if self._pending is not None:
            self._pending.append((frame, charged))
            if charged:
                self._pending_bytes += len(frame)
                if self._pending_bytes > self.state.settings.websocket.max_backlog_bytes:
                    self.withdraw(BacklogOverflow.close_code, BacklogOverflow.close_reason)
            return
        event = sse.from_frame(frame)
        channel = event.channel
        if channel is None:
            self._write(event.chunk + b"\n", charged=charged)
            return
        positions = self.positions
        if event.seq <= positions.seqs.get(channel, 0):
            return  # already sent (a replay overlapping live delivery): never twice
        positions.set(channel, event.seq)
        if len(positions.seqs) == 1:  # one channel: the shared whole event fits this stream too
            self._write(event.whole, charged=charged)
        else:
            self._write(event.chunk + positions.line(), charged=charged)

    def _write(self, data: bytes, *, charged: bool) -> None:
        try:
            self.transport.write(data, charged=charged)
        except (BacklogOverflow, TransportClosed) as exc:
            self.withdraw(exc.close_code, exc.close_reason)

    def withdraw(self, code: int, reason: str) -> None:
        """End this stream with ``code`` (first caller wins)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self._scope.cancel()

    # -- refresh (POST /api/streams/ID/refresh) -------------------------------
    def refreshed(self, claims: AccessClaims, lost: tuple[str, ...]) -> None:
        """The endpoint took a new token (already adopted): move the deadline."""
        if self.close_code is not None:
            return
        self._scope.deadline = self.clock.deadline(claims.exp)
        self.timers.aim_warning(self._scope.deadline, self.state.settings.websocket.expiry_warning)
        if self._timer is not None:
            self._timer.cancel()  # the reader re-aims its wait at the new warning
        self._event("refreshed", replies.refreshed(claims.exp))
        if self._nursery is not None and self.state.stream_directory is not None:
            self._nursery.start_soon(self._register)  # the directory entry follows the deadline
        for channel in lost:
            self.positions.drop(channel)
            self._event("error", replies.error(None, "subscription_revoked", f"token no longer allows {channel}"))

    def _event(self, name: str, data: bytes, *, charged: bool = True) -> None:
        if self.close_code is None and self._pending is None:
            self._write(sse.encode_event(name, data), charged=charged)

    # -- start: subscribe before the response head ----------------------------
    async def start(self) -> Response | None:
        """Subscribe to every channel; an HTTP error to answer instead of
        the stream, or ``None`` (then :meth:`run`)."""
        hub = self.state.hub
        hub.connections.add(self)
        resume = self.request.positions
        try:
            for channel in self.request.channels:
                since = None if resume is None else resume.get(channel)
                if hub.remote:
                    result = await hub.subscribe_async(self, channel, since)
                else:
                    result = hub.subscribe(self, channel, since)
                if since is not None:
                    self.recovered = self.recovered and result.recovered
                    self.positions.set(channel, min(since, result.seq))
                else:
                    self.positions.set(channel, result.seq)
                assert self._pending is not None
                self._pending.extend((frame, False) for frame in result.replay)
        except HubError as exc:
            hub.drop(self)
            return _refusal(exc)
        except BaseException:
            hub.drop(self)
            raise
        if self.close_code is not None:  # withdrawn while subscribing (revoked, overflow)
            hub.drop(self)
            return error_response(503 if self.close_code == CloseCode.SLOW_CONSUMER else 401,
                                  "stream_refused", self.close_reason or "stream ended before it began")
        await self._register()
        return None

    async def _register(self) -> None:
        """File this stream in the shared directory (with a broker), so a
        refresh sent to another node reaches it; without it, only here."""
        directory = self.state.stream_directory
        if directory is None:
            return
        try:
            await directory.register(self.stream_id, self.sub, self.client_id, self.exp)
        except BrokerUnavailable:
            log.warning("sse %d: the broker is unreachable; its refresh must reach this node", self.conn_id)

    async def _unregister(self) -> None:
        directory = self.state.stream_directory
        if directory is None:
            return
        with trio.move_on_after(CLOSE_WAIT):
            try:
                await directory.forget(self.stream_id)
            except BrokerUnavailable:
                pass  # the entry expires by itself

    # -- lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
        """Send the head, the welcome and the replays, then live events
        until the deadline, a withdrawal or the client's end of stream."""
        state = self.state
        streams = state.streams
        streams.add(self)
        self.transport.max_backlog = state.settings.websocket.max_backlog_bytes
        self.transport.on_backlog = self._start_writer
        self.transport.coalesce(self.withdraw)  # fan-out joins the pass's one write (net/cork.py)
        try:
            self._scope.deadline = self.clock.deadline(self.exp)
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._begin()
                    ws = state.settings.websocket
                    self.timers.start(self.clock.now(), self._scope.deadline, ws.expiry_warning, ws.ping_interval)
                    if self.close_code is None:
                        await self._reader()
                    nursery.cancel_scope.cancel()
            if self.close_code is None and self._scope.cancelled_caught:
                self.close_code, self.close_reason = CloseCode.TOKEN_EXPIRED, "token expired"
        finally:
            self._nursery = None
            streams.remove(self)
            state.hub.drop(self)
            await self._close()

    def _begin(self) -> None:
        """The head, ``welcome`` (with the start positions as its id),
        ``recovered`` when resuming, then what was offered meanwhile."""
        pending, self._pending = self._pending or [], None
        welcome = replies.encode_json({"sub": self.sub, "expires_at": self.exp, "stream": self.stream_id})
        head = HEAD + self._extra_head + b"\r\n"
        self._write(head + sse.encode_event("welcome", welcome, self.positions.text()),
                    charged=False)
        if self.request.positions is not None:
            self._write(sse.encode_event("recovered", replies.encode_json({"recovered": self.recovered})),
                        charged=False)
        self._started = True
        for frame, charged in pending:
            self._send_frame(frame, charged=charged)

    def _start_writer(self) -> None:
        if not self._writer_running and self._nursery is not None:
            self._writer_running = True
            self._nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        transport = self.transport
        try:
            while transport.backlog_bytes:
                await transport.send_some()
        except TransportClosed as exc:
            self.withdraw(exc.close_code, exc.close_reason)
        finally:
            self._writer_running = False

    async def _close(self) -> None:
        code = self.close_code if self.close_code is not None else CloseCode.NORMAL
        transport = self.transport
        with trio.CancelScope(shield=True):
            await self._unregister()  # before the close event: a client that read it finds the id gone
            try:
                if code != CloseCode.ABORT and not transport.closed and self._started:
                    if code == CloseCode.SLOW_CONSUMER:
                        # As on the WebSocket: drop what has not started, so a
                        # slow reader reads the 4009 after the wire's tail.
                        transport.discard_queued()
                    transport.write(sse.encode_event("close", replies.encode_json({"code": int(code)})),
                                    charged=False)
                    with trio.move_on_after(CLOSE_WAIT):
                        await transport.drain(retry_every=CLOSE_RETRY)
            except (TransportClosed, BacklogOverflow):
                pass
            transport.close()
        self.state.metrics.closes[int(code)] += 1
        log.debug("sse %d closed code=%s reason=%s", self.conn_id, code, self.close_reason)

    # -- timers and the (silent) client -------------------------------------------
    def _on_timer(self, now: float) -> None:
        ws = self.state.settings.websocket
        due = self.timers.due(now, ws.ping_interval, None)  # no pong on SSE: a dead peer fails its writes
        if due.warn:
            self._event("token_expiring", replies.token_expiring(self.exp))
        if due.ping:
            self._write(sse.PING, charged=True)

    async def _reader(self) -> None:
        """Wait for the client's end of stream, running timers meanwhile."""
        received = 0
        while True:
            with trio.move_on_at(self.timers.next_wake()) as timer:
                self._timer = timer
                try:
                    data = await self.transport.receive_some()
                except TransportClosed:
                    data = b""
            self._timer = None
            if timer.cancelled_caught:
                self._on_timer(self.clock.now())
                if self.close_code is not None:
                    return
                continue
            if not data:  # the client went away
                self.withdraw(TransportClosed.close_code, TransportClosed.close_reason)
                return
            received += len(data)
            if received > MAX_INBOUND:
                self.withdraw(CloseCode.PROTOCOL_ERROR, "the client sent data on its stream")
                return


def refresh_from_another_node(app: "App", message: tuple[str, AccessClaims] | None) -> None:
    """Claims another node verified for one of our SSE streams (SPEC §13)."""
    if message is None:
        return
    stream_id, claims = message
    stream = app.streams.get(stream_id)
    if stream is None or (claims.sub, claims.client_id) != (stream.sub, stream.client_id):
        return  # not ours (every node hears every refresh), or no longer the same principal
    outcome = apply_refresh(claims, stream, app)
    stream.refreshed(outcome.claims, outcome.lost)


def _refusal(exc: HubError) -> Response:
    """A channel the stream may not have, as an HTTP answer before the head."""
    if exc.code == "unavailable":
        return error_response(503, "unavailable", exc.message, (("retry-after", "1"),))
    status = {"forbidden": 403, "unknown_channel": 404}.get(exc.code, 400)
    return error_response(status, exc.code, exc.message)


__all__ = ["HEAD", "MAX_INBOUND", "SseSession", "refresh_from_another_node"]
