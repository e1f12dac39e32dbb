"""The PostgreSQL backend's own machinery: migrations, opening, and the
single-winner guarantees under real concurrency, with two pools on one
database standing for two nodes (threads released together by a barrier)."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import psycopg
import pytest

from realtime.store import SCHEMA_VERSION, Store, token_hash
from realtime.store.postgres import PG_SCHEMA_VERSION, PgStore, SchemaMismatch, StoreUnavailable, migrate
from realtime.store.postgres.database import PgDatabase
from realtime.store.postgres.schema import PG_ONLY_COLUMNS, PG_ONLY_TABLES
from tests.helpers.postgres import PostgresCluster
from tests.helpers.race import race as race_threads
from tests.helpers.redis import free_port
from tests.helpers.store import NOW, issued

T = TypeVar("T")
RACERS = 8  # threads per node


@pytest.fixture
def nodes(pg_url: str):
    """Two stores, each with its own pool: what two servers on one database hold."""
    a, b = PgStore.open(pg_url, pool_size=RACERS), PgStore.open(pg_url, pool_size=RACERS)
    yield a, b
    a.close()
    b.close()


def race(nodes: tuple[Store, Store], call: Callable[[Store, int], T]) -> list[T]:
    return race_threads(nodes, call, RACERS)


def test_racing_code_redemptions_on_two_nodes_have_one_winner(nodes: tuple[PgStore, PgStore]) -> None:
    a, b = nodes
    a.save_code(token_hash("code"), client_id="app", redirect_uri=None, code_challenge=None,
                sub="alice", scope={"chat:read"}, expires_at=NOW + 60)
    wins = race(nodes, lambda s, n: s.redeem_code(token_hash("code"), NOW, issued(f"a{n}", refresh=f"r{n}")))
    assert sorted(wins) == [False] * (2 * RACERS - 1) + [True]
    # Only the winner's grant was recorded: one family, one refresh token, the code bound to it.
    assert b.counts()["families"] == 1 and b.counts()["refresh_tokens"] == 1
    winner = b.db.read_one("SELECT access_jti, family_id FROM codes")
    family = b.db.read_one("SELECT family_id FROM refresh_tokens")
    assert winner[1] == family[0] and winner[0].startswith("a")


def test_racing_refresh_rotations_on_two_nodes_have_one_winner(nodes: tuple[PgStore, PgStore]) -> None:
    a, b = nodes
    a.record_issue(NOW, issued("a0", refresh="t0"))
    family = a.get_refresh(token_hash("t0")).family_id
    wins = race(nodes, lambda s, n: s.rotate_refresh(token_hash("t0"), NOW + 1,
                                                     issued(f"a{n}", refresh=f"t{n + 1}", family=family)))
    assert wins.count(True) == 1
    successors = b.db.read("SELECT token_hash FROM refresh_tokens WHERE token_hash <> ?", (token_hash("t0"),))
    assert len(successors) == 1
    assert b.get_refresh(token_hash("t0")).used_at == NOW + 1


def test_racing_retries_get_one_replacement(nodes: tuple[PgStore, PgStore]) -> None:
    a, b = nodes
    a.record_issue(NOW, issued("a0", refresh="t0"))
    family = a.get_refresh(token_hash("t0")).family_id
    assert a.rotate_refresh(token_hash("t0"), NOW + 1, issued("a1", refresh="t1", family=family))
    got = race(nodes, lambda s, n: s.retry_refresh(token_hash("t0"), NOW + 2,
                                                   issued(f"b{n}", refresh=f"u{n}", family=family),
                                                   grace=10.0, limit=1))
    assert [g for g in got if g is not None] == [[("a1", NOW + 900)]]
    assert b.get_refresh(token_hash("t0")).retries == 1
    assert b.get_refresh(token_hash("t1")).superseded


def test_racing_device_code_redemptions_have_one_winner(nodes: tuple[PgStore, PgStore]) -> None:
    a, b = nodes
    assert a.save_device_code("dev", "user", client_id="app", scope={"chat:read"}, now=NOW,
                              expires_at=NOW + 600, interval=5.0)
    assert a.decide_device_code("user", sub="alice", approved=True, scope={"chat:read"}, now=NOW)
    wins = race(nodes, lambda s, n: s.redeem_device_code("dev", NOW + 1, issued(f"d{n}", refresh=f"r{n}")))
    assert wins.count(True) == 1
    assert b.counts()["refresh_tokens"] == 1


def test_racing_polls_all_count(nodes: tuple[PgStore, PgStore]) -> None:
    """A poll's read and update are one transaction: of 16 polls at one
    instant the first is on time and every other is flagged too fast."""
    a, _ = nodes
    assert a.save_device_code("dev", "user", client_id="app", scope=(), now=NOW, expires_at=NOW + 600,
                              interval=5.0)
    polls = race(nodes, lambda s, n: s.poll_device_code("dev", NOW + 10))
    assert sorted(p.too_fast for p in polls) == [False] + [True] * (2 * RACERS - 1)
    assert max(p.record.interval for p in polls) == 5.0 + 5.0 * (2 * RACERS - 1)


def test_migrate_is_idempotent_and_a_server_refuses_an_unmigrated_database(postgres: PostgresCluster) -> None:
    url = postgres.fresh_database(migrated=False)
    with pytest.raises(SchemaMismatch, match="realtime store migrate"):
        PgStore.open(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate(conn) == (None, PG_SCHEMA_VERSION)
        assert migrate(conn) == (PG_SCHEMA_VERSION, PG_SCHEMA_VERSION)
    store = PgStore.open(url)
    store.record_issue(NOW, issued("a1", refresh="t1"))
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate(conn) == (PG_SCHEMA_VERSION, PG_SCHEMA_VERSION)  # rows kept
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (str(PG_SCHEMA_VERSION + 1),))
        with pytest.raises(SchemaMismatch, match="newer server"):
            migrate(conn)
    with pytest.raises(SchemaMismatch, match="newer server"):
        PgStore.open(url)


def test_two_migrations_at_once_both_succeed(postgres: PostgresCluster) -> None:
    url = postgres.fresh_database(migrated=False)
    barrier = threading.Barrier(2)
    found: list[object] = []

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            found.append(migrate(conn))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 2 and set(found) == {(None, PG_SCHEMA_VERSION), (PG_SCHEMA_VERSION, PG_SCHEMA_VERSION)}


def test_an_unreachable_database_fails_fast_without_the_password() -> None:
    url = f"postgresql://realtime:hunter2secret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreUnavailable) as info:
        PgDatabase.open(url, timeout=1.0)
    assert "hunter2secret" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_timestamps_keep_full_precision(pg_url: str) -> None:
    """PostgreSQL's REAL is 4 bytes: the columns are DOUBLE PRECISION so epoch seconds survive."""
    store = PgStore.open(pg_url)
    store.save_code(token_hash("c"), client_id="app", redirect_uri=None, code_challenge=None, sub="alice",
                    scope=(), expires_at=NOW + 0.125, auth_time=NOW - 7.5)
    code = store.get_code(token_hash("c"))
    assert code.expires_at == NOW + 0.125 and code.auth_time == NOW - 7.5
    store.close()


def test_sqlite_and_postgres_layouts_name_the_same_columns(pg_url: str, tmp_path) -> None:
    """The table functions are shared, so both backends must have every table and column."""
    sqlite_store = Store.open(tmp_path / "s.sqlite3")
    tables = [r[0] for r in sqlite_store.db.read("SELECT name FROM sqlite_master WHERE type = 'table'")]
    sqlite_columns = {(t, r[1]) for t in tables for r in sqlite_store.db.read(f"PRAGMA table_info({t})")}
    sqlite_store.close()
    with psycopg.connect(pg_url) as conn:
        pg_columns = set(conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall())
    # commit_markers is the PostgreSQL database layer's own (lost-COMMIT checks), not a store table;
    # revoked.revoked_at is the revocation watcher's cursor, filled by its default.
    assert {(t, c) for t, c in pg_columns if t not in PG_ONLY_TABLES} - PG_ONLY_COLUMNS == sqlite_columns
    assert PG_ONLY_COLUMNS <= pg_columns
    assert {t for t, _ in pg_columns} - {t for t, _ in sqlite_columns} == PG_ONLY_TABLES == {"commit_markers"}
    assert (SCHEMA_VERSION, PG_SCHEMA_VERSION) == (5, 4)  # one layout, two numberings; a new column goes in both


async def test_async_store_runs_as_many_calls_at_once_as_the_pool_has_connections(pg_url: str) -> None:
    import trio

    from realtime.store.aio import AsyncStore

    astore = await AsyncStore.open_url(pg_url, pool_size=3)
    assert astore.limiter.total_tokens == 3
    together = threading.Barrier(3, timeout=30)  # passes only if three calls are in threads at once

    def meet(n: int) -> int:
        together.wait()
        return astore.sync.db.read_one("SELECT %s::int" % n)[0]

    got: list[int] = []

    async def one(n: int) -> None:
        got.append(await astore.call(meet, n))

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(one, n)
    assert sorted(got) == [0, 1, 2]
    await astore.record_issue(NOW, issued("a1", refresh="t1"))
    assert (await astore.get_refresh(token_hash("t1"))).sub == "alice"
    await astore.close()
    assert astore.sync.closed


def test_a_write_that_keeps_failing_serialization_is_unavailable_not_a_crash(pg_url: str, monkeypatch) -> None:
    """Past the retries the caller gets StoreUnavailable (a 503 to clients), never psycopg's error (a 500)."""
    from psycopg import errors

    from realtime.store.postgres import database as pg_database

    monkeypatch.setattr(pg_database, "MAX_ATTEMPTS", 3)
    runs: list[int] = []

    def always_conflicts(c: object) -> None:
        runs.append(1)
        raise errors.SerializationFailure("could not serialize access")

    store = PgStore.open(pg_url, pool_size=2)
    try:
        with pytest.raises(StoreUnavailable, match="too many conflicting transactions"):
            store.db.write(always_conflicts)
        assert len(runs) == 3
    finally:
        store.close()


def test_the_revocation_cursor_reads_only_what_was_written_since(pg_url: str) -> None:
    """Another node's watcher: the first read has every unexpired revocation, later
    ones only rows written since the previous read (with an overlap), not the old ones."""
    from realtime.store.postgres.revocations import OVERLAP, revocations_since

    store = PgStore.open(pg_url, pool_size=2)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("INSERT INTO revoked(jti, exp, revoked_at) VALUES ('old', %s, now() - interval '2 hours')",
                         (NOW + 900,))
        store.revoke_jtis([("expired", NOW - 1)])
        first, cursor = revocations_since(store.db, None, NOW)
        assert sorted(first) == [("old", NOW + 900)]  # all unexpired, whenever written
        store.revoke_jtis([("new", NOW + 900)])
        later, cursor2 = revocations_since(store.db, cursor, NOW)
        assert ("new", NOW + 900) in later and ("old", NOW + 900) not in later
        assert cursor2 >= cursor and OVERLAP.total_seconds() > 0
    finally:
        store.close()
