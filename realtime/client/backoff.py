"""How long a client waits before its next connection attempt."""

from __future__ import annotations

import random


def reconnect_delay(attempt: int, min_backoff: float, max_backoff: float) -> float:
    """Exponential from ``min_backoff`` (attempt 1), capped at ``max_backoff``,
    with ±25 % jitter so clients do not come back in lockstep."""
    base = min(max_backoff, min_backoff * 2 ** max(0, attempt - 1))
    return base * random.uniform(0.75, 1.25)
