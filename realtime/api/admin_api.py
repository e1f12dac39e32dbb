"""The server API (SPEC §11): connections, disconnect, unsubscribe,
revoke, history, channels and info, for a bearer token holding
``realtime:admin`` (history also for the channel's subscribe scope).

Each handler checks the token, then its input (a bad one is a 400 with
the usual JSON error), then runs the operation here
(:func:`realtime.api.admin_ops.run_local`) and, with a broker, on every
other node (:func:`realtime.hub.admin.ask_others`, a bounded wait); the
answers are merged, and ``"partial": true`` is added when some node did
not answer in time.
"""

from __future__ import annotations

import time
from typing import Any

import realtime
from realtime.api import admin_ops
from realtime.api.app import App
from realtime.hub import HubError
from realtime.hub import admin as hub_admin
from realtime.hub.broker import BrokerUnavailable
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, bearer_challenge, error_response, json_response
from realtime.http.router import Router
from realtime.tokens.bearer import header_token, verify_bearer
from realtime.tokens.keyring import AccessClaims

__all__ = ["ADMIN_ROUTES", "ADMIN_SCOPE", "register", "register_control"]

ADMIN_SCOPE = "realtime:admin"
MAX_LIMIT = 10_000
MAX_TEXT = 1024  # a sub, client_id, channel, pattern or reason longer than this is bad input


class Invalid(ValueError):
    """Bad input: a 400 ``invalid_request`` naming what is wrong."""


def _claims(request: Request, state: App) -> AccessClaims | Response:
    return verify_bearer(header_token(request), state.settings, state.keyring, state.revoked)


def _admin(request: Request, state: App) -> AccessClaims | Response:
    """The verified token if it holds ``realtime:admin``; else the 401/403."""
    claims = _claims(request, state)
    if isinstance(claims, Response):
        return claims
    if ADMIN_SCOPE not in claims.scope:
        return bearer_challenge(403, "insufficient_scope", f"the token lacks the {ADMIN_SCOPE} scope",
                                scope=ADMIN_SCOPE)
    return claims


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise Invalid(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def _int(value: Any, name: str, low: int, high: int, *, text: bool = True) -> int:
    """An integer in range; from a query string too when ``text``."""
    if isinstance(value, str) and text:
        if not value.isdigit():
            raise Invalid(f"{name} must be an integer from {low} to {high}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{name} must be an integer from {low} to {high}")
    return value


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name, values in request.query.items():
        if name not in allowed:
            raise Invalid(f"unknown query parameter {name!r}; expected {', '.join(allowed) or 'none'}")
        if len(values) != 1:
            raise Invalid(f"{name} may be given once")
        out[name] = values[0]
    return out


def _body(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    try:
        body = request.json()
    except BadRequest as exc:
        raise Invalid(str(exc)) from None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    unknown = set(body) - set(allowed)
    if unknown:
        raise Invalid(f"unknown member(s) {', '.join(sorted(unknown))}; expected {', '.join(allowed)}")
    return body


async def _everywhere(state: App, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """``op`` on this node and every other one, merged; ``partial`` if one
    did not answer."""
    mine = await admin_ops.run_local(state, op, args)
    others, partial = await hub_admin.ask_others(state.hub, op, args)
    answer = admin_ops.merge(op, [mine, *others], args)
    if partial:
        answer["partial"] = True
    return answer


def _answered(handler: Any, trusted: bool = False) -> Any:
    """The admin check (unless ``trusted``: the operator's control socket),
    then ``Invalid`` as a 400, for each handler."""

    async def run(request: Request, state: App) -> Response:
        if not trusted:
            claims = _admin(request, state)
            if isinstance(claims, Response):
                return _counted(state, handler.__name__, claims)
        try:
            answer = await handler(request, state)
        except Invalid as exc:
            return _counted(state, handler.__name__, error_response(400, "invalid_request", str(exc)))
        return _counted(state, handler.__name__, json_response(200, answer, (("cache-control", "no-store"),)))

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    run.inner = handler  # type: ignore[attr-defined]
    return run


def _guarded(handler: Any) -> Any:
    return _answered(handler)


def _counted(state: App, name: str, response: Response) -> Response:
    """Count the call for /metrics (``realtime_api_calls_total``)."""
    state.api_calls[(name, response.status)] += 1
    return response


@_guarded
async def connections(request: Request, state: App) -> dict[str, Any]:
    """GET /api/connections?sub&client_id&channel&limit"""
    query = _query(request, ("sub", "client_id", "channel", "limit"))
    args: dict[str, Any] = {k: _text(query[k], k) for k in ("sub", "client_id", "channel") if k in query}
    args["limit"] = _int(query.get("limit", 100), "limit", 1, MAX_LIMIT)
    return await _everywhere(state, "connections", args)


@_guarded
async def disconnect(request: Request, state: App) -> dict[str, Any]:
    """POST /api/disconnect {"sub"?, "client_id"?, "id"?, "code"?, "reason"?}"""
    body = _body(request, ("sub", "client_id", "id", "code", "reason"))
    args: dict[str, Any] = {k: _text(body[k], k) for k in ("sub", "client_id", "id") if k in body}
    if not args:
        raise Invalid("give at least one of sub, client_id, id")
    args["code"] = _int(body.get("code", 4003), "code", 4000, 4999, text=False)
    if "reason" in body:
        reason = body["reason"]
        if not isinstance(reason, str) or len(reason.encode()) > 123:
            raise Invalid("reason must be a string of at most 123 bytes (a close frame's limit)")
        args["reason"] = reason
    return await _everywhere(state, "disconnect", args)


@_guarded
async def unsubscribe(request: Request, state: App) -> dict[str, Any]:
    """POST /api/unsubscribe {"sub", "channel"}"""
    body = _body(request, ("sub", "channel"))
    for name in ("sub", "channel"):
        if name not in body:
            raise Invalid(f"{name} is required")
    args = {"sub": _text(body["sub"], "sub"), "channel": _text(body["channel"], "channel")}
    return await _everywhere(state, "unsubscribe", args)


@_guarded
async def revoke(request: Request, state: App) -> dict[str, Any]:
    """POST /api/revoke {"sub", "client_id"?, "issued_before"?}"""
    body = _body(request, ("sub", "client_id", "issued_before"))
    if "sub" not in body:
        raise Invalid("sub is required")
    args: dict[str, Any] = {"sub": _text(body["sub"], "sub")}
    if "client_id" in body:
        args["client_id"] = _text(body["client_id"], "client_id")
    before = body.get("issued_before", time.time())
    if isinstance(before, bool) or not isinstance(before, (int, float)) or not 0 <= before < 1e11:
        raise Invalid("issued_before must be epoch seconds")
    args["issued_before"] = float(before)
    kept = await hub_admin.share_cutoff(state.hub, args["sub"], args.get("client_id", ""), args["issued_before"],
                                        admin_ops.cutoff_keep(state, args["issued_before"]))
    answer = await _everywhere(state, "revoke", args)
    if not kept:
        answer["partial"] = True
    state.emit("revoked", {"sub": args["sub"], "client_id": args.get("client_id"),
                           "issued_before": args["issued_before"]})
    return answer


@_guarded
async def channels(request: Request, state: App) -> dict[str, Any]:
    """GET /api/channels?pattern"""
    query = _query(request, ("pattern",))
    args = {"pattern": _text(query.get("pattern", "*"), "pattern")}
    return await _everywhere(state, "channels", args)


@_guarded
async def info(request: Request, state: App) -> dict[str, Any]:
    """GET /api/info"""
    _query(request, ())
    answer = await _everywhere(state, "info", {})
    return {"version": realtime.__version__, "node": state.node, **answer}


async def history(request: Request, state: App) -> Response:
    """GET /api/history?channel&since&limit: ``realtime:admin`` or the
    channel's subscribe scope."""
    return _counted(state, "history", await _history(request, state))


async def _history(request: Request, state: App) -> Response:
    claims = _claims(request, state)
    if isinstance(claims, Response):
        return claims
    try:
        query = _query(request, ("channel", "since", "limit"))
        if "channel" not in query:
            raise Invalid("channel is required")
        channel = _text(query["channel"], "channel")
        since = _int(query.get("since", 0), "since", 0, 2**53)
        limit = _int(query.get("limit", 100), "limit", 1, MAX_LIMIT)
    except Invalid as exc:
        return error_response(400, "invalid_request", str(exc))
    hub = state.hub
    if ADMIN_SCOPE not in claims.scope:
        try:
            hub.rules.check_subscribe(channel, claims.sub, claims.scope)
        except HubError as exc:
            if exc.code == "forbidden":
                rule = hub.rule_for(channel)
                return bearer_challenge(403, "insufficient_scope", exc.message,
                                        scope=rule.subscribe_scope if rule is not None else ADMIN_SCOPE)
            return error_response(404 if exc.code == "unknown_channel" else 400, exc.code, exc.message)
    try:
        if hub.remote:
            messages, recovered, top = await hub_admin.history_async(hub, channel, since, limit)
        else:
            messages, recovered, top = hub_admin.history(hub, channel, since, limit)
    except BrokerUnavailable:
        return error_response(503, "unavailable", "the message broker is unreachable; try again",
                              (("retry-after", "1"),))
    body = {"channel": channel, "messages": messages, "recovered": recovered, "top": top}
    return json_response(200, body, (("cache-control", "no-store"),))


ADMIN_ROUTES = (
    ("GET", "/api/connections", connections),
    ("POST", "/api/disconnect", disconnect),
    ("POST", "/api/unsubscribe", unsubscribe),
    ("POST", "/api/revoke", revoke),
    ("GET", "/api/channels", channels),
    ("GET", "/api/info", info),
)


def register_control(router: Router) -> None:
    """The operator's control socket (``realtime connections|disconnect|revoke``):
    the same operations without a token; whoever can open the socket (mode
    0600 in the state dir) is the server's operator."""
    for method, path, handler in ADMIN_ROUTES:
        router.add(method, path, _answered(handler.inner, trusted=True))


def register(router: Router) -> None:
    for method, path, handler in ADMIN_ROUTES:
        router.add(method, path, handler)
    router.add("GET", "/api/history", history)
