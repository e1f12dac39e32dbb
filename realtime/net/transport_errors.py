"""How a transport ends a connection: the two errors its reads and writes
raise, each carrying its close code (:mod:`realtime.protocol.close`).

A module of their own because both sides of the transport raise them:
:mod:`realtime.net.transport` (the socket, the wire and the queue) and
:mod:`realtime.net.tls_records` (the TLS record layer it composes), and
the record layer must not import the transport that holds it.
"""

from __future__ import annotations

from realtime.protocol.close import CloseCode, CloseError


class TransportClosed(CloseError, code=CloseCode.ABORT, reason="connection lost"):
    """The peer went away or the transport was closed; nothing more to do.
    (A session it ends sends no close frame: no peer is left to read one.)"""


class BacklogOverflow(CloseError, code=CloseCode.SLOW_CONSUMER, reason="slow consumer"):
    """The outbound backlog passed its byte limit (a slow consumer)."""
