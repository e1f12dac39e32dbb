"""The connection task: HTTP/1.1 through h11 until (maybe) a WebSocket.

Modelled on h11's ``examples/trio-server.py``: a deadline per request head
(slow clients are cut off, not waited for), an idle keep-alive timeout,
and a JSON error (400/408/413/431/500) while a response can still start.
Exception text never reaches the client.

Reading a plain request is :mod:`realtime.net.http_request`'s; the I/O of
the gates (a ticket, an SSE stream's start) is
:mod:`realtime.net.session_gate`'s.  What stays here is the connection:
its loop, the quick path of a fresh connection's upgrade, routing, the
answers, and the hand-off to the session that takes it over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import h11
import trio

from realtime.http.request import Request
from realtime.http.responses import SECURITY_HEADERS, REASONS, Response, error_response
from realtime.http.transport_security import hsts_headers, refuse_plain_http
from realtime.oauth1.resource import oauth1_principal
from realtime.oauth1.signing import is_signed as oauth1_is_signed
from realtime.net.http_request import REMOTE_ERRORS, RequestFailed, has_header, head_size, read_request, receive_event
from realtime.net.session_gate import open_event_stream, redeem_ticket
from realtime.net.transport import RECV_SIZE, Transport
from realtime.net.transport_errors import BacklogOverflow, TransportClosed
from realtime.store import StoreUnavailable
from realtime.net.sse import SseSession
from realtime.net.websocket import Session
from realtime.protocol.upgrade import (
    Accept, check_upgrade, handshake_problem, is_upgrade, quick_upgrade, switching_head,
)

if TYPE_CHECKING:
    from realtime.http.router import Router
    from realtime.api.app import App

log = logging.getLogger("realtime.http")

SSE_PATH = "/sse"  # SPEC §13

SERVER_HEADER = ("server", "realtime")


class HttpConnection:
    def __init__(self, transport: Transport, state: "App", router: "Router", scheme: str,
                 sessions: set[Session | SseSession], client_host: str | None = None) -> None:
        self.transport = transport
        # The peer's address as accept() gave it (else asked of the socket when needed).
        self.client_host = client_host
        self.sessions = sessions  # the server's live WebSockets (told 1001 at shutdown)
        self.state = state
        self.router = router
        self.scheme = scheme
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=state.settings.server.max_header_bytes
        )
        self.idle = True  # waiting for a request head: safe to drop on shutdown
        self.head_request = False  # the current request is HEAD: answers carry no body
        self.tls = scheme == "https"  # the current request came over TLS (here or at a trusted proxy)
        self.shutting_down = False
        # The timeout scope of the wait that shutdown() may cut short: the TLS
        # handshake, then each wait for a request's first byte.  (No scope
        # around the whole connection: one scope fewer per handshake.)
        self.waiting: trio.CancelScope | None = None
        self.upgraded: Session | SseSession | None = None
        self.upgrade_head = b""  # the 101 response, which the session sends with its welcome
        # The first request may be read without h11 (quick_upgrade); its bytes
        # are kept until the answer, for h11 to read if it is not a 101.
        self.fresh = True
        self.unread: bytes | None = None

    def shutdown(self) -> None:
        """Stop after the current response; drop at once when idle."""
        self.shutting_down = True
        if self.idle and self.waiting is not None:
            self.waiting.cancel()

    async def run(self) -> None:
        settings = self.state.settings.server
        try:
            if self.transport.is_tls:
                with trio.move_on_after(settings.handshake_timeout) as handshake:
                    self.waiting = handshake
                    await self.transport.handshake()
                if handshake.cancelled_caught:
                    return
            first = True
            while not self.shutting_down:
                timeout = settings.header_timeout if first else settings.keepalive_timeout
                first = False
                if not await self._one_exchange(timeout):
                    break
            self.waiting = None
            if self.upgraded is not None:
                await self._run_session(self.upgraded)
        except (TransportClosed, BacklogOverflow):
            pass
        finally:
            self.transport.close()

    async def _run_session(self, session: Session | SseSession) -> None:
        # The HTTP side is done: drop h11's state and the request (its headers
        # hold the bearer token) so an idle socket keeps only what it needs.
        self.conn = None  # type: ignore[assignment]
        self.upgraded = None
        head, self.upgrade_head = self.upgrade_head, b""
        sessions = self.sessions
        sessions.add(session)
        try:
            if isinstance(session, Session):
                await session.run(head)
            else:
                await session.run()
        finally:
            sessions.discard(session)

    async def _one_exchange(self, idle_timeout: float) -> bool:
        """Serve one request; False when the connection should end."""
        server = self.state.settings.server
        try:
            # Idle until the first byte, then the head must arrive in time.
            self.idle = True
            self.head_request = False
            self.tls = self.scheme == "https"
            at_hand = self._bytes_at_hand() if self.fresh else None
            if at_hand is not None:  # no wait, so no timeout scope
                event = self._first_event(at_hand)
            else:
                # shutdown() cancels this scope too: nothing of a request has come.
                with trio.move_on_after(idle_timeout) as idle:
                    self.waiting = idle
                    event = await self._receive_first()
                if idle.cancelled_caught:
                    if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
                        return False
                    raise RequestFailed(error_response(408, "request_timeout", "request head too slow"))
            self.idle = False
            if isinstance(event, Request):  # a fresh connection's upgrade, read without h11
                self.tls = event.effective_scheme == "https"
                return await self._upgrade(event, echo=event.path != self.state.settings.websocket.path)
            if event is None:
                with trio.move_on_after(server.header_timeout) as head:
                    event = await receive_event(self.conn, self.transport)
                if head.cancelled_caught:
                    raise RequestFailed(error_response(408, "request_timeout", "request head too slow"))
            if isinstance(event, h11.ConnectionClosed):
                return False
            if not isinstance(event, h11.Request):
                raise RequestFailed(error_response(400, "bad_request", "expected a request"))
            # h11 enforces max_incomplete_event_size only while a head is
            # incomplete; a head that came whole in one read is checked here.
            if head_size(event) > server.max_header_bytes:
                raise RequestFailed(error_response(431, *REMOTE_ERRORS[431]))
            if has_header(event, b"content-length") and has_header(event, b"transfer-encoding"):
                # RFC 9112 §6.1: a request with both "MUST" be answered on a
                # connection the server then closes; a proxy that framed it
                # by Content-Length would read the rest as a new request.
                raise RequestFailed(error_response(400, "bad_request",
                                                   "both Content-Length and Transfer-Encoding"))
            self.head_request = event.method == b"HEAD"
            request = await read_request(self.conn, self.transport, event, self.state, self.scheme,
                                         self.client_host)
            self.tls = request.effective_scheme == "https"
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431 or "too long" in str(exc).lower():
                status = 431
            # h11 rejects a Transfer-Encoding other than one "chunked" (501)
            # while parsing the head, so such a request never reaches the
            # Content-Length + Transfer-Encoding check above; either way the
            # connection closes after the answer, as RFC 9112 §6.1 requires.
            await self._fail(error_response(status, *REMOTE_ERRORS.get(status, REMOTE_ERRORS[400])))
            return False
        except RequestFailed as fail:
            await self._fail(fail.response)
            return False
        return await self._respond(request)

    async def _receive_first(self) -> object | None:
        """Wait for the first bytes of a request; the event if one is ready,
        or the :class:`Request` of an upgrade read without h11."""
        event = self.conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        return self._first_event(await self.transport.receive_some())

    def _bytes_at_hand(self) -> bytes | None:
        """A fresh plain-TCP connection's first bytes when they are already
        here (a client sends its request right after connecting, so they
        usually are by the time this task runs), read without waiting: then
        the first request needs no timeout scope and no trip through the
        scheduler.  None when nothing has come yet (or on TLS, whose
        handshake came first): the caller waits as for any request."""
        transport = self.transport
        if transport.is_tls or transport.closed:
            return None
        try:
            return transport.sock.recv(RECV_SIZE)  # b"": the peer closed at once
        except OSError:  # BlockingIOError: nothing yet; else the awaited read reports it
            return None

    def _first_event(self, data: bytes) -> object | None:
        """Take the first bytes of a request: the :class:`Request` of an
        upgrade read without h11 (only the connection's first), else h11's
        event if one is complete, else None."""
        if self.fresh:
            self.fresh = False
            host = self.client_host if self.client_host is not None else self.transport.peer()[0]
            request = quick_upgrade(data, self.state.settings, self.scheme, host)
            if request is not None:
                self.unread = data
                return request
        self.conn.receive_data(data)
        event = self.conn.next_event()
        return None if event is h11.NEED_DATA else event

    def _catch_up(self) -> None:
        """Let h11 read the request quick_upgrade read, so an answer other
        than the 101 (and keep-alive after it) follows h11's state machine."""
        data, self.unread = self.unread, None
        if data is None:
            return
        self.conn.receive_data(data)
        request, end = self.conn.next_event(), self.conn.next_event()
        if not isinstance(request, h11.Request) or not isinstance(end, h11.EndOfMessage):
            raise h11.RemoteProtocolError("malformed request", 400)  # a bug in quick_head: still a clean 400

    async def _respond(self, request: Request) -> bool:
        ws = self.state.settings.websocket
        path = request.path
        refusal = refuse_plain_http(request, self.state.settings.server)
        if refusal is not None:
            await self._send(refusal)
            return self._keep_alive()
        if path == ws.path or (ws.echo_path and path == ws.echo_path):
            if is_upgrade(request):
                return await self._upgrade(request, echo=path != ws.path)
            await self._send(error_response(426, "upgrade_required", "this endpoint speaks WebSocket", (("upgrade", "websocket"),)))
            return self._keep_alive()
        if path == SSE_PATH:  # SPEC §13: the stream takes the connection only if its gate let it through
            opened = await open_event_stream(self.state, self.transport, request, self.scheme)
            if isinstance(opened, Response):
                await self._send(opened)
                return self._keep_alive()
            self.idle = False
            self.upgraded = opened  # run() sends the head and the events
            return False
        try:
            response = await self.router.dispatch(request, self.state)
        except StoreUnavailable as exc:  # a handler without its own answer for it: 503, not 500
            log.error("%s %s: the store's database is unavailable (%s); answering 503", request.method, path, exc)
            response = error_response(503, "temporarily_unavailable", "the database is unavailable, retry later",
                                      (("retry-after", "5"),))
        except Exception:  # noqa: BLE001 - last resort: log, answer 500, keep serving
            log.exception("handler for %s %s failed", request.method, path)
            response = error_response(500, "server_error", "internal error")
        await self._send(response)
        return self._keep_alive()

    def _keep_alive(self) -> bool:
        if self.conn.our_state is h11.MUST_CLOSE or self.shutting_down:
            return False
        try:
            self.conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    async def _upgrade(self, request: Request, echo: bool) -> bool:
        hub = self.state.hub
        # An OAuth 1.0a signed upgrade needs the store (token, nonce): checked here, with I/O.
        principal = await oauth1_principal(request, self.state) if oauth1_is_signed(request) else None
        # A ticket is not spent on a bad handshake; without a query there is none.
        if principal is None and "?" in request.target and handshake_problem(request) is None:
            principal = await redeem_ticket(self.state, request)
        decision = check_upgrade(
            request,
            self.state.settings,
            self.state.keyring,
            self.state.revoked,
            allows_any_channel=None if echo else hub.allows_any_channel,
            principal=principal,
        )
        if not isinstance(decision, Accept):
            self._catch_up()
            self.state.metrics.handshakes[_HANDSHAKE_RESULTS.get(decision.status, "bad_request")] += 1
            await self._send(decision)
            return self._keep_alive()
        self.state.metrics.handshakes["ok"] += 1
        # A request read by _quick_upgrade ended with its head: nothing trails it.
        trailing = b"" if self.unread is not None else bytes(self.conn.trailing_data[0])
        self.unread = None
        self.transport.max_backlog = self.state.settings.websocket.max_backlog_bytes
        # Run by run() once this exchange's frames (and the request) are gone;
        # a session leaves shutdown()'s reach: the server closes it with 1001.
        # The session writes the 101 first thing, with its welcome: one send.
        self.idle = False
        self.upgrade_head = switching_head(decision, SERVER_HEADER)
        self.upgraded = Session(self.transport, decision.claims, self.state, trailing_data=trailing, echo=echo)
        return False

    async def _send(self, response: Response) -> None:
        # Every answer (an error, a refused upgrade, a 426) may be to a HEAD
        # request; h11 refuses a body there, so leave it out (RFC 9110 §9.3.2).
        head = self.head_request
        headers = [SERVER_HEADER, *SECURITY_HEADERS, *response.headers]
        if self.tls:
            headers.extend(hsts_headers(self.state.settings.server))
        if self.shutting_down:
            headers.append(("connection", "close"))
        headers.append(("content-length", str(len(response.body))))
        try:
            data = self.conn.send(h11.Response(status_code=response.status, headers=headers, reason=REASONS.get(response.status, "")))
            if response.body and not head:
                data += self.conn.send(h11.Data(data=response.body))
            data += self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        try:
            await self.transport.send_all(data)
        except BacklogOverflow:
            raise TransportClosed from None

    async def _fail(self, response: Response) -> None:
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await self._send(Response(response.status, response.headers + (("connection", "close"),), response.body))
            except TransportClosed:
                return
            await self.transport.linger_close()


_HANDSHAKE_RESULTS = {401: "unauthorized", 403: "forbidden"}
