"""Idempotent ``/api/publish`` (SPEC §11): a publish carrying an
``idempotency_key`` seen within ``[api] idempotency_window`` answers the
first publish's result again and publishes nothing.

Keys are scoped to the principal (``sub`` and ``client_id``): two
backends choosing the same key do not see each other's answers.  With a
broker the key lives in Redis (``SET NX`` with the window as TTL), so a
retry that lands on another node is caught too; without one, in a
bounded dict here.  While the first publish is under way its key holds
an empty answer, and a concurrent retry gets 409 (try again); a publish
that fails releases its key so a retry may publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime.hub.broker import BrokerUnavailable

if TYPE_CHECKING:
    from realtime.api.app import App

__all__ = ["IN_FLIGHT", "MAX_KEY_BYTES", "MAX_LOCAL_KEYS", "Claim", "claim", "forget", "key_problem", "scoped", "settle"]

MAX_KEY_BYTES = 128
MAX_LOCAL_KEYS = 100_000
IN_FLIGHT = b""


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a usable idempotency key, or None."""
    if not isinstance(key, str) or not key:
        return "idempotency_key must be a non-empty string"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"idempotency_key must be at most {MAX_KEY_BYTES} bytes"
    return None


def scoped(key: str, sub: str, client_id: str) -> str:
    return f"{client_id}\x00{sub}\x00{key}"


Claim = bytes | None
"""``None``: the key is new and now held; ``b""``: its first publish is
under way; else the first publish's answer body."""


async def claim(app: "App", key: str) -> Claim:
    """Hold ``key`` for this publish, or say what holds it (see :data:`Claim`).

    Raises:
        BrokerUnavailable: the broker cannot be reached.
    """
    window = app.settings.api.idempotency_window
    broker = app.hub.remote_broker
    if broker is not None:
        return await broker.claim_key(key, window)
    now = app.monotonic()
    cache = app.idempotency
    held = cache.get(key)
    if held is not None and held[0] > now:
        return held[1]
    if len(cache) >= MAX_LOCAL_KEYS:
        _evict(cache, now)
    cache[key] = (now + window, IN_FLIGHT)
    return None


async def settle(app: "App", key: str, answer: bytes) -> None:
    """Keep the answer of the publish that claimed ``key``."""
    window = app.settings.api.idempotency_window
    broker = app.hub.remote_broker
    if broker is not None:
        try:
            await broker.store_key(key, answer, window)
        except BrokerUnavailable:
            pass  # published already; a retry within the window gets 409 until the key expires
        return
    app.idempotency[key] = (app.monotonic() + window, answer)


async def forget(app: "App", key: str) -> None:
    """The publish that claimed ``key`` failed: a retry may publish."""
    broker = app.hub.remote_broker
    if broker is not None:
        try:
            await broker.forget_key(key)
        except BrokerUnavailable:
            pass
        return
    app.idempotency.pop(key, None)


def _evict(cache: dict[str, tuple[float, bytes]], now: float) -> None:
    """Drop expired keys; if none had expired, the oldest tenth (insertion order)."""
    expired = [k for k, (deadline, _) in cache.items() if deadline <= now]
    for k in expired:
        del cache[k]
    if not expired:
        for k in list(cache)[: max(1, len(cache) // 10)]:
            del cache[k]
