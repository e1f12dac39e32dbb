"""The server's connections: accepted in batches, admitted under
``[server] max_connections`` and ``max_connections_per_ip`` (a plain 503
past them), each run as an :class:`HttpConnection` task, and all told
when the server shuts down.

Apart from :mod:`realtime.net.server` because this is the per-connection
side, with data of its own (the live connections and sessions, the count
per address, the TLS context a reload replaces); the server only starts
an accept loop per listener and says when to stop.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl

import trio

from realtime.api.app import App
from realtime.http.router import Router
from realtime.net.http_connection import HttpConnection
from realtime.net.transport import Transport
from realtime.net.websocket import Session
from realtime.protocol.close import CloseCode

log = logging.getLogger("realtime.server")

ACCEPT_BATCH = 64


class Connections:
    """The live connections of one server and the TLS context new ones
    get.  ``sessions`` and ``http_conns`` are the sets the server (and the
    control socket) share: filled and emptied here, never replaced."""

    def __init__(self, router: Router) -> None:
        self.state: App | None = None  # the application object, once started
        self.router = router
        self.ssl_context: ssl.SSLContext | None = None  # replaced by a reload
        self.sessions: set[Session] = set()  # live WebSockets, told 1001 at shutdown
        self.http_conns: set[HttpConnection] = set()
        self.per_ip: dict[str, int] = {}

    # -- accept ---------------------------------------------------------------
    async def accept_loop(self, lsock: socket.socket, scheme: str, nursery: trio.Nursery) -> None:
        """Accept on ``lsock`` until cancelled, each connection a task in
        ``nursery`` (the handler nursery, which outlives the listeners);
        the socket is closed on the way out."""
        try:
            while True:
                await trio.lowlevel.wait_readable(lsock)
                # Take the whole queue per wake-up (bounded, so a connection
                # storm still yields): one epoll round trip per batch, not
                # per connection.
                for _ in range(ACCEPT_BATCH):
                    try:
                        sock, peer = lsock.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            log.error("accept failed (%s); backing off", exc.strerror)
                            await trio.sleep(0.1)
                            break
                        raise
                    nursery.start_soon(self._handle, sock, peer[0], scheme)
        finally:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()

    async def _handle(self, sock: socket.socket, host: str, scheme: str) -> None:
        assert self.state is not None
        limits = self.state.settings.server
        total = len(self.http_conns)
        if total >= limits.max_connections or self.per_ip.get(host, 0) >= limits.max_connections_per_ip:
            await self._refuse(sock)
            return
        ctx = self.ssl_context if scheme == "https" else None
        transport = Transport(sock, ctx)
        conn = HttpConnection(transport, self.state, self.router, scheme, self.sessions, client_host=host)
        self.http_conns.add(conn)
        self.per_ip[host] = self.per_ip.get(host, 0) + 1
        try:
            await conn.run()
        except Exception:  # noqa: BLE001 - one connection's bug must not end the server
            log.exception("connection task from %s failed", host)
            transport.close()
        finally:
            self.http_conns.discard(conn)
            left = self.per_ip[host] - 1
            if left:
                self.per_ip[host] = left
            else:
                del self.per_ip[host]

    async def _refuse(self, sock: socket.socket) -> None:
        """Over the connection limit: a plain 503 and close (no TLS needed
        to say no; a TLS client simply sees the connection drop)."""
        body = b'{"error":"server_busy","error_description":"too many connections"}'
        try:
            sock.setblocking(False)
            sock.send(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        except OSError:
            pass
        finally:
            sock.close()
        await trio.lowlevel.checkpoint()

    # -- shutdown ---------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Every WebSocket told 1001; HTTP connections stop after their
        current response (idle ones at once)."""
        assert self.state is not None
        for session in list(self.sessions):
            session.withdraw(CloseCode.GOING_AWAY, "server shutting down")
        for conn in list(self.http_conns):
            conn.shutdown()
