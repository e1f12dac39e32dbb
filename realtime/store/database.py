"""The SQLite connection under the store: opening it, transactions, closing.

One :class:`Database` is one connection.  The table modules
(:mod:`~realtime.store.grants`, :mod:`~realtime.store.consents`,
:mod:`~realtime.store.revoked`, :mod:`~realtime.store.oauth1`) are
functions over it; none of them opens, begins or commits on its own, so
"every public store call is one transaction" is decided here, once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from realtime.store.records import StoreClosed
from realtime.store.schema import upgrade

__all__ = ["OPEN_TIMEOUT", "Database", "LostRace"]

T = TypeVar("T")

OPEN_TIMEOUT = 30.0  # seconds to wait for another connection's lock


class LostRace(Exception):
    """Raised inside :meth:`Database.claim`: roll back, answer False.

    A single-use row (a code, a refresh token, a request token) was already
    used when the transaction reached it; nothing the transaction wrote
    before finding that out may stay.
    """


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


class Database:
    """One SQLite connection and its lock; WAL, ``synchronous=FULL``.

    The connection may be reached from several trio worker threads (one at
    a time through :class:`~realtime.store.aio.AsyncStore`'s limiter); the
    lock also keeps direct sync callers (admin tools, tests) from
    interleaving their transactions.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | Path) -> Database:
        """Open (creating the file, its folder and the tables) ``path``;
        a file of an older schema is migrated in place (:func:`upgrade`).

        The file is made mode 0600: it holds hashes of live credentials.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=OPEN_TIMEOUT
        )
        try:
            _enter_wal_mode(conn, deadline=time.monotonic() + OPEN_TIMEOUT)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            upgrade(conn, str(path))
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
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed("store is closed")
        return self._conn

    def write(self, fn: Callable[[sqlite3.Connection], T], *, lock: str | None = None) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction.

        ``IMMEDIATE`` takes the write lock up front, so a read-then-update
        inside ``fn`` cannot be overtaken by another process's writer (so
        ``lock``, which serialises writes naming it on PostgreSQL, is
        already so here).
        Any exception rolls back and propagates.
        """
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def claim(self, fn: Callable[[sqlite3.Connection], object]) -> bool:
        """:meth:`write` for a single-use row: False when ``fn`` raised :class:`LostRace`.

        The caller answers a replay on False, and nothing was changed.
        """
        try:
            self.write(fn)
        except LostRace:
            return False
        return True

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement outside an explicit transaction (autocommit): a lookup
        that does not take the write lock."""
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def read_one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """:meth:`read` for a lookup by key: the row, or None when there is none.

        It fetches all rows (one, for a key) so the statement is finished and
        holds no read snapshot once it returns.
        """
        rows = self.read(sql, args)
        return rows[0] if rows else None
