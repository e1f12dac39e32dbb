"""The synchronous SQLite store: one connection, one transaction per call."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from realtime.store.records import (
    _SCHEMA,
    REVOKED_GRACE,
    SCHEMA_VERSION,
    CodeRecord,
    IssuedTokens,
    OAuth1AccessToken,
    OAuth1RequestToken,
    RefreshRecord,
    StoreClosed,
    scope_set,
    scope_text,
)

T = TypeVar("T")

OPEN_TIMEOUT = 30.0  # seconds to wait for another connection's lock


def _enter_wal_mode(conn: sqlite3.Connection, *, deadline: float) -> None:
    """Switch to WAL, retrying while another connection holds the file.

    SQLite answers SQLITE_BUSY at once, without calling the busy handler,
    when two connections switch a new file to WAL at the same moment (two
    servers or an admin tool starting together); the loser retries here.
    """
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(delay)  # back off as SQLite's own busy handler does
        delay = min(delay * 2, 0.1)


class Store:
    """Synchronous SQLite store; one connection, one transaction per call."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # One connection may be reached from several trio worker threads
        # (one at a time through AsyncStore's limiter); the lock also keeps
        # direct sync callers (admin tools, tests) from interleaving.
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=OPEN_TIMEOUT
        )
        try:
            _enter_wal_mode(conn, deadline=time.monotonic() + OPEN_TIMEOUT)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        except BaseException:
            conn.close()
            raise
        try:
            path.chmod(0o600)
        except OSError:
            pass
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreClosed("store is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is None:
                raise StoreClosed("store is closed")
            return self._conn.execute(sql, args).fetchall()

    # -- authorization codes ------------------------------------------------

    def save_code(
        self,
        code_hash: str,
        *,
        client_id: str,
        redirect_uri: str | None,
        code_challenge: str | None,
        sub: str,
        scope: Iterable[str],
        expires_at: float,
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO codes(code_hash, client_id, redirect_uri, code_challenge,"
                " sub, scope, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (code_hash, client_id, redirect_uri, code_challenge, sub,
                 scope_text(scope), expires_at),
            )

        self._tx(run)

    def get_code(self, code_hash: str) -> CodeRecord | None:
        rows = self._read(
            "SELECT code_hash, client_id, redirect_uri, code_challenge, sub, scope,"
            " expires_at, used_at FROM codes WHERE code_hash = ?",
            (code_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        return CodeRecord(r[0], r[1], r[2], r[3], r[4], scope_set(r[5]), r[6], r[7])

    def redeem_code(self, code_hash: str, now: float, issued: IssuedTokens) -> bool:
        """Mark the code used and record what was issued, atomically.

        Returns False (and changes nothing) when the code was already used
        or is gone: the caller must then treat the request as a replay.
        """

        def run(c: sqlite3.Connection) -> bool:
            family_id = self._record_issue(c, now, issued)
            cur = c.execute(
                "UPDATE codes SET used_at = ?, family_id = ?, access_jti = ?, access_exp = ?"
                " WHERE code_hash = ? AND used_at IS NULL",
                (now, family_id, issued.access_jti, issued.access_exp, code_hash),
            )
            if cur.rowcount != 1:
                raise _Abort()
            return True

        try:
            return self._tx(run)
        except _Abort:
            return False

    def revoke_code_grant(self, code_hash: str, now: float) -> list[tuple[str, float]]:
        """A used code came back: revoke everything its first use issued.

        Returns the live access ``(jti, exp)`` pairs now in the revoked
        table; the caller also marks them in memory (``state.revoke_access``).
        """

        def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
            row = c.execute(
                "SELECT family_id, access_jti, access_exp FROM codes WHERE code_hash = ?",
                (code_hash,),
            ).fetchone()
            if row is None:
                return []
            family_id, jti, exp = row
            pairs: list[tuple[str, float]] = []
            if jti and exp and exp > now - REVOKED_GRACE:
                pairs.append((jti, exp))
            if family_id:
                pairs.extend(self._revoke_family(c, family_id, now))
            self._insert_revoked(c, pairs)
            return sorted(set(pairs))

        return self._tx(run)

    # -- refresh tokens ---------------------------------------------------

    def record_issue(self, now: float, issued: IssuedTokens) -> str | None:
        """Record a grant that needs no code (password): returns the family id."""
        return self._tx(lambda c: self._record_issue(c, now, issued))

    def _record_issue(self, c: sqlite3.Connection, now: float, issued: IssuedTokens) -> str | None:
        if issued.refresh_hash is None:
            return issued.family_id
        family_id = issued.family_id or secrets.token_hex(16)
        c.execute(
            "INSERT OR IGNORE INTO families(family_id, client_id, sub, created_at)"
            " VALUES (?, ?, ?, ?)",
            (family_id, issued.client_id, issued.sub, now),
        )
        c.execute(
            "INSERT INTO refresh_tokens(token_hash, family_id, client_id, sub, scope,"
            " issued_at, expires_at, access_jti, access_exp)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (issued.refresh_hash, family_id, issued.client_id, issued.sub,
             scope_text(issued.scope), now, issued.refresh_expires_at,
             issued.access_jti, issued.access_exp),
        )
        return family_id

    def get_refresh(self, refresh_hash: str) -> RefreshRecord | None:
        rows = self._read(
            "SELECT r.token_hash, r.family_id, r.client_id, r.sub, r.scope, r.issued_at,"
            " r.expires_at, r.used_at, f.revoked, r.access_jti, r.access_exp"
            " FROM refresh_tokens r JOIN families f USING (family_id)"
            " WHERE r.token_hash = ?",
            (refresh_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        return RefreshRecord(
            r[0], r[1], r[2], r[3], scope_set(r[4]), r[5], r[6], r[7], bool(r[8]), r[9], r[10]
        )

    def rotate_refresh(self, old_hash: str, now: float, issued: IssuedTokens) -> bool:
        """Use ``old_hash`` once and record its successor in the same family.

        Returns False (nothing changed) if the old token was already used or
        its family revoked: the caller treats that as reuse.
        """

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL"
                " AND family_id IN (SELECT family_id FROM families WHERE revoked = 0)",
                (now, old_hash),
            )
            if cur.rowcount != 1:
                raise _Abort()
            self._record_issue(c, now, issued)
            return True

        try:
            return self._tx(run)
        except _Abort:
            return False

    def revoke_family(self, family_id: str, now: float) -> list[tuple[str, float]]:
        """Revoke a refresh family and its live access tokens.

        RFC 9700 §4.14.2: "If a refresh token is compromised and subsequently
        used by both the attacker and the legitimate client, one of them
        will present an invalidated refresh token, which will inform the
        authorization server of the breach.  The authorization server cannot
        determine which party submitted the invalid refresh token, but it
        will revoke the active refresh token."
        """

        def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
            pairs = self._revoke_family(c, family_id, now)
            self._insert_revoked(c, pairs)
            return pairs

        return self._tx(run)

    def _revoke_family(self, c: sqlite3.Connection, family_id: str, now: float) -> list[tuple[str, float]]:
        c.execute("UPDATE families SET revoked = 1 WHERE family_id = ?", (family_id,))
        rows = c.execute(
            "SELECT access_jti, access_exp FROM refresh_tokens WHERE family_id = ?"
            " AND access_jti IS NOT NULL AND access_exp > ?",
            (family_id, now - REVOKED_GRACE),
        ).fetchall()
        rows += c.execute(
            "SELECT access_jti, access_exp FROM codes WHERE family_id = ?"
            " AND access_jti IS NOT NULL AND access_exp > ?",
            (family_id, now - REVOKED_GRACE),
        ).fetchall()
        return sorted({(j, float(e)) for j, e in rows})

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

    # -- consents -----------------------------------------------------------

    def get_consent(self, sub: str, client_id: str) -> frozenset[str] | None:
        rows = self._read(
            "SELECT scope FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id)
        )
        return scope_set(rows[0][0]) if rows else None

    def save_consent(self, sub: str, client_id: str, scope: Iterable[str], now: float) -> None:
        """Remember consent; the stored set grows to the union of what was granted."""

        def run(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT scope FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id)
            ).fetchone()
            merged = set(scope) | (scope_set(row[0]) if row else set())
            c.execute(
                "INSERT INTO consents(sub, client_id, scope, granted_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(sub, client_id) DO UPDATE SET scope = excluded.scope,"
                " granted_at = excluded.granted_at",
                (sub, client_id, scope_text(merged), now),
            )

        self._tx(run)

    def forget_consent(self, sub: str, client_id: str | None = None) -> None:
        def run(c: sqlite3.Connection) -> None:
            if client_id is None:
                c.execute("DELETE FROM consents WHERE sub = ?", (sub,))
            else:
                c.execute("DELETE FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id))

        self._tx(run)

    # -- OAuth 1.0a ---------------------------------------------------------

    def oauth1_use_nonce(self, consumer_key: str, token: str, nonce: str, timestamp: int,
                         expires_at: float) -> bool:
        """Record a nonce; False when this (consumer, token, nonce, timestamp)
        was seen before.

        RFC 5849 §3.3: "The nonce value MUST be unique across all requests
        with the same timestamp, client credentials, and token
        combinations."  Kept until ``expires_at`` (the end of the timestamp
        window), so a replay fails after a restart too.
        """

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO oauth1_nonces(consumer_key, token, nonce, timestamp, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (consumer_key, token, nonce, timestamp, expires_at),
            )
            return cur.rowcount == 1

        return self._tx(run)

    def oauth1_save_request_token(self, token_hash: str, *, client_id: str, secret_enc: str,
                                  callback: str, scope: Iterable[str], expires_at: float) -> None:
        self._tx(lambda c: c.execute(
            "INSERT INTO oauth1_request_tokens(token_hash, client_id, secret_enc, callback, scope,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (token_hash, client_id, secret_enc, callback, scope_text(scope), expires_at),
        ))

    def oauth1_get_request_token(self, token_hash: str) -> OAuth1RequestToken | None:
        rows = self._read(
            "SELECT token_hash, client_id, secret_enc, callback, scope, expires_at, sub,"
            " verifier_hash, used_at FROM oauth1_request_tokens WHERE token_hash = ?",
            (token_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        return OAuth1RequestToken(r[0], r[1], r[2], r[3], scope_set(r[4]), r[5], r[6], r[7], r[8])

    def oauth1_authorize_request_token(self, token_hash: str, *, sub: str, scope: Iterable[str],
                                       verifier_hash: str, now: float) -> bool:
        """Bind the user's approval and a verifier to a live, unused request
        token; False if it is gone, used, expired or already approved."""

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE oauth1_request_tokens SET sub = ?, scope = ?, verifier_hash = ?"
                " WHERE token_hash = ? AND used_at IS NULL AND verifier_hash IS NULL AND expires_at > ?",
                (sub, scope_text(scope), verifier_hash, token_hash, now),
            )
            return cur.rowcount == 1

        return self._tx(run)

    def oauth1_delete_request_token(self, token_hash: str) -> None:
        self._tx(lambda c: c.execute("DELETE FROM oauth1_request_tokens WHERE token_hash = ?", (token_hash,)))

    def oauth1_exchange(self, request_hash: str, now: float, access: OAuth1AccessToken) -> bool:
        """Use a request token once and record the access token it buys.

        Returns False (nothing changed) when the request token was already
        used: RFC 5849 §2.3 "the server MUST ... ensure that the temporary
        credentials have not expired or been used before".
        """

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE oauth1_request_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
                (now, request_hash),
            )
            if cur.rowcount != 1:
                raise _Abort()
            c.execute(
                "INSERT INTO oauth1_access_tokens(token_hash, token_id, client_id, sub, scope,"
                " secret_enc, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (access.token_hash, access.token_id, access.client_id, access.sub,
                 scope_text(access.scope), access.secret_enc, access.issued_at, access.expires_at),
            )
            return True

        try:
            return self._tx(run)
        except _Abort:
            return False

    def oauth1_get_access_token(self, token_hash: str) -> OAuth1AccessToken | None:
        rows = self._read(
            "SELECT token_hash, token_id, client_id, sub, scope, secret_enc, issued_at, expires_at,"
            " revoked_at FROM oauth1_access_tokens WHERE token_hash = ?",
            (token_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        return OAuth1AccessToken(r[0], r[1], r[2], r[3], scope_set(r[4]), r[5], r[6], r[7], r[8])

    def oauth1_revoke_access_token(self, token_hash: str, now: float) -> bool:
        """Mark an access token revoked; False when unknown or already revoked."""
        return self._tx(lambda c: c.execute(
            "UPDATE oauth1_access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
            (now, token_hash),
        ).rowcount == 1)

    def oauth1_sweep(self, now: float) -> dict[str, int]:
        """Forget nonces past their window, dead request tokens, and access
        tokens that expired or were revoked more than a day ago."""

        def run(c: sqlite3.Connection) -> dict[str, int]:
            return {
                "oauth1_nonces": c.execute(
                    "DELETE FROM oauth1_nonces WHERE expires_at < ?", (now,)).rowcount,
                "oauth1_request_tokens": c.execute(
                    "DELETE FROM oauth1_request_tokens WHERE expires_at < ?", (now - 3600,)).rowcount,
                "oauth1_access_tokens": c.execute(
                    "DELETE FROM oauth1_access_tokens WHERE (revoked_at IS NOT NULL AND revoked_at < ?)"
                    " OR (expires_at IS NOT NULL AND expires_at < ?)", (now - 86400, now - 86400)).rowcount,
            }

        return self._tx(run)

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


class _Abort(Exception):
    """Roll the transaction back and report a lost race."""


