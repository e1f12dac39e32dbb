"""The signing key ring in the store (SPEC §14), on both backends: sealed
private keys, the first key made once, rotation and retirement as the key
directory does them, and one first key when two nodes start at once."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from realtime.store import SCHEMA_VERSION, Store
from realtime.store.postgres import PgStore
from realtime.store.signing_keys import load_ring, prune_ring, ring_stamp, rotate_ring
from realtime.tokens.keyring import TokenError, issue_access_token
from tests.helpers.store import OpenStore

KEY = bytes(range(32))
NOW = 1_700_000_000.0
RETIRE = 600.0


def _token(ring) -> str:
    return issue_access_token(ring, issuer="https://as", audience="rt", sub="ann", client_id="c",
                              scope=["a"], ttl=60, now=NOW)[0]


def test_the_first_key_is_made_once_and_sealed(open_store: OpenStore) -> None:
    store = open_store()
    ring = load_ring(store, KEY, "ES256", retire_after=RETIRE, now=NOW)
    again = load_ring(open_store(), KEY, "ES256", retire_after=RETIRE, now=NOW + 5)
    assert list(again.keys) == list(ring.keys) == [ring.active.kid]
    assert again.active.alg == "ES256"
    [row] = store.signing_key_rows()
    assert row[0] == ring.active.kid and row[5] == NOW and row[6] is None
    assert b"PRIVATE" not in row[3].encode() and '"d"' not in row[2]  # sealed, and the JWK is public
    assert store.signing_key_stamp() == ring_stamp(ring)
    with pytest.raises(ValueError, match="does not open with this"):
        load_ring(store, os.urandom(32), now=NOW)


def test_a_row_sealed_for_one_kid_does_not_open_as_another(store: Store) -> None:
    ring = load_ring(store, KEY, "EdDSA", retire_after=RETIRE, now=NOW)
    rotate_ring(store, KEY, "EdDSA", retire_after=RETIRE, now=NOW + 1)
    rows = store.signing_key_rows()
    swapped = [(rows[0][0], *rows[0][1:3], rows[1][3], *rows[0][4:])]
    store.db.write(lambda c: c.execute("DELETE FROM signing_keys"))
    store.insert_signing_keys(swapped)
    with pytest.raises(ValueError, match=ring.active.kid):
        load_ring(store, KEY, now=NOW)


def test_rotation_keeps_the_old_key_verifying_until_it_retires(store: Store) -> None:
    old = load_ring(store, KEY, "RS256", retire_after=RETIRE, now=NOW)
    token = _token(old)
    new = rotate_ring(store, KEY, "RS256", retire_after=RETIRE, now=NOW + 10)
    assert new.active.kid != old.active.kid
    assert new.keys[old.active.kid].retire_at == NOW + 10 + RETIRE
    assert new.verify(token, issuer="https://as", audience="rt", now=NOW + 20).sub == "ann"
    assert load_ring(store, KEY, "RS256", retire_after=RETIRE, now=NOW + 30).active.kid == new.active.kid
    assert prune_ring(store, KEY, NOW + 10 + RETIRE - 1).keys.keys() == new.keys.keys()
    pruned = prune_ring(store, KEY, NOW + 10 + RETIRE)
    assert list(pruned.keys) == [new.active.kid]
    with pytest.raises(TokenError) as refused:
        pruned.verify(token, issuer="https://as", audience="rt", now=NOW + 20)
    assert refused.value.reason == "unknown_kid"


def test_a_new_signing_alg_gets_a_key_and_the_old_one_retires(store: Store) -> None:
    old = load_ring(store, KEY, "RS256", retire_after=RETIRE, now=NOW)
    new = load_ring(store, KEY, "ES256", retire_after=RETIRE, now=NOW + 1)
    assert new.active.alg == "ES256"
    assert new.keys[old.active.kid].retire_at == NOW + 1 + RETIRE


def test_two_nodes_starting_at_once_make_one_first_key(pg_url: str) -> None:
    nodes = [PgStore.open(pg_url, pool_size=1) for _ in range(6)]
    barrier = threading.Barrier(len(nodes))
    kids: list[str] = []

    def start(store: PgStore) -> None:
        barrier.wait()
        kids.append(load_ring(store, KEY, "EdDSA", retire_after=RETIRE, now=NOW).active.kid)

    threads = [threading.Thread(target=start, args=(s,)) for s in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(kids) == len(nodes) and len(set(kids)) == 1
        assert [r[0] for r in nodes[0].signing_key_rows()] == kids[:1]
    finally:
        for s in nodes:
            s.close()


def test_a_version_3_file_gets_the_signing_keys_table(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE signing_keys; UPDATE meta SET value = '3' WHERE key = 'schema';")
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        assert store.db.read("SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)] == [("5",)]
        assert load_ring(store, KEY, "EdDSA", now=NOW).active.alg == "EdDSA"
    finally:
        store.close()


def test_a_version_1_postgres_database_gets_cutoffs_and_signing_keys(postgres) -> None:
    import psycopg

    from realtime.store.postgres import PG_SCHEMA_VERSION, migrate

    url = postgres.fresh_database(migrated=False)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("DROP TABLE signing_keys; DROP TABLE cutoffs")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        assert migrate(conn) == (1, PG_SCHEMA_VERSION) == (1, 4)
    store = PgStore.open(url, pool_size=1)
    try:
        assert load_ring(store, KEY, "EdDSA", now=NOW).active.alg == "EdDSA"
        assert store.live_cutoffs(NOW) == []
    finally:
        store.close()
