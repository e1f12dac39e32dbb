"""One plain HTTP/1.1 request read through h11: the head's size and
framing checks, the body under its size limit and deadline, and the
:class:`Request` value the handlers take; plus the errors a request ends
in (:class:`RequestFailed`, and h11's status hints as JSON answers).

Apart from :mod:`realtime.net.http_connection` because reading a request
is the same for every request of a connection, while the connection
decides what happens around it (the quick path for a fresh upgrade,
keep-alive, the hand-off to a session).  A fresh connection's
well-formed upgrade never comes here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11
import trio

from realtime.http.request import Request
from realtime.http.responses import Response, error_response
from realtime.http.transport_security import behind_tls_proxy
from realtime.net.transport import Transport
from realtime.net.transport_errors import TransportClosed

if TYPE_CHECKING:
    from realtime.api.app import App


class RequestFailed(Exception):
    """Answer this error and close the connection."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def receive_event(conn: h11.Connection, transport: Transport) -> object:
    """h11's next event, reading from ``transport`` as long as it needs data."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await transport.receive_some()
        conn.receive_data(data)


async def read_request(conn: h11.Connection, transport: Transport, event: h11.Request, state: "App",
                       scheme: str, client_host: str | None) -> Request:
    """The body of the request ``event`` began, and the :class:`Request`
    (behind a trusted TLS proxy, with the scheme it forwarded).

    Raises:
        RequestFailed: 413 for a body over ``[server] max_body_bytes``, 408
            for one slower than ``header_timeout``, 400 for a target that is
            not ASCII.
        TransportClosed: the peer closed before the end of the body.
    """
    server = state.settings.server
    length = None
    for name, value in event.headers:
        if name == b"content-length":
            length = int(value)
    if length is not None and length > server.max_body_bytes:
        raise RequestFailed(_too_large(server.max_body_bytes))
    body = bytearray()
    with trio.move_on_after(server.header_timeout) as timer:
        while True:
            part = await receive_event(conn, transport)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > server.max_body_bytes:
                    raise RequestFailed(_too_large(server.max_body_bytes))
            elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
                break
            elif isinstance(part, h11.ConnectionClosed):
                raise TransportClosed
    if timer.cancelled_caught:
        raise RequestFailed(error_response(408, "request_timeout", "request body too slow"))
    try:
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers)
        target = event.target.decode("ascii")
    except UnicodeDecodeError:
        raise RequestFailed(error_response(400, "bad_request", "request target is not ASCII")) from None
    host = client_host if client_host is not None else transport.peer()[0]
    return behind_tls_proxy(Request(
        method=event.method.decode("ascii", "replace"),
        target=target,
        headers=headers,
        body=bytes(body),
        client_host=host,
        scheme=scheme,
    ), state.settings.server)


def head_size(event: h11.Request) -> int:
    """The size of a request head as sent, give or take the whitespace h11
    strips: the request line and each header line with their CRLFs."""
    size = len(event.method) + len(event.target) + len(b"  HTTP/1.1\r\n\r\n")
    for name, value in event.headers.raw_items():
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


def has_header(event: h11.Request, name: bytes) -> bool:
    return any(key == name for key, _ in event.headers)


def _too_large(limit: int) -> Response:
    return error_response(413, "body_too_large", f"body over {limit} bytes")


#: h11's ``error_status_hint`` -> (error code, description).
REMOTE_ERRORS = {
    400: ("bad_request", "malformed request"),
    431: ("header_too_large", "request header too large"),
    501: ("not_implemented", "only Transfer-Encoding: chunked is supported"),
    505: ("http_version_not_supported", "HTTP version not supported"),
}
