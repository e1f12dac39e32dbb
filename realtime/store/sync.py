"""The synchronous SQLite store: one connection, one transaction per call."""

from __future__ import annotations

import sqlite3

from realtime.store.base import OPEN_TIMEOUT
from realtime.store.consents import Consents
from realtime.store.grants import OAuth2Grants
from realtime.store.oauth1 import OAuth1Tokens
from realtime.store.records import REVOKED_GRACE

__all__ = ["OPEN_TIMEOUT", "Store"]  # OPEN_TIMEOUT lives in realtime.store.base


class Store(OAuth2Grants, Consents, OAuth1Tokens):
    """Synchronous SQLite store; one connection, one transaction per call.

    The connection, :meth:`open` and the transaction helpers are in
    :class:`realtime.store.base.StoreBase`; the rows of each kind in the
    mixins; the sweep across the OAuth 2 tables and the counts here.
    """

    # -- housekeeping -------------------------------------------------------

    def sweep(self, now: float) -> dict[str, int]:
        """Delete rows that can no longer matter; returns counts per table.

        Used codes are kept until their expiry plus a margin so a replay
        inside that window still finds them and revokes the grant.
        """

        def run(c: sqlite3.Connection) -> dict[str, int]:
            counts = {}
            counts["codes"] = c.execute(
                "DELETE FROM codes WHERE expires_at < ? AND"
                " (access_exp IS NULL OR access_exp < ?)",
                (now - 3600, now),
            ).rowcount
            counts["refresh_tokens"] = c.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < ? AND"
                " (access_exp IS NULL OR access_exp < ?)",
                (now, now),
            ).rowcount
            counts["families"] = c.execute(
                "DELETE FROM families WHERE family_id NOT IN"
                " (SELECT family_id FROM refresh_tokens)"
                " AND family_id NOT IN (SELECT family_id FROM codes WHERE family_id IS NOT NULL)",
            ).rowcount
            counts["revoked"] = c.execute(
                "DELETE FROM revoked WHERE exp < ?", (now - REVOKED_GRACE,)
            ).rowcount
            return counts

        return self._tx(run)

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("codes", "families", "refresh_tokens", "revoked", "consents"):
            out[table] = self._read(f"SELECT count(*) FROM {table}")[0][0]
        return out
