"""The store's base: the connection, its lifecycle, and the transaction helpers.

The row mixins (:mod:`realtime.store.grants`, :mod:`realtime.store.revoked`,
:mod:`realtime.store.consents`, :mod:`realtime.store.oauth1`) build on
:class:`StoreBase`; :class:`realtime.store.sync.Store` composes them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from realtime.store.records import _SCHEMA, SCHEMA_VERSION, StoreClosed

if TYPE_CHECKING:
    from realtime.store.sync import Store

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


class StoreBase:
    """One connection and its lock; every public method is one :meth:`_tx`."""

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


class _Abort(Exception):
    """Roll the transaction back and report a lost race."""
