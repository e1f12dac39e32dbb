"""Revoked access-token ``jti`` s, kept until their ``exp``."""

from __future__ import annotations

import sqlite3
from typing import Iterable

from realtime.store.base import StoreBase
from realtime.store.records import REVOKED_GRACE


class RevokedAccessTokens(StoreBase):
    """The ``revoked`` table; the grant rows write to it too (:meth:`_insert_revoked`)."""

    # -- revoked access tokens -------------------------------------------

    def revoke_jtis(self, pairs: Iterable[tuple[str, float]]) -> None:
        pairs = list(pairs)
        self._tx(lambda c: self._insert_revoked(c, pairs))

    @staticmethod
    def _insert_revoked(c: sqlite3.Connection, pairs: Iterable[tuple[str, float]]) -> None:
        c.executemany(
            "INSERT INTO revoked(jti, exp) VALUES (?, ?)"
            " ON CONFLICT(jti) DO UPDATE SET exp = max(exp, excluded.exp)",
            list(pairs),
        )

    def is_revoked(self, jti: str) -> bool:
        return bool(self._read("SELECT 1 FROM revoked WHERE jti = ?", (jti,)))

    def revoked_jtis(self, now: float) -> list[tuple[str, float]]:
        """Every revoked jti whose token has not expired yet (load at start)."""
        rows = self._read("SELECT jti, exp FROM revoked WHERE exp > ?", (now - REVOKED_GRACE,))
        return [(j, float(e)) for j, e in rows]
