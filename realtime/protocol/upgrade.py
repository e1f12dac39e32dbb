"""The WebSocket gate: validate the upgrade and the bearer token before any
``101`` is sent (SPEC §4).  No I/O: a request goes in, either an
:class:`Accept` or an HTTP :class:`Response` comes out.

Token sources, in order (the first present one is used):
1. ``Authorization: Bearer <token>``;
2. ``Sec-WebSocket-Protocol: realtime.v1, bearer.<token>`` — browsers
   cannot set headers; we select ``realtime.v1`` and never echo the token;
3. ``?access_token=`` only where ``[websocket] token_in_query = true``
   (RFC 6750 §2.3 warns that URLs end up in logs).
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import attrs
from wsproto.utilities import generate_accept_token

from realtime.http.request import Request
from realtime.http.responses import Response, bearer_challenge, error_response
from realtime.config.settings import Settings
from realtime.tokens.bearer import verify_bearer
from realtime.tokens.keyring import AccessClaims, KeyRing, RevokedSet

SUBPROTOCOL = "realtime.v1"
BEARER_PREFIX = "bearer."


@attrs.frozen
class Accept:
    claims: AccessClaims
    subprotocol: str | None
    headers: tuple[tuple[str, str], ...]  # the 101 response headers


def is_upgrade(request: Request) -> bool:
    """True when the client asks for a WebSocket (RFC 6455 §4.2.1 items 3–4)."""
    upgrade = (request.header("upgrade") or "").strip().lower()
    tokens = {t.strip().lower() for v in request.header_values("connection") for t in v.split(",")}
    return upgrade == "websocket" and "upgrade" in tokens


def _handshake_problem(request: Request) -> Response | None:
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "WebSocket upgrades use GET", (("allow", "GET"),))
    version = request.header("sec-websocket-version")
    if version is None or version.strip() != "13":
        # RFC 6455 §4.4: answer with the versions we do speak.
        return error_response(
            426, "unsupported_version", "Sec-WebSocket-Version must be 13",
            (("sec-websocket-version", "13"),),
        )
    key = request.header("sec-websocket-key")
    try:
        if key is None or len(base64.b64decode(key.strip(), validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        return error_response(400, "invalid_request", "Sec-WebSocket-Key must be 16 base64 bytes")
    return None


def offered_subprotocols(request: Request) -> list[str]:
    return [
        item.strip()
        for value in request.header_values("sec-websocket-protocol")
        for item in value.split(",")
        if item.strip()
    ]


def find_token(request: Request, settings: Settings) -> str | None:
    auth = request.header("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None  # a present but non-bearer header is not silently ignored
    for proto in offered_subprotocols(request):
        if proto.startswith(BEARER_PREFIX) and len(proto) > len(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX):]
    if settings.websocket.token_in_query:
        values = parse_qs(urlsplit(request.target).query).get("access_token")
        if values and len(values) == 1 and values[0]:
            return values[0]
    return None


def check_upgrade(
    request: Request,
    settings: Settings,
    keyring: KeyRing,
    revoked: RevokedSet,
    allows_any_channel: Callable[[frozenset[str]], bool] | None = None,
    now: float | None = None,
    principal: AccessClaims | Response | None = None,
) -> Accept | Response:
    """Decide a WebSocket upgrade request.

    Returns the 101 headers and the verified claims, or the HTTP error
    response to send instead (400/403/405/426 for a bad handshake, 401 for
    a bad token, 403 for a token that may use no channel or a foreign
    ``Origin``).

    ``principal``: the outcome of verifying credentials the caller already
    checked with I/O (an OAuth 1.0a signed upgrade, see
    :func:`realtime.oauth1.resource.oauth1_principal`); it replaces the
    bearer token check.
    """
    problem = _handshake_problem(request)
    if problem is not None:
        return problem
    allowed = settings.websocket.allowed_origins
    origin = request.header("origin")
    if allowed and origin is not None and origin not in allowed:
        return error_response(403, "forbidden_origin", "Origin not allowed")
    if principal is not None:
        result = principal
    else:
        result = verify_bearer(find_token(request, settings), settings, keyring, revoked, now)
    if isinstance(result, Response):
        return result
    claims = result
    if allows_any_channel is not None and not allows_any_channel(claims.scope):
        return bearer_challenge(403, "insufficient_scope", "token allows no channel")
    key = (request.header("sec-websocket-key") or "").strip().encode()
    headers: list[tuple[str, str]] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", generate_accept_token(key).decode()),
    ]
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(request) else None
    if subprotocol is not None:
        headers.append(("sec-websocket-protocol", subprotocol))
    return Accept(claims=claims, subprotocol=subprotocol, headers=tuple(headers))

