"""Routes outside OAuth (health, publish, presence, metrics), and the
router assembled from every layer's routes (:func:`register`)."""

from __future__ import annotations

import logging
from typing import Any

from realtime.api import admin_api, console, demo, idempotency
from realtime.api import streams
from realtime.api.app import App
from realtime.api.metrics import render
from realtime.api.publish_limit import PrincipalLimit, data_too_large
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, bearer_challenge, error_response, json_response, text_response
from realtime.http.router import Router
from realtime.oauth import routes as oauth_routes
from realtime.oauth1 import routes as oauth1_routes
from realtime.oauth1 import signing as oauth1_signing
from realtime.oauth1.resource import oauth1_principal
from realtime.hub import HubError
from realtime.hub.broker import BrokerUnavailable
from realtime.session.dispatch import presence_answer
from realtime.tokens.bearer import header_token, verify_bearer

log = logging.getLogger("realtime.api")


async def healthz(request: Request, state: App) -> Response:
    return text_response(200, "ok\n")


def _bearer_claims(request: Request, state: App) -> Any:
    """RFC 6750 §2.1: the ``Authorization: Bearer`` token, verified (claims or a 401)."""
    return verify_bearer(header_token(request), state.settings, state.keyring, state.revoked)


def _hub_error(exc: Any, state: App, channel: str, scope_of: str) -> Response:
    """A HubError as an HTTP answer; ``scope_of`` names the rule's scope a 403 asks for."""
    if exc.code == "unavailable":
        return _unavailable(exc.message)
    if exc.code == "forbidden":
        rule = state.hub.rule_for(channel)
        return bearer_challenge(403, "insufficient_scope", exc.message,
                                scope=getattr(rule, scope_of) if rule is not None else None)
    return error_response(404 if exc.code == "unknown_channel" else 400, exc.code, exc.message)


async def publish(request: Request, state: App) -> Response:
    """POST /api/publish {"channel", "data"} with a bearer token holding the
    channel's publish scope; answers {"delivered": N, "seq": S}."""
    if oauth1_signing.is_signed(request):  # OAuth 1.0a signed request (realtime.oauth1)
        claims = await oauth1_principal(request, state)
    else:
        claims = _bearer_claims(request, state)
    if isinstance(claims, Response):
        return claims
    try:
        body = request.json()
    except BadRequest as exc:
        return error_response(400, "invalid_request", str(exc))
    if not isinstance(body, dict) or set(body) - {"channel", "data", "idempotency_key"} or "channel" not in body:
        return error_response(400, "invalid_request", 'expected {"channel": ..., "data": ..., "idempotency_key"?: ...}')
    channel = body["channel"]
    if not isinstance(channel, str):
        return error_response(400, "bad_channel", "channel must be a string")
    key = body.get("idempotency_key")
    if key is not None and (problem := idempotency.key_problem(key)) is not None:
        return error_response(400, "invalid_request", problem)
    refused = _over_publish_rate(state, claims)  # first: an oversized flood is refused cheaply too
    if refused is not None:
        return refused
    limit = state.settings.websocket.max_message_bytes
    if data_too_large(request.body, body.get("data"), limit):
        return error_response(413, "too_large", f"data is over {limit} bytes once encoded as JSON")
    if key is None:
        return await _publish(state, claims, channel, body.get("data"))
    return await _publish_once(state, claims, channel, body.get("data"),
                               idempotency.scoped(key, claims.sub, getattr(claims, "client_id", "") or ""))


async def _publish_once(state: App, claims: Any, channel: str, data: Any, key: str) -> Response:
    """:func:`_publish` unless ``key`` was seen within the window: then the
    first answer again (SPEC §11)."""
    try:
        seen = await idempotency.claim(state, key)
    except BrokerUnavailable:
        return _unavailable("the message broker is unreachable; try again")
    if seen == idempotency.IN_FLIGHT:
        return error_response(409, "in_progress", "a publish with this idempotency_key is under way; retry later",
                              (("retry-after", "1"),))
    if seen is not None:
        state.api_calls[("publish_replayed", 200)] += 1
        return Response(200, (("content-type", "application/json"), ("idempotent-replayed", "true")), seen)
    try:
        answer = await _publish(state, claims, channel, data)
    except BaseException:
        await idempotency.forget(state, key)
        raise
    if answer.status == 200:
        await idempotency.settle(state, key, answer.body)
    else:
        await idempotency.forget(state, key)
    return answer


async def _publish(state: App, claims: Any, channel: str, data: Any) -> Response:
    try:
        if state.hub.remote:
            result = await state.hub.publish_async(channel, data, from_sub=claims.sub, scopes=claims.scope)
        else:
            result = state.hub.publish(channel, data, from_sub=claims.sub, scopes=claims.scope)
    except HubError as exc:
        return _hub_error(exc, state, channel, "publish_scope")
    state.metrics.publishes += 1
    state.metrics.deliveries += result.delivered
    return json_response(200, {"delivered": result.delivered, "seq": result.seq})


def _over_publish_rate(state: App, claims: Any) -> Response | None:
    """429 past ``[api] publish_rate`` for this principal (sub + client_id)."""
    spec = state.settings.api.publish_rate
    limit = state.api_publish_limit
    if limit is None or limit.spec != spec:  # first use, or a reload changed it
        limit = state.api_publish_limit = PrincipalLimit(spec)
    wait = limit.retry_after(claims.sub, getattr(claims, "client_id", "") or "", state.monotonic())
    if not wait:
        return None
    return error_response(429, "rate_limited", f"over the publish rate ({spec}); retry later",
                          (("retry-after", str(wait)),))


def _unavailable(message: str) -> Response:
    """503 while the broker (Redis) is unreachable; the client may retry."""
    return error_response(503, "unavailable", message, (("retry-after", "1"),))


async def presence(request: Request, state: App) -> Response:
    """GET /api/presence?channel=C with a bearer token holding the channel's
    subscribe scope; answers the WebSocket ``presence`` object (SPEC §5a)."""
    claims = _bearer_claims(request, state)
    if isinstance(claims, Response):
        return claims
    channels = request.query.get("channel", [])
    if len(channels) != 1:
        return error_response(400, "invalid_request", "exactly one channel query parameter is required")
    channel = channels[0]
    hub = state.hub
    try:
        if hub.remote:
            members, truncated = await hub.presence_async(channel, sub=claims.sub, scopes=claims.scope)
        else:
            members, truncated = hub.presence_page(channel, sub=claims.sub, scopes=claims.scope)
    except HubError as exc:
        return _hub_error(exc, state, channel, "subscribe_scope")
    body = presence_answer(state, channel, members, truncated)
    return Response(200, (("content-type", "application/json"), ("cache-control", "no-store")), body)


async def metrics(request: Request, state: App) -> Response:
    """GET /metrics: open (SPEC §3) unless ``[metrics] scope`` is set; then it
    needs a bearer access token holding that scope (a scraper's
    ``client_credentials`` token), as any protected resource (RFC 6750 §3)."""
    scope = state.settings.metrics.scope
    if scope is not None:
        claims = _bearer_claims(request, state)
        if isinstance(claims, Response):
            return claims
        if scope not in claims.scope:
            return bearer_challenge(403, "insufficient_scope", f"the token lacks the {scope} scope", scope=scope)
    body, content_type = render(state.metrics_registry)
    return Response(200, (("content-type", content_type),), body)


def register(router: Router) -> None:
    router.add("GET", "/healthz", healthz)
    router.add("POST", "/api/publish", publish)
    router.add("GET", "/api/presence", presence)
    router.add("GET", "/metrics", metrics)
    admin_api.register(router)  # the server API (SPEC §11)
    console.register(router)  # /admin/: 404 unless [admin] enabled = true
    streams.register(router)  # SSE tickets and stream refresh (SPEC §13)
    oauth_routes.register(router)
    oauth1_routes.register(router)
    demo.register(router)  # answers 404 unless [demo] enabled = true
