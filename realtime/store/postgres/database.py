"""The PostgreSQL connection pool under the shared store.

:class:`PgDatabase` offers the table functions (:mod:`realtime.store.grants`
and the rest) what :class:`realtime.store.database.Database` offers them:
``write(fn)`` runs ``fn(c)`` in one transaction, ``claim(fn)`` turns a
:class:`~realtime.store.database.LostRace` into False, ``read``/``read_one``
run one statement outside a transaction.  ``c.execute(sql, args)`` takes
the functions' SQL as written (``?`` placeholders, which :func:`pg_sql`
turns into psycopg's ``%s``) and returns a cursor with ``rowcount``,
``fetchone``, ``fetchall`` and iteration, as sqlite3's does.

Every write is a ``SERIALIZABLE`` transaction, retried from the start
when PostgreSQL reports a serialization failure or a deadlock.  That is
what SQLite's single writer (``BEGIN IMMEDIATE``) gives the table
functions: a transaction behaves as if it ran alone, so every read-then-
write in them (a conditional UPDATE checked by its rowcount, a read of
a refresh token's successor before the retry's UPDATE, a device poll's
read and update) keeps its single-winner guarantee across connections
and nodes.  A retried transaction runs again against the committed
winner, so the loser's conditional UPDATE matches no row and it answers
False, as on SQLite.

A connection that breaks during ``COMMIT`` leaves the outcome unknown:
the transaction may have landed with only its answer lost.  Every write
transaction therefore inserts a random 128-bit marker row
(``commit_markers``, sent with ``BEGIN`` in one round trip), and the node
asks on another connection by inserting the same marker itself: the
unique index makes that insert wait while the first transaction is still
committing, then it conflicts (the marker landed: committed, the call
returns what it computed) or succeeds (aborted: it runs again; the probe
is rolled back, so a lost answer to it cannot pass for the marker).  A transaction id would not do:
PostgreSQL hands the same id out again after a crash, so its status can
say "committed" of another transaction.  When the database cannot be
asked within the request wait the call raises :class:`CommitUnknown` (a
503), never an answer as if nothing had happened: a client retrying a
code exchange whose first answer it never got would otherwise be taken
for a replay and lose its grant.  Markers older than
:data:`MARKER_KEEP` are swept.

A write may name a ``lock``: such writes run one at a time under an
advisory lock taken before their first read, at ``READ COMMITTED``, so a
table function that counts a whole table (the pending provider logins'
cap) never fails serialization against another call of itself.

Blocking, like the SQLite store: the trio edge
(:class:`realtime.store.aio.AsyncStore`) runs calls in worker threads,
as many at a time as the pool has connections.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import time
from typing import Any, Callable, Iterable, Iterator, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors, sql

from realtime.config.redact import redact_url
from realtime.store.database import LostRace
from realtime.store.postgres.schema import check_version
from realtime.store.records import StoreClosed, StoreUnavailable


class CommitUnknown(StoreUnavailable):
    """The connection broke during COMMIT and the database could not be asked
    whether the transaction landed: the caller answers 503, never as if it
    had not (a code exchange retried after a landed commit would be a replay)."""

__all__ = ["CommitUnknown", "OPEN_TIMEOUT", "POOL_SIZE", "PgDatabase", "StoreUnavailable", "connect", "pg_sql"]

T = TypeVar("T")

OPEN_TIMEOUT = 30.0  # seconds to wait for the first connection at start
POOL_SIZE = 8  # connections per node (and worker threads running store calls)
MAX_ATTEMPTS = 50  # a serializable transaction is retried at most this often
REQUEST_TIMEOUT = 5.0  # seconds a call waits for a working connection before StoreUnavailable
OUTCOME_RETRY = 0.05  # seconds between asks about a transaction whose COMMIT lost its connection
MARKER_KEEP = 300  # seconds a commit marker is kept: far beyond a lost COMMIT's check (request_timeout)


def connect(url: str, *, timeout: float = 10.0) -> psycopg.Connection[Any]:
    """One autocommit connection (``realtime store migrate``, ``realtime check``).

    Raises:
        StoreUnavailable: not reachable, or refused; the message names the
            URL without its password.
    """
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to {redact_url(url)}: {_without_password(str(exc), url)}") from None


def _without_password(message: str, url: str) -> str:
    """libpq's messages do not quote the password; this makes sure of it."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return message
    for form in {password, unquote(password)} if password else ():
        message = message.replace(form, "***")
    return message.strip()


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """The table functions' ``?`` placeholders as psycopg's ``%s`` (their SQL
    has no ``%`` and no ``?`` inside a literal)."""
    return sql.replace("?", "%s")


class PgConnection:
    """What a table function's ``c`` needs, over one psycopg connection in a transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(pg_sql(sql), args)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor()
        rows = list(rows)
        if rows:
            cur.executemany(pg_sql(sql), rows)  # type: ignore[arg-type]
        return cur


class PgDatabase:
    """A psycopg :class:`~psycopg_pool.ConnectionPool` of autocommit connections."""

    path = None  # no file: the store is at :attr:`url`

    def __init__(self, pool: psycopg_pool.ConnectionPool, url: str,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self._pool: psycopg_pool.ConnectionPool | None = pool
        self.url = redact_url(url)  # for logs and errors: never the password
        self.pool_size = pool.max_size
        self.request_timeout = request_timeout
        # Called with the connection just before each COMMIT: the tests' way
        # to break a connection at that moment.  None in a server.
        self.before_commit: Callable[[psycopg.Connection[Any]], None] | None = None

    @classmethod
    def open(cls, url: str, *, pool_size: int = POOL_SIZE, timeout: float = OPEN_TIMEOUT,
             request_timeout: float = REQUEST_TIMEOUT) -> PgDatabase:
        """Connect to the migrated database at ``url``.

        Raises:
            StoreUnavailable: no connection within ``timeout`` seconds.
            SchemaMismatch: the database is not at this server's version.
        """
        shown = redact_url(url)
        pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False,
            name="realtime-store", timeout=request_timeout,
            # A connection is tried before use: after an outage the dead ones
            # are replaced, so the node recovers by itself.
            check=psycopg_pool.ConnectionPool.check_connection,
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout:
            pool.close()
            raise StoreUnavailable(f"cannot connect to {shown} within {timeout:g}s") from None
        try:
            with pool.connection() as conn:
                check_version(conn, shown)
        except BaseException:
            pool.close()
            raise
        return cls(pool, url, request_timeout)

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    @property
    def closed(self) -> bool:
        return self._pool is None

    def _connections(self) -> psycopg_pool.ConnectionPool:
        if self._pool is None:
            raise StoreClosed("store is closed")
        return self._pool

    def write(self, fn: Callable[[PgConnection], T], *, lock: str | None = None) -> T:
        """Run ``fn`` in one ``SERIALIZABLE`` transaction, from the start again
        after a serialization failure or a deadlock (after
        :data:`MAX_ATTEMPTS` of them: :class:`StoreUnavailable`).  With
        ``lock``, ``READ COMMITTED`` under the advisory lock of that name,
        taken before ``fn`` reads anything: writes naming it run one at a time.

        Any other exception rolls back and propagates (a
        :class:`~realtime.store.database.LostRace` too: see :meth:`claim`);
        a lost or unobtainable connection as :class:`StoreUnavailable`, and
        a COMMIT whose outcome cannot be learnt as :class:`CommitUnknown`.
        """
        with _unavailable_as(self.url):
            return self._write(fn, lock)

    def _write(self, fn: Callable[[PgConnection], T], lock: str | None) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            lost_commit = False  # the connection broke during COMMIT
            marker = secrets.token_hex(16)
            with self._connections().connection() as conn:
                _begin(conn, marker, lock)
                committing = False
                try:
                    result = fn(PgConnection(conn))
                    if self.before_commit is not None:
                        self.before_commit(conn)
                    committing = True
                    conn.execute("COMMIT")
                except (errors.SerializationFailure, errors.DeadlockDetected):
                    _rollback(conn)
                    if attempt == MAX_ATTEMPTS:
                        raise
                    continue
                except psycopg.OperationalError:
                    if not (committing and conn.broken):
                        # Before COMMIT, or the server answered it: nothing committed.
                        _rollback(conn)
                        raise
                    lost_commit = True
                except BaseException:
                    _rollback(conn)
                    raise
            if not lost_commit:
                return result
            # Asked on another connection, the broken one back in the pool
            # (which drops it), so even a pool of one can ask.
            outcome = self._commit_outcome(marker)
            if outcome == "committed":
                return result
            if outcome != "aborted" or attempt == MAX_ATTEMPTS:
                raise CommitUnknown(f"lost the connection to {self.url} during COMMIT;"
                                    " whether the transaction landed is unknown")
            # It did not land: nothing happened, so it runs again from the start.
        raise AssertionError("unreachable")

    def _commit_outcome(self, marker: str) -> str | None:
        """``committed`` or ``aborted``: what became of the transaction that
        inserted ``marker`` and lost its connection during COMMIT; None when
        the database cannot be asked within :attr:`request_timeout`.

        Inserting the same marker on another connection answers it: the
        unique index makes the insert wait until that transaction is over
        (bounded by ``lock_timeout``), then it conflicts when the marker
        landed and succeeds when it did not.  The probe is always rolled
        back: a probe row that landed with its answer lost would otherwise
        read as the marker at the next ask.  Once the first transaction is
        over its answer cannot change, so asking again is safe.
        """
        deadline = time.monotonic() + self.request_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                with (self._connections().connection(timeout=max(0.1, left)) as conn,
                      conn.transaction(force_rollback=True)):
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{max(100, int(left * 1000))}ms")))
                    inserted = conn.execute("INSERT INTO commit_markers(marker) VALUES (%s) ON CONFLICT DO NOTHING",
                                            (marker,)).rowcount
                return "aborted" if inserted == 1 else "committed"
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
                pass  # still down, or the transaction still committing (lock_timeout)
            if time.monotonic() >= deadline:
                return None
            time.sleep(OUTCOME_RETRY)

    def sweep_markers(self) -> int:
        """Delete commit markers older than :data:`MARKER_KEEP` (the database's
        clock), in autocommit: no serializable read of the table every write inserts into."""
        with _unavailable_as(self.url), self._connections().connection() as conn:
            return conn.execute("DELETE FROM commit_markers WHERE written_at < now() - make_interval(secs => %s)",
                                (MARKER_KEEP,)).rowcount

    def claim(self, fn: Callable[[PgConnection], object]) -> bool:
        """:meth:`write` for a single-use row: False when ``fn`` raised :class:`LostRace`."""
        try:
            self.write(fn)
        except LostRace:
            return False
        return True

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement in autocommit (its own snapshot, no transaction held)."""
        with _unavailable_as(self.url), self._connections().connection() as conn:
            return conn.execute(pg_sql(sql), args).fetchall()  # type: ignore[arg-type]

    def read_one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = self.read(sql, args)
        return rows[0] if rows else None


def _begin(conn: psycopg.Connection[Any], marker: str, lock: str | None) -> None:
    """Open the transaction and insert its commit ``marker``, in one round
    trip (the marker is what :meth:`PgDatabase._commit_outcome` looks for if
    the connection breaks during ``COMMIT``); with ``lock``, ``READ
    COMMITTED`` after taking that advisory lock."""
    statements = [sql.SQL("BEGIN ISOLATION LEVEL SERIALIZABLE" if lock is None else "BEGIN ISOLATION LEVEL READ COMMITTED")]
    if lock is not None:
        statements.append(sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({}, 0))").format(sql.Literal(lock)))
    statements.append(sql.SQL("INSERT INTO commit_markers(marker) VALUES ({})").format(sql.Literal(marker)))
    conn.execute(sql.SQL("; ").join(statements))


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """End the transaction; a broken connection has none left (the pool drops it)."""
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


@contextlib.contextmanager
def _unavailable_as(shown: str) -> Iterator[None]:
    """A broken or refused connection, no connection within the wait, or
    serialization failures past :data:`MAX_ATTEMPTS` retries, as
    :class:`StoreUnavailable`."""
    try:
        yield
    except (errors.SerializationFailure, errors.DeadlockDetected):
        # MAX_ATTEMPTS conflicts in a row: a storm; the client may retry (503), never a 500.
        raise StoreUnavailable(f"{shown}: too many conflicting transactions, try again") from None
    except psycopg_pool.PoolTimeout:
        raise StoreUnavailable(f"no working connection to {shown}") from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"lost the connection to {shown}: {type(exc).__name__}") from None

