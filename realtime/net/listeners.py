"""The listening sockets: those systemd passed (socket activation), else
bound from ``[server] http`` and ``https``, and the addresses they got.

Apart from :mod:`realtime.net.server` because binding is done once, before
the nursery tree exists, and fails as a whole: a failed bind closes the
sockets already open (as trio's ``open_tcp_listeners`` does).
"""

from __future__ import annotations

import logging
import socket
import ssl

import attrs

from realtime.config.settings import Addr, Settings
from realtime.net import systemd

log = logging.getLogger("realtime.server")

# The kernel caps the accept queue at net.core.somaxconn (4096 since Linux
# 5.4): ask for the most and let that sysctl decide.  A fixed 1024 dropped
# SYNs (a second's retry each) in a reconnect storm of 100,000 clients.
LISTEN_BACKLOG = 65535


@attrs.define
class Bound:
    """What the listeners actually bound (port 0 resolved)."""

    http: Addr | None = None
    https: Addr | None = None


def open_listener(addr: Addr) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr.host, addr.port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bound(sock: socket.socket) -> Addr:
    host, port = sock.getsockname()[:2]
    return Addr(host, port)


def open_listeners(settings: Settings, ssl_context: ssl.SSLContext | None,
                   bound: Bound) -> list[tuple[socket.socket, str]]:
    """The listening sockets: those systemd passed (socket activation),
    else bound from the settings.  Fills ``bound``."""
    server = settings.server
    inherited = systemd.inherited_listeners()
    if inherited is not None:
        if "https" in inherited and ssl_context is None:
            for sock in inherited.values():
                sock.close()
            raise systemd.SocketActivationError(
                "socket activation: an https socket was passed but [server] https is off, "
                "so there is no TLS certificate to serve it with")
        log.info("socket activation: using the inherited socket(s) (%s); [server] http/https are not bound",
                 ", ".join(inherited))
        wanted = list(inherited.items())
    else:
        wanted = [(scheme, addr) for scheme, addr in (("http", server.http), ("https", server.https))
                  if addr is not None]
    listeners: list[tuple[socket.socket, str]] = []
    try:
        for scheme, source in wanted:
            sock = source if isinstance(source, socket.socket) else open_listener(source)
            listeners.append((sock, scheme))
            setattr(bound, scheme, _bound(sock))
    except OSError:
        for sock, _ in listeners:
            sock.close()
        raise
    return listeners
