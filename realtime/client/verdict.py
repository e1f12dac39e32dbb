"""How a WebSocket connection ended: reconnect (with a new token first?),
or let the exception through (cancellation, a fatal error, a bug)."""

from __future__ import annotations

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

from realtime.client.errors import AuthError, ChannelError, TransportError
from realtime.client.http_client import describe_error
from realtime.protocol.close import NEEDS_NEW_TOKEN


class Reconnect(Exception):
    """Leave this connection and open a new one."""

    def __init__(self, why: str, refresh: bool = False) -> None:
        super().__init__(why)
        self.refresh = refresh


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


def verdict_of(exc: BaseException) -> tuple[str, bool, bool] | None:
    """How a connection ended: (why, get a new token first, it had worked),
    or None to let the exception through (cancellation, fatal, a bug)."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, (trio.Cancelled, KeyboardInterrupt, SystemExit)):
            return None
    for leaf in leaves:
        if isinstance(leaf, (AuthError, ChannelError)):
            raise leaf
    leaf = leaves[0]
    if isinstance(leaf, ConnectionRejected):
        if leaf.status_code == 401:
            return "the server refused the token (401)", True, False
        if leaf.status_code == 403:
            raise AuthError("the token allows no channel (403 insufficient_scope)")
        return f"the handshake was refused with HTTP {leaf.status_code}", False, False
    if isinstance(leaf, ConnectionClosed):
        code = leaf.reason.code if leaf.reason is not None else None
        reason = leaf.reason.reason if leaf.reason is not None else None
        return f"closed {code}{f' ({reason})' if reason else ''}", code in NEEDS_NEW_TOKEN, True
    if isinstance(leaf, Reconnect):
        return str(leaf), leaf.refresh, True
    if isinstance(leaf, trio.TooSlowError):
        return "the server did not answer the handshake in time", False, False
    if isinstance(leaf, (OSError, HandshakeError, trio.BrokenResourceError, TransportError)):
        return f"cannot connect: {describe_error(leaf)}", False, False
    return None
