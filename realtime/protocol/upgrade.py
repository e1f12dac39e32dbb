"""The WebSocket gate: validate the upgrade and the bearer token before any
``101`` is sent (SPEC §4).  No I/O: a request goes in, either an
:class:`Accept` or an HTTP :class:`Response` comes out.

Token sources, in order (the first present one is used):
1. ``Authorization: Bearer <token>``;
2. ``Sec-WebSocket-Protocol: realtime.v1, bearer.<token>`` — browsers
   cannot set headers; we select ``realtime.v1`` and never echo the token;
3. ``?access_token=`` only where ``[websocket] token_in_query = true``
   (RFC 6750 §2.3 warns that URLs end up in logs).

Or a ticket (SPEC §13): ``?ticket=`` from ``POST /api/ticket``, single use
and short-lived, so a browser never puts a long-lived token in a URL.  The
shell redeems it (a store round trip) and passes the outcome in as
``principal`` (:func:`ticket_principal`), as for an OAuth 1.0a signed
upgrade; a ticket wins over the other sources when both are present.

``GET /sse`` (SPEC §13) has the same gate without the upgrade headers:
:func:`check_stream`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import attrs
from wsproto.utilities import generate_accept_token

from realtime.http.quick_head import read_get_head
from realtime.http.request import Request, split_target
from realtime.http.responses import Response, bearer_challenge, error_response
from realtime.http.transport_security import behind_tls_proxy, refuse_plain_http
from realtime.config.settings import Settings
from realtime.protocol import sse
from realtime.tokens.bearer import principal_problem, verify_bearer
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


def quick_upgrade(data: bytes, settings: Settings, scheme: str, client_host: str) -> Request | None:
    """The request, when ``data`` (a connection's first bytes) is exactly one
    well-formed WebSocket upgrade head for our paths that h11 would read the
    same way (:mod:`realtime.http.quick_head`) and the plain-HTTP rules let
    through; else None, and h11 reads the bytes as usual, errors and all."""
    server = settings.server
    ws = settings.websocket
    if len(data) > server.max_header_bytes:
        return None  # h11 and the connection's head size check decide about big heads
    head = read_get_head(data)
    if head is None:
        return None
    target, headers = head
    path = split_target(target)[0]
    if path != ws.path and not (ws.echo_path and path == ws.echo_path):
        return None
    request = behind_tls_proxy(Request(method="GET", target=target, headers=headers, client_host=client_host,
                                       scheme=scheme), server)
    if not is_upgrade(request) or refuse_plain_http(request, server) is not None:
        return None
    return request


def handshake_problem(request: Request) -> Response | None:
    """What is wrong with the upgrade itself (before any credential), or None."""
    return _handshake_problem(request)


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


def foreign_origin(request: Request, settings: Settings) -> Response | None:
    """A 403 for a browser ``Origin`` that ``allowed_origins`` does not
    list (when it lists any), or None."""
    allowed = settings.websocket.allowed_origins
    origin = request.header("origin")
    if allowed and origin is not None and origin not in allowed:
        return error_response(403, "forbidden_origin", "Origin not allowed")
    return None


def _credentials(request: Request, settings: Settings, keyring: KeyRing, revoked: RevokedSet,
                 now: float | None, principal: AccessClaims | Response | None) -> AccessClaims | Response:
    """``principal`` when the caller already checked the credentials, else
    the bearer token's claims (or its 401)."""
    if principal is not None:
        return principal
    return verify_bearer(find_token(request, settings), settings, keyring, revoked, now)


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
    origin_problem = foreign_origin(request, settings)
    if origin_problem is not None:
        return origin_problem
    result = _credentials(request, settings, keyring, revoked, now, principal)
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


def switching_head(accept: Accept, *extra: tuple[str, str]) -> bytes:
    """The ``101 Switching Protocols`` head for ``accept``, byte for byte
    what h11 writes for it (``extra`` headers first, e.g. ``server``)."""
    lines = [b"HTTP/1.1 101 \r\n"]
    lines += [b"%s: %s\r\n" % (name.encode("ascii"), value.encode("ascii")) for name, value in (*extra, *accept.headers)]
    lines.append(b"\r\n")
    return b"".join(lines)


# -- tickets (SPEC §13) ---------------------------------------------------------


def ticket_of(request: Request) -> str | None | Response:
    """The ``?ticket=`` of a request, ``None`` when there is none, or a 400
    when it is given more than once or empty."""
    values = request.query.get("ticket")
    if values is None:
        return None
    if len(values) != 1 or not values[0]:
        return error_response(400, "invalid_request", "give one non-empty ticket")
    return values[0]


def ticket_principal(
    claims: AccessClaims | None, settings: Settings, keyring: KeyRing, revoked: RevokedSet, now: float
) -> AccessClaims | Response:
    """What a redeemed ticket stands for now: the claims of the token it was
    issued for, if that token could still pass the gate (a 401 if not).

    ``claims`` is ``None`` for an unknown, spent or expired ticket.
    """
    if claims is None:
        return bearer_challenge(401, "invalid_token", "unknown, used or expired ticket")
    if claims.exp <= now:
        return bearer_challenge(401, "invalid_token", "the ticket's token has expired")
    # The ticket carries the claims as they were when it was made: a
    # revocation since (by jti, or a POST /api/revoke cut-off) must still hold.
    if claims.jti in revoked or revoked.cut_off(claims.sub, claims.client_id, claims.iat):
        return bearer_challenge(401, "invalid_token", "the ticket's token was revoked")
    if claims.kid not in keyring.keys:
        return bearer_challenge(401, "invalid_token", "the ticket's signing key was retired")
    problem = principal_problem(claims, settings)
    if problem is not None:
        return bearer_challenge(401, "invalid_token", problem)
    return claims


# -- GET /sse ---------------------------------------------------------------------


@attrs.frozen
class StreamRequest:
    """An accepted ``GET /sse``.

    Attributes:
        claims: the verified token (or ticket) behind it.
        channels: the channels asked for, in order, without repeats;
            ``user:<sub>`` when none was named.
        positions: the ``Last-Event-ID`` read as channel -> seq, or
            ``None`` when the client is not resuming.
    """

    claims: AccessClaims
    channels: tuple[str, ...]
    positions: dict[str, int] | None


def check_stream(
    request: Request,
    settings: Settings,
    keyring: KeyRing,
    revoked: RevokedSet,
    allows_any_channel: Callable[[frozenset[str]], bool],
    now: float | None = None,
    principal: AccessClaims | Response | None = None,
) -> StreamRequest | Response:
    """Decide a ``GET /sse`` (SPEC §13): the token as on ``/ws`` (header,
    ``?access_token=`` only with ``token_in_query``, or a ticket passed in
    as ``principal``), the channels and the resume position.

    Returns the accepted request, or the HTTP error to answer before any
    stream starts: 405 (not GET), 406 (``Accept`` without
    ``text/event-stream``), 400 (bad channels or ``Last-Event-ID``), 401
    (token), 403 (a token that may use no channel, a foreign ``Origin``).
    Whether each channel is allowed is the hub's answer at subscribe time.
    """
    problem = stream_problem(request, settings)
    if problem is not None:
        return problem
    query = request.query
    raw_channels = query.get("channel", [])
    if len(raw_channels) > settings.websocket.max_subscriptions:
        return error_response(400, "too_many_subscriptions",
                              f"at most {settings.websocket.max_subscriptions} channels per stream")
    if any(not channel for channel in raw_channels):
        return error_response(400, "bad_channel", "a channel name may not be empty")
    last_ids = query.get("last_event_id", [])
    if len(last_ids) > 1:
        return error_response(400, "invalid_request", "give last_event_id once")
    last_id = request.header("last-event-id")
    if last_id is None and last_ids:
        last_id = last_ids[0]
    try:
        positions = None if last_id is None else sse.decode_positions(last_id)
    except sse.PositionError as exc:
        return error_response(400, "bad_last_event_id", str(exc))
    result = _credentials(request, settings, keyring, revoked, now, principal)
    if isinstance(result, Response):
        return result
    if not allows_any_channel(result.scope) and raw_channels != [f"user:{result.sub}"] and raw_channels:
        return bearer_challenge(403, "insufficient_scope", "token allows no channel")
    channels = tuple(dict.fromkeys(raw_channels)) or (f"user:{result.sub}",)
    return StreamRequest(claims=result, channels=channels, positions=positions)


def stream_problem(request: Request, settings: Settings) -> Response | None:
    """What is wrong with a ``GET /sse`` before any credential (so a ticket
    is not spent on it), or None."""
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "an event stream is opened with GET", (("allow", "GET"),))
    accept = request.header("accept")
    if accept is not None and not _accepts_event_stream(accept):
        return error_response(406, "not_acceptable", f"this endpoint answers {sse.CONTENT_TYPE}")
    return foreign_origin(request, settings)


def _accepts_event_stream(accept: str) -> bool:
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in (sse.CONTENT_TYPE, "text/*", "*/*"):
            return True
    return False
