"""Pending provider logins and provider-created users in the store, on
both backends: single-use takes (one winner under concurrency, on one
node or two), expiry, the per-address and total caps, one user per name
ignoring case, and the migrations that add both tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable, TypeVar

import psycopg

from realtime.store import SCHEMA_VERSION, Store
from realtime.store.postgres import PG_SCHEMA_VERSION, PgStore, migrate
from realtime.store.postgres import database as pg_database
from realtime.store.provider_logins import PendingRow
from realtime.store.provider_users import StoredUser
from tests.helpers.postgres import PostgresCluster
from tests.helpers.race import race as race_threads
from tests.helpers.store import NOW, OpenStore

T = TypeVar("T")
RACERS = 6  # threads per node


def pending(n: int, *, address: str = "192.0.2.1", at: float = NOW, ttl: float = 600) -> PendingRow:
    return PendingRow(state_hash=f"state-{n:04d}", provider="corp", binding="b" * 64, address=address,
                      sealed=f"sealed-{n}", created_at=at, expires_at=at + ttl)


def user(name: str, at: float = NOW) -> StoredUser:
    provider, _, subject = name.partition(":")
    return StoredUser(name=name, provider=provider, subject=subject, scopes=frozenset({"chat:read"}),
                      display_name="Alice P.", email=None, created_at=at)


def add(store: Store, row: PendingRow, now: float = NOW, per_address: int = 20, total: int = 10_000) -> int:
    return store.add_provider_login(row, now=now, per_address=per_address, total=total)


def race(stores: tuple[Store, Store], call: Callable[[Store, int], T]) -> list[T]:
    return race_threads(stores, call, RACERS)


def test_a_pending_login_is_taken_once(store: Store) -> None:
    add(store, pending(1))
    assert store.take_provider_login("state-0001", NOW + 1) == pending(1)
    assert store.take_provider_login("state-0001", NOW + 1) is None
    assert store.take_provider_login("state-9999", NOW + 1) is None


def test_an_expired_login_is_refused_and_gone(store: Store) -> None:
    add(store, pending(1, ttl=600))
    assert store.take_provider_login("state-0001", NOW + 600) is None
    assert store.provider_logins_count() == 0
    add(store, pending(2, ttl=10))
    add(store, pending(3, ttl=600), now=NOW + 20)  # adding prunes what expired
    assert store.provider_logins_count() == 1
    add(store, pending(4, ttl=10), now=NOW + 20)
    assert store.sweep(NOW + 31)["provider_logins"] == 1  # and so does the sweep


def test_racing_takes_of_one_login_have_one_winner(open_store: OpenStore) -> None:
    """Two stores on one database (PostgreSQL: two pools, two nodes; SQLite: two connections)."""
    stores = (open_store(), open_store())
    add(stores[0], pending(1))
    got = race(stores, lambda s, n: s.take_provider_login("state-0001", NOW + 1))
    assert [g for g in got if g is not None] == [pending(1)]
    assert got.count(None) == 2 * RACERS - 1


def test_one_address_cannot_push_out_the_others(store: Store) -> None:
    add(store, pending(0, address="198.51.100.7"))
    for n in range(1, 31):
        add(store, pending(n, at=NOW + n), per_address=20)  # one address, 30 starts: its oldest make room
    assert store.provider_logins_count() == 21
    assert store.take_provider_login("state-0010", NOW + 40) is None  # evicted
    assert store.take_provider_login("state-0011", NOW + 40) is not None
    assert store.take_provider_login("state-0000", NOW + 40) is not None  # the other address kept its login


def test_the_table_never_grows_past_its_total(store: Store) -> None:
    for n in range(12):
        evicted = add(store, pending(n, address=f"203.0.113.{n}", at=NOW + n), total=5)
        assert evicted == (1 if n >= 5 else 0)
    assert store.provider_logins_count() == 5
    assert store.take_provider_login("state-0006", NOW + 20) is None
    assert store.take_provider_login("state-0007", NOW + 20) is not None


def test_concurrent_adds_on_two_nodes_never_conflict(open_store: OpenStore, monkeypatch) -> None:
    """Every add counts the whole table for the total cap; two serializable adds
    would conflict on that and be retried (or fail past the retries).  With no
    retry allowed at all, adds from two stores at once all succeed and the cap holds."""
    monkeypatch.setattr(pg_database, "MAX_ATTEMPTS", 1)
    stores = (open_store(), open_store())
    for n in range(40):
        add(stores[0], pending(10_000 + n, address=f"203.0.113.{n}"), total=50)
    got = race(stores, lambda s, n: [add(s, pending(100 * n + k, address=f"198.51.100.{n}", at=NOW + k), total=50)
                                      for k in range(8)])
    assert len(got) == 2 * RACERS  # no call failed (race() asserts no errors)
    assert stores[1].provider_logins_count() == 50


def test_provider_users_one_per_name_ignoring_case(store: Store) -> None:
    assert store.provider_users_stamp() == (0, 0.0)
    assert store.add_provider_user(user("corp:alice")) == user("corp:alice")
    # Another node's first login of the same user: the stored one comes back.
    assert store.add_provider_user(user("corp:alice", at=NOW + 5)) == user("corp:alice")
    clash = store.add_provider_user(user("corp:ALICE", at=NOW + 6))
    assert clash.name == "corp:alice"  # refused by the caller: it differs only in case
    store.add_provider_user(user("corp:bob", at=NOW + 7))
    assert [u.name for u in store.provider_user_rows()] == ["corp:alice", "corp:bob"]
    assert store.provider_users_stamp() == (2, NOW + 7)


def test_racing_first_logins_of_one_user_store_it_once(open_store: OpenStore) -> None:
    stores = (open_store(), open_store())
    got = race(stores, lambda s, n: s.add_provider_user(user("corp:alice", at=NOW + n)))
    assert len(set(got)) == 1 and len(got) == 2 * RACERS
    assert stores[1].provider_user_rows() == got[:1]


def test_a_version_4_sqlite_file_gets_the_provider_tables(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE provider_logins; DROP TABLE provider_users;"
                       " UPDATE meta SET value = '4' WHERE key = 'schema';")
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        assert store.db.read("SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)] == [("5",)]
        add(store, pending(1))
        assert store.add_provider_user(user("corp:alice")).name == "corp:alice"
    finally:
        store.close()


def test_a_version_2_postgres_database_gets_the_provider_tables(postgres: PostgresCluster) -> None:
    url = postgres.fresh_database(migrated=False)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("DROP TABLE provider_logins; DROP TABLE provider_users")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
        assert migrate(conn) == (2, PG_SCHEMA_VERSION) == (2, 4)
        assert migrate(conn) == (4, 4)  # idempotent
    store = PgStore.open(url, pool_size=1)
    try:
        add(store, pending(1))
        assert store.take_provider_login("state-0001", NOW) == pending(1)
        assert store.add_provider_user(user("corp:alice")).name == "corp:alice"
    finally:
        store.close()
