"""``POST /api/ticket`` and ``POST /api/streams/ID/refresh`` (SPEC §13).

Tickets: a bearer token in, ``{"ticket":T,"expires_in":N}`` out, where
``N`` is 30 seconds or what is left of the token, whichever is less (a
ticket never outlives its token).  Where tickets wait and how single use
holds across nodes: :mod:`realtime.session.streams`.

Refresh: the body's token replaces the stream's if
:func:`realtime.session.refresh.refresh` allows it (same ``sub`` and
``client_id``, a live principal); the stream gets ``event: refreshed``
and the answer is ``{"expires_at":EPOCH}``.  The token in the body is the
credential; the stream id (random, 128 bits) only names the stream.  A
stream lives on one node: the request must reach that node (404 on any
other; see the README).

Both are limited per principal at ``[api] publish_rate`` (the same
buckets as ``/api/publish``, kept apart), checked right after the
token's signature and before any store or stream work.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from realtime.api.app import App
from realtime.api.publish_limit import PrincipalLimit
from realtime.hub import BrokerUnavailable
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, bearer_challenge, error_response, json_response
from realtime.http.router import Router
from realtime.session.refresh import ANOTHER_PRINCIPAL, Refused, apply_refresh, verify_refresh
from realtime.session.streams import TICKET_TTL
from realtime.tokens.bearer import header_token, verify_bearer

log = logging.getLogger("realtime.api")

STREAMS_PREFIX = "/api/streams/"

def _over_rate(kind: str, state: App, sub: str, client_id: str) -> Response | None:
    spec = state.settings.api.publish_rate
    limit = state.stream_limits.get(kind)
    if limit is None or limit.spec != spec:  # first use, or a reload changed the rate
        limit = state.stream_limits[kind] = PrincipalLimit(spec)
    wait = limit.retry_after(sub, client_id, state.monotonic())
    if not wait:
        return None
    return error_response(429, "rate_limited", f"over the rate ({spec}); retry later", (("retry-after", str(wait)),))


async def ticket(request: Request, state: App) -> Response:
    """POST /api/ticket with ``Authorization: Bearer``."""
    claims = verify_bearer(header_token(request), state.settings, state.keyring, state.revoked)
    if isinstance(claims, Response):
        return claims
    refused = _over_rate("ticket", state, claims.sub, claims.client_id)
    if refused is not None:
        return refused
    expires_in = min(TICKET_TTL, math.floor(claims.exp - time.time()))
    if expires_in < 1:
        return bearer_challenge(401, "invalid_token", "the token expires too soon for a ticket")
    try:
        issued = await state.tickets.issue(claims, expires_in)
    except BrokerUnavailable as exc:
        log.warning("ticket store unreachable: %s", exc)
        return error_response(503, "unavailable", "the ticket store is unreachable", (("retry-after", "1"),))
    return json_response(200, {"ticket": issued, "expires_in": expires_in}, headers=(("cache-control", "no-store"),))


async def refresh_stream(request: Request, state: App) -> Response:
    """POST /api/streams/ID/refresh with ``{"token": T}``."""
    rest = request.path[len(STREAMS_PREFIX):]
    stream_id, _, action = rest.partition("/")
    if action != "refresh" or not stream_id:
        return error_response(404, "not_found", "no such endpoint")
    try:
        body: Any = request.json()
    except BadRequest as exc:
        return error_response(400, "invalid_request", str(exc))
    if not isinstance(body, dict) or set(body) != {"token"} or not isinstance(body["token"], str):
        return error_response(400, "invalid_request", 'expected {"token": "..."}')
    stream = state.streams.get(stream_id)
    if stream is None:
        return await _refresh_elsewhere(stream_id, body["token"], state)
    # The token first: only a token of the stream's own principal spends
    # that principal's bucket, so a stranger who learnt the stream id cannot
    # use it up and make the owner's real refresh fail.
    claims = verify_refresh(body["token"], stream.sub, stream.client_id, state)
    if isinstance(claims, Refused):
        return _refused(claims)
    refused = _over_rate("refresh", state, stream.sub, stream.client_id)
    if refused is not None:
        return refused
    outcome = apply_refresh(claims, stream, state)
    stream.refreshed(outcome.claims, outcome.lost)
    return _moved(outcome.claims.exp)


async def _refresh_elsewhere(stream_id: str, token: str, state: App) -> Response:
    """A stream of another node (with a broker): check the token here
    against the directory's entry, then hand the claims to its node."""
    unknown = error_response(404, "unknown_stream", "no live stream with this id")
    directory = state.stream_directory
    if directory is None:
        return unknown
    try:
        entry = await directory.lookup(stream_id)
        if entry is None:
            return unknown
        claims = verify_refresh(token, entry.sub, entry.client_id, state)
        if isinstance(claims, Refused):
            return _refused(claims)
        refused = _over_rate("refresh", state, entry.sub, entry.client_id)
        if refused is not None:
            return refused
        if not await directory.forward(stream_id, claims):
            return unknown
    except BrokerUnavailable as exc:
        log.warning("stream directory unreachable: %s", exc)
        return error_response(503, "unavailable", "the stream directory is unreachable", (("retry-after", "1"),))
    return _moved(claims.exp)


def _refused(refused: Refused) -> Response:
    status = 403 if refused.message == ANOTHER_PRINCIPAL else 401
    return bearer_challenge(status, "invalid_token", refused.message)


def _moved(exp: int) -> Response:
    return json_response(200, {"expires_at": exp}, headers=(("cache-control", "no-store"),))


def register(router: Router) -> None:
    router.add("POST", "/api/ticket", ticket)
    router.add_prefix("POST", STREAMS_PREFIX, refresh_stream)
