"""Every WebSocket close code the server sends and the client reads, in one
table (SPEC.md §4 "Close codes", DESIGN.md §2).

Why one ``IntEnum``: "where is 4009 decided" should be one hop.  Each code
is named here once; the session, the hub's callers, the reload and the
Python client name it instead of repeating the number.  An ``IntEnum``
member *is* its number, so it goes into a close frame, a ``/metrics``
label or a comparison with a peer's code unchanged.

The errors that end a session carry their code (as wsproto's
``ParseFailed`` does): every :class:`CloseError` (the peer's
:class:`ProtocolError` family here, :class:`realtime.protocol.messages.InvalidJSON`,
and the transport's ``BacklogOverflow`` and ``TransportClosed``).  Their ``close_reason`` is the text sent in the close
frame; it is part of what a client sees, so it never changes.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

import attrs

__all__ = [
    "CloseCode",
    "NEEDS_NEW_TOKEN",
    "Close",
    "CloseError",
    "ProtocolError",
    "BINARY_REFUSED",
    "TOO_BIG",
    "RATE_LIMITED",
]


class CloseCode(IntEnum):
    """The close codes of SPEC.md §4 and the RFC 6455 §7.4.1 ones we use."""

    #: RFC 6455: "normal closure"; the default when nothing else decided.
    NORMAL = 1000
    #: SPEC §1, §4: "1001 shutdown" (SIGTERM/SIGINT, drain); the client also
    #: sends it when it leaves a server that stopped answering pings.
    GOING_AWAY = 1001
    #: RFC 6455: "terminating the connection due to a protocol error"
    #: (decided by the frame parser, protocol/ws_reader.py).
    PROTOCOL_ERROR = 1002
    #: RFC 6455: "received a type of data it cannot accept": a binary message.
    UNSUPPORTED_DATA = 1003
    #: RFC 6455: "no status code was actually present"; never sent.
    NO_STATUS = 1005
    #: RFC 6455: "closed abnormally ... without sending or receiving a Close
    #: control frame"; never sent: the peer is gone, the socket is dropped.
    ABORT = 1006
    #: SPEC §4: "1007 invalid JSON or UTF-8".
    INVALID_DATA = 1007
    #: SPEC §4: "1009 message too big" (``[websocket] max_message_bytes``).
    TOO_BIG = 1009
    #: SPEC §4: "4001 token expired": the deadline passed without a refresh.
    TOKEN_EXPIRED = 4001
    #: SPEC §4: "4003 access withdrawn (token revoked, app or user removed or
    #: disabled, signing key retired)".
    REVOKED = 4003
    #: SPEC §4: "4008 rate limit" (``[websocket] publish_rate``).
    RATE_LIMITED = 4008
    #: SPEC §4: "4009 slow consumer (its outbound buffer passed
    #: ``[websocket] max_backlog_bytes``)".
    SLOW_CONSUMER = 4009


#: after these a client needs a new token before it reconnects
NEEDS_NEW_TOKEN = frozenset({CloseCode.TOKEN_EXPIRED, CloseCode.REVOKED})


@attrs.frozen
class Close:
    """A decision to end a session: the code and the close frame's reason."""

    code: int  # a CloseCode, or a peer's code echoed back
    reason: str


class CloseError(Exception):
    """An error that ends a session; ``close_code`` and ``close_reason``
    say how (the reason is what the close frame carries; the exception's
    own text may say more, for logs).

    A subclass names both in its class line, so the code sits beside the
    error it belongs to::

        class InvalidJSON(ProtocolError, code=CloseCode.INVALID_DATA, reason="invalid JSON"): ...
    """

    close_code: ClassVar[CloseCode] = CloseCode.PROTOCOL_ERROR
    close_reason: ClassVar[str] = "protocol error"

    def __init_subclass__(cls, *, code: CloseCode | None = None, reason: str | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if code is not None:
            cls.close_code = code
        if reason is not None:
            cls.close_reason = reason

    def close(self) -> Close:
        """The close this error asks for."""
        return Close(self.close_code, self.close_reason)


class ProtocolError(CloseError, code=CloseCode.PROTOCOL_ERROR, reason="protocol error"):
    """The peer broke the protocol (h11's ``RemoteProtocolError``)."""


# Closes decided by a rule, not raised: the session ends with these as values.
#: A binary message: the protocol is JSON text (SPEC §4).
BINARY_REFUSED = Close(CloseCode.UNSUPPORTED_DATA, "binary messages are not accepted")
#: A message over ``[websocket] max_message_bytes``.
TOO_BIG = Close(CloseCode.TOO_BIG, "message too big")
#: More publishes than ``[websocket] publish_rate`` allows.
RATE_LIMITED = Close(CloseCode.RATE_LIMITED, "publish rate limit")
