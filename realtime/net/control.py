"""The operator's control socket: ``STATE_DIR/control.sock``, a unix
socket of mode 0600 on which the server answers the server API
(SPEC §11) without a token.  ``realtime connections``, ``disconnect``
and ``revoke`` talk to it (:mod:`realtime.cli.operator`).

Why a socket and not a token signed locally: the CLI then needs neither
the server's address (port 0, several listeners, TLS) nor a key, and
the kernel's file permissions decide who is the operator, exactly as
for the state dir itself (0700).  Several nodes on one state dir: the
first one to start owns the socket; the others log that and go without.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from realtime.api import admin_api
from realtime.http.router import Router
from realtime.net.http_connection import HttpConnection
from realtime.net.transport import Transport

if TYPE_CHECKING:
    from realtime.api.app import App

__all__ = ["CONTROL_SOCKET", "open_control_socket", "serve_control"]

log = logging.getLogger("realtime.server")

CONTROL_SOCKET = "control.sock"


def _in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def open_control_socket(state_dir: Path) -> socket.socket | None:
    """Bind the control socket (mode 0600), or ``None`` when another live
    server owns it or the path is unusable (logged, never fatal)."""
    path = state_dir / CONTROL_SOCKET
    if path.exists() or path.is_symlink():
        if _in_use(path):
            log.info("control socket %s belongs to another server on this state dir; not serving one", path)
            return None
        path.unlink()  # left by a server that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: no window where others may connect
    try:
        sock.bind(str(path))
        sock.listen(16)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        log.warning("cannot open the control socket %s: %s", path, exc.strerror or exc)
        return None
    finally:
        os.umask(old)
    return sock


async def serve_control(sock: socket.socket, state: "App", handlers: trio.Nursery,
                        conns: set[HttpConnection]) -> None:
    """Accept on the control socket until cancelled, then remove it."""
    router = Router()
    admin_api.register_control(router)
    path = sock.getsockname()
    try:
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                conn_sock, _ = sock.accept()
            except BlockingIOError:
                continue
            conn = HttpConnection(Transport(conn_sock, None), state, router, "http", set())
            conns.add(conn)
            handlers.start_soon(_run, conn, conns)
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass


async def _run(conn: HttpConnection, conns: set[HttpConnection]) -> None:
    try:
        await conn.run()
    except Exception:  # noqa: BLE001 - one connection's bug must not end the server
        log.exception("control connection failed")
    finally:
        conns.discard(conn)
