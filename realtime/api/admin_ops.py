"""The server API's operations on one node (SPEC §11), and how the
answers of every node are merged.

Each operation takes and returns plain JSON values, so the same function
serves this node's own request and another node's (through the broker,
:mod:`realtime.net.redis.requests`).  Arguments have been checked by
:mod:`realtime.api.admin_api` before they get here; an operation that
another node sends with bad arguments gets ``{"error": ...}`` back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from realtime.hub import admin as hub_admin
from realtime.protocol.close import CloseCode
from realtime.tokens.revoked import cutoff_keep_until

if TYPE_CHECKING:
    from realtime.api.app import App

__all__ = ["OPS", "conn_view", "merge", "run_local"]

# An access token of a sub cut off now may still be presented until its
# exp; the cut-off is kept this long past issued_before, at least.


def conn_view(app: "App", conn: Any) -> dict[str, Any]:
    """One connection as ``GET /api/connections`` lists it."""
    return {
        "id": f"{app.node}-{conn.conn_id}",
        "sub": conn.sub,
        "client_id": conn.client_id,
        "node": app.node,
        "transport": getattr(conn, "transport_name", "websocket"),
        "remote": getattr(conn, "remote", ""),
        "connected_at": getattr(conn, "connected_at", 0),
        "expires_at": getattr(conn, "exp", 0),
        "channels": list(app.hub.subscriptions_of(conn)),
    }


def _local_id(app: "App", conn_id: str | None) -> int | None:
    """This node's number in a connection id ``NODE-N``; -1 for another node's."""
    if conn_id is None:
        return None
    node, _, number = conn_id.rpartition("-")
    if node != app.node or not number.isdigit():
        return -1
    return int(number)


async def connections(app: "App", args: dict[str, Any]) -> dict[str, Any]:
    found = hub_admin.select(app.hub, sub=args.get("sub"), client_id=args.get("client_id"),
                             channel=args.get("channel"))
    limit = int(args.get("limit", 100))
    return {"connections": [conn_view(app, c) for c in found[:limit]], "truncated": len(found) > limit}


async def disconnect(app: "App", args: dict[str, Any]) -> dict[str, Any]:
    conn_id = _local_id(app, args.get("id"))
    if conn_id == -1:
        return {"disconnected": 0}
    found = hub_admin.select(app.hub, sub=args.get("sub"), client_id=args.get("client_id"), conn_id=conn_id)
    code = int(args.get("code", CloseCode.REVOKED))
    reason = str(args.get("reason", "disconnected by the server API"))
    for conn in found:
        conn.withdraw(code, reason)
    return {"disconnected": len(found)}


async def unsubscribe(app: "App", args: dict[str, Any]) -> dict[str, Any]:
    return {"unsubscribed": hub_admin.unsubscribe_sub(app.hub, args["sub"], args["channel"])}


def cutoff_keep(app: "App", issued_before: float) -> float:
    """Until when a cut-off must be kept: past the longest access-token life."""
    return cutoff_keep_until(app.settings.key_retire_after, issued_before)


async def revoke(app: "App", args: dict[str, Any]) -> dict[str, Any]:
    """Durable first (the store), then the verifier's copy, then the sockets."""
    sub, client_id = args["sub"], args.get("client_id") or ""
    issued_before = float(args["issued_before"])
    families, pairs = await app.store.add_cutoff(
        sub, client_id, issued_before, cutoff_keep(app, issued_before), time.time())
    for jti, exp in pairs:
        app.revoked.add(jti, exp)
    closed = app.apply_cutoff(sub, client_id, issued_before)
    return {"revoked_families": families, "closed": closed}


async def channels(app: "App", args: dict[str, Any]) -> dict[str, Any]:
    counts = hub_admin.channel_counts(app.hub, args.get("pattern", "*"))
    return {"channels": [{"channel": c, "subscribers": n, "top_seq": top} for c, (n, top) in counts.items()]}


async def info(app: "App", args: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": [{"node": app.node, "connections": len(app.hub.connections),
                       "uptime_s": round(app.monotonic() - app.started, 3)}]}


OPS: dict[str, Callable[["App", dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "connections": connections,
    "disconnect": disconnect,
    "unsubscribe": unsubscribe,
    "revoke": revoke,
    "channels": channels,
    "info": info,
}


async def run_local(app: "App", op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One operation on this node (also what another node's request runs)."""
    handler = OPS.get(op)
    if handler is None:
        return {"error": f"unknown operation {op!r}"}
    try:
        return await handler(app, args)
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"bad arguments: {type(exc).__name__}"}


def merge(op: str, answers: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    """Every node's answer to ``op`` as one (this node's first)."""
    answers = [a for a in answers if "error" not in a]
    if op == "connections":
        limit = int(args.get("limit", 100))
        conns = [c for a in answers for c in a.get("connections", [])]
        conns.sort(key=lambda c: (c.get("connected_at", 0), c.get("id", "")))
        truncated = len(conns) > limit or any(a.get("truncated") for a in answers)
        return {"connections": conns[:limit], "truncated": truncated}
    if op == "channels":
        merged: dict[str, dict[str, Any]] = {}
        for a in answers:
            for ch in a.get("channels", []):
                seen = merged.setdefault(ch["channel"], {"channel": ch["channel"], "subscribers": 0, "top_seq": 0})
                seen["subscribers"] += int(ch["subscribers"])
                seen["top_seq"] = max(seen["top_seq"], int(ch["top_seq"]))
        return {"channels": sorted(merged.values(), key=lambda c: c["channel"])}
    if op == "info":
        return {"nodes": [n for a in answers for n in a.get("nodes", [])]}
    keys = {"disconnect": ("disconnected",), "unsubscribe": ("unsubscribed",),
            "revoke": ("revoked_families", "closed")}[op]
    return {k: sum(int(a.get(k, 0)) for a in answers) for k in keys}
