"""The gate's I/O before a session takes a connection over: a
``?ticket=`` redeemed (a WebSocket upgrade and ``GET /sse`` both take
one), and an SSE stream checked, subscribed and started.

The checks themselves are plain functions of ``protocol/upgrade.py``;
what needs the ticket store, the hub or the transport is here, apart
from :mod:`realtime.net.http_connection`, which answers with the refusal
or hands itself over to the session.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from realtime.http.request import Request
from realtime.http.responses import SECURITY_HEADERS, Response, error_response
from realtime.http.transport_security import hsts_headers
from realtime.hub import BrokerUnavailable
from realtime.net.sse import SseSession
from realtime.net.transport import Transport
from realtime.protocol.upgrade import StreamRequest, check_stream, stream_problem, ticket_of, ticket_principal
from realtime.tokens.keyring import AccessClaims

if TYPE_CHECKING:
    from realtime.api.app import App


async def redeem_ticket(state: "App", request: Request) -> AccessClaims | Response | None:
    """A ``?ticket=`` redeemed (a store round trip, so here, with I/O)."""
    ticket = ticket_of(request)
    if ticket is None or isinstance(ticket, Response):
        return ticket
    try:
        claims = await state.tickets.redeem(ticket)
    except BrokerUnavailable:
        return error_response(503, "unavailable", "the ticket store is unreachable; try again",
                              (("retry-after", "1"),))
    return ticket_principal(claims, state.settings, state.keyring, state.revoked, time.time())


async def open_event_stream(state: "App", transport: Transport, request: Request,
                            scheme: str) -> SseSession | Response:
    """``GET /sse`` (SPEC §13): the gate, then the subscriptions; the
    session (only if all went through) to take the connection, else the
    answer that refuses it."""
    problem = stream_problem(request, state.settings)  # before a ticket is spent on it
    if problem is not None:
        return problem
    principal = await redeem_ticket(state, request)
    decision = check_stream(request, state.settings, state.keyring, state.revoked,
                            state.hub.allows_any_channel, principal=principal)
    if not isinstance(decision, StreamRequest):
        return decision
    hsts = hsts_headers(state.settings.server) if scheme == "https" else ()
    extra = b"".join(f"{name}: {value}\r\n".encode("latin-1")
                     for name, value in (*SECURITY_HEADERS, *hsts))
    session = SseSession(transport, decision, state, extra_head=extra)
    refusal = await session.start()
    if refusal is not None:
        return refusal
    return session
