"""``/api/publish`` limits: a rate per principal and a cap
on ``data``.

The rate (``[api] publish_rate``, default ``50/s``, burst = the count) is
kept per principal, ``sub`` plus ``client_id``, not per token or address:
minting more tokens or opening more connections does not multiply it.
Past it the answer is 429 with ``Retry-After`` (whole seconds, at least 1).
The buckets are :class:`realtime.oauth.throttle.KeyedBuckets`: a full one
is forgotten, and at most ``MAX_PRINCIPALS`` are remembered.

``data`` may be at most ``[websocket] max_message_bytes`` once serialised
as the server sends it (compact UTF-8 JSON, the ``data`` member of the
``message`` frame subscribers get): the same bound a WebSocket publisher
meets, since its whole message must fit in ``max_message_bytes``.  Past it
the answer is 413.
"""

from __future__ import annotations

import math

from realtime.config.units import parse_rate
from realtime.oauth.throttle import KeyedBuckets
from realtime.protocol.replies import encode_json

__all__ = ["MAX_PRINCIPALS", "PrincipalLimit", "data_too_large"]

MAX_PRINCIPALS = 100_000


class PrincipalLimit:
    """Token buckets by principal for one ``publish_rate``."""

    __slots__ = ("spec", "_buckets")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        rate, burst = parse_rate(spec)
        self._buckets = KeyedBuckets(rate, burst, MAX_PRINCIPALS)

    def retry_after(self, sub: str, client_id: str, now: float) -> int:
        """0 and one publish spent, or the whole seconds to wait (>= 1)."""
        key = f"{sub}\x00{client_id}"
        wait = self._buckets.retry_after(key, now)
        if wait > 0:
            return max(1, math.ceil(wait))
        self._buckets.spend(key, now)
        return 0


def data_too_large(body: bytes, data: object, limit: int) -> bool:
    """Is ``data``, serialised, longer than ``limit`` bytes?

    The request body holds ``data`` and more, so a body within the limit
    needs no second encoding.  Data that cannot be encoded is left to the
    hub, which answers ``bad_data``.
    """
    if len(body) <= limit:
        return False
    try:
        return len(encode_json(data)) > limit
    except (TypeError, ValueError, RecursionError):
        return False
