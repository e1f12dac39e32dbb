"""Live WebSocket connections as the hub sees them, and their indexes.

A reload or a revocation must find the connections of one ``sub``,
``client_id``, signing key (``kid``) or token (``jti``) to close them with
4003 (SPEC §6).  With ten thousand sockets a scan per event is the wrong
shape (DESIGN.md §7), so :class:`ConnectionIndex` keeps one dict per key.

Connections are keyed by ``conn_id``, not by the object, so the session
class is free to define ``__eq__``/``__hash__`` as it likes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

__all__ = ["Connection", "ConnectionIndex"]


class Connection(Protocol):
    """What the hub needs from a WebSocket session (the trio shell).

    ``conn_id`` is unique for the process lifetime.  The token fields
    (``sub``, ``client_id``, ``kid``, ``jti``, ``scopes``) change only on an
    in-band ``refresh``, after which the session calls
    :meth:`ConnectionIndex.reindex` (and :meth:`realtime.hub.Hub.revalidate`
    for this connection, in case the new token holds fewer scopes).
    """

    conn_id: int
    sub: str
    client_id: str
    kid: str
    jti: str
    scopes: frozenset[str]

    def offer(self, frame: bytes) -> None:
        """Queue one prepared frame.  Synchronous; never blocks, never awaits.

        Called in the hub's fan-out loop for every subscriber, so it must be
        cheap.  On backlog overflow the session closes itself (4009), which
        may synchronously call :meth:`realtime.hub.Hub.drop`; the hub
        tolerates that mid-fan-out.  After the session has started closing,
        ``offer`` must be a no-op.
        """
        ...

    def withdraw(self, code: int, reason: str) -> None:
        """Ask the session to close with ``code`` (e.g. 4003).  Synchronous."""
        ...


_Bucket = dict[int, Connection]


class ConnectionIndex:
    """Every live connection, findable by ``sub``, ``client_id``, ``kid``, ``jti``.

    Lookups return tuples: a snapshot, so the caller may close connections
    (which removes them from this index) while it walks the result.
    """

    __slots__ = ("_all", "_keys", "_by_sub", "_by_client", "_by_kid", "_by_jti")

    def __init__(self) -> None:
        self._all: dict[int, Connection] = {}
        # The keys each connection is filed under, so removal never depends
        # on the session having kept its fields and the index in step.
        self._keys: dict[int, tuple[str, str, str, str]] = {}
        self._by_sub: dict[str, _Bucket] = {}
        self._by_client: dict[str, _Bucket] = {}
        self._by_kid: dict[str, _Bucket] = {}
        self._by_jti: dict[str, _Bucket] = {}

    # -- maintenance --------------------------------------------------------

    @staticmethod
    def _put(index: dict[str, _Bucket], key: str, conn: Connection) -> None:
        bucket = index.get(key)
        if bucket is None:
            index[key] = {conn.conn_id: conn}
        else:
            bucket[conn.conn_id] = conn

    @staticmethod
    def _pop(index: dict[str, _Bucket], key: str, conn_id: int) -> None:
        bucket = index.get(key)
        if bucket is not None:
            bucket.pop(conn_id, None)
            if not bucket:
                del index[key]

    def _file(self, conn: Connection) -> None:
        keys = (conn.sub, conn.client_id, conn.kid, conn.jti)
        self._keys[conn.conn_id] = keys
        self._put(self._by_sub, keys[0], conn)
        self._put(self._by_client, keys[1], conn)
        self._put(self._by_kid, keys[2], conn)
        self._put(self._by_jti, keys[3], conn)

    def _unfile(self, conn_id: int) -> None:
        sub, client_id, kid, jti = self._keys.pop(conn_id)
        self._pop(self._by_sub, sub, conn_id)
        self._pop(self._by_client, client_id, conn_id)
        self._pop(self._by_kid, kid, conn_id)
        self._pop(self._by_jti, jti, conn_id)

    def add(self, conn: Connection) -> None:
        """Index a connection after its upgrade.  Adding it twice is harmless."""
        if conn.conn_id in self._all:
            self._unfile(conn.conn_id)
        self._all[conn.conn_id] = conn
        self._file(conn)

    def remove(self, conn: Connection) -> None:
        """Forget a connection.  Idempotent, so every close path may call it.

        It is removed under the keys it was filed with, whatever its fields
        say now.
        """
        if self._all.pop(conn.conn_id, None) is not None:
            self._unfile(conn.conn_id)

    def reindex(
        self,
        conn: Connection,
        old_sub: str,
        old_client_id: str,
        old_kid: str,
        old_jti: str,
    ) -> None:
        """Move ``conn`` after an in-band refresh changed its token fields.

        ``conn`` already carries the new values.  The ``old_*`` arguments
        say where the caller believes it was filed; the index remembers
        that itself and trusts its own record, so a stale argument cannot
        leave a ghost entry behind.  SPEC §4 keeps ``sub`` and
        ``client_id`` across a refresh, but they are refiled too so the
        index never lies.
        """
        del old_sub, old_client_id, old_kid, old_jti
        if conn.conn_id not in self._all:
            return
        self._unfile(conn.conn_id)
        self._all[conn.conn_id] = conn
        self._file(conn)

    # -- lookups ------------------------------------------------------------

    def by_sub(self, sub: str) -> tuple[Connection, ...]:
        bucket = self._by_sub.get(sub)
        return tuple(bucket.values()) if bucket else ()

    def by_client(self, client_id: str) -> tuple[Connection, ...]:
        bucket = self._by_client.get(client_id)
        return tuple(bucket.values()) if bucket else ()

    def by_kid(self, kid: str) -> tuple[Connection, ...]:
        bucket = self._by_kid.get(kid)
        return tuple(bucket.values()) if bucket else ()

    def by_jti(self, jti: str) -> tuple[Connection, ...]:
        bucket = self._by_jti.get(jti)
        return tuple(bucket.values()) if bucket else ()

    def get(self, conn_id: int) -> Connection | None:
        return self._all.get(conn_id)

    def all(self) -> tuple[Connection, ...]:
        return tuple(self._all.values())

    def subs(self) -> tuple[str, ...]:
        """Every ``sub`` with a live connection (reload diffs users)."""
        return tuple(self._by_sub)

    def client_ids(self) -> tuple[str, ...]:
        """Every ``client_id`` with a live connection (reload diffs apps)."""
        return tuple(self._by_client)

    def kids(self) -> tuple[str, ...]:
        """Every signing key in use by a live connection (reload diffs keys)."""
        return tuple(self._by_kid)

    def __contains__(self, conn: object) -> bool:
        cid = getattr(conn, "conn_id", None)
        return cid is not None and self._all.get(cid) is conn

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.all())
