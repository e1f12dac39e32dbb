"""The in-memory set of revoked access tokens (by ``jti``) that
:meth:`realtime.tokens.keyring.KeyRing.verify` checks; :mod:`realtime.tokens.keyring`
re-exports it."""

from __future__ import annotations

import heapq
import math
import time
from typing import Iterable

__all__ = ["RevokedSet"]


class RevokedSet:
    """Revoked ``jti``s, in memory, for the O(1) check on the hot path.

    The store keeps the durable copy (DESIGN.md §6) and fills this set at
    startup.  An entry is kept ``grace`` seconds past its ``exp``: verify
    refuses a token from ``exp`` on (the leeway only widens iat/nbf), so
    the grace is a margin for a peer node's clock, not a necessity.
    """

    __slots__ = ("_exp", "_heap", "grace", "_cutoffs")

    def __init__(self, grace: float = 300.0) -> None:
        self._exp: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # (exp, jti), possibly stale
        self.grace = grace
        # (sub, client_id or "") -> issued_before: POST /api/revoke.
        self._cutoffs: dict[tuple[str, str], float] = {}

    def cut(self, sub: str, client_id: str, issued_before: float) -> None:
        """Refuse every token of ``sub`` (of ``client_id``; ``""``: any app)
        whose ``iat`` is before ``issued_before``; a later cut-off wins."""
        key = (sub, client_id)
        if self._cutoffs.get(key, -math.inf) < issued_before:
            self._cutoffs[key] = issued_before

    def cut_off(self, sub: str, client_id: str, iat: float) -> bool:
        """Is a token of ``sub``/``client_id`` issued at ``iat`` refused by a cut-off?"""
        if not self._cutoffs:
            return False
        for key in ((sub, ""), (sub, client_id)):
            before = self._cutoffs.get(key)
            if before is not None and iat < before:
                return True
        return False

    def add(self, jti: str, exp: float) -> None:
        """Remember a revocation; a later ``exp`` for the same jti wins."""
        if self._exp.get(jti, -math.inf) >= exp:
            return
        self._exp[jti] = exp
        heapq.heappush(self._heap, (exp, jti))

    def load(self, items: Iterable[tuple[str, float]]) -> None:
        for jti, exp in items:
            self.add(jti, exp)

    def __contains__(self, jti: object) -> bool:
        return isinstance(jti, str) and jti in self._exp

    def __len__(self) -> int:
        return len(self._exp)

    def sweep(self, now: float | None = None) -> int:
        """Forget entries whose token can no longer verify; return how many.

        Pops from a heap ordered by ``exp``, so a sweep costs only the
        entries it drops.
        """
        horizon = (time.time() if now is None else now) - self.grace
        dropped = 0
        while self._heap and self._heap[0][0] < horizon:
            exp, jti = heapq.heappop(self._heap)
            if self._exp.get(jti) == exp:  # else a stale entry for a re-added jti
                del self._exp[jti]
                dropped += 1
        return dropped


#: A cut-off is kept at least this long, whatever the token lifetimes.
MIN_CUTOFF_KEEP = 24 * 3600.0


def cutoff_keep_until(longest_token_life: float, issued_before: float) -> float:
    """Until when a cut-off must be kept: no token it refuses can still be
    valid after that (``longest_token_life``: Settings.key_retire_after)."""
    return issued_before + max(MIN_CUTOFF_KEEP, longest_token_life)
