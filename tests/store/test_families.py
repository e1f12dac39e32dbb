"""Refresh families in the store: the retry grace (one winner), the
credential binding, and the schema upgrade that brought both."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import attrs
import pytest

from realtime.store import SCHEMA_VERSION, Store, token_hash
from realtime.store.schema import SchemaTooNew
from tests.helpers.store import NOW, OpenStore, issued

GRACE = 10.0


def rotated(store: Store) -> str:
    """t1 issued at NOW, rotated at NOW + 1 into t2 (whose answer is then "lost"); the family id."""
    store.record_issue(NOW, issued("a1", refresh="t1"))
    family = store.get_refresh(token_hash("t1")).family_id
    assert store.rotate_refresh(token_hash("t1"), NOW + 1, issued("a2", refresh="t2", family=family))
    return family


def test_a_retry_replaces_the_lost_answer(store: Store) -> None:
    family = rotated(store)
    lost = store.retry_refresh(token_hash("t1"), NOW + 2, issued("a3", refresh="t3", family=family),
                               grace=GRACE, limit=1)
    assert lost == [("a2", NOW + 900)]
    assert store.is_revoked("a2") and not store.is_revoked("a3")
    t2 = store.get_refresh(token_hash("t2"))
    assert t2.superseded and t2.used_at == NOW + 2 and not t2.family_revoked
    t3 = store.get_refresh(token_hash("t3"))
    assert t3.family_id == family and t3.used_at is None
    assert store.get_refresh(token_hash("t1")).retries == 1
    # The fresh pair rotates as usual.
    assert store.rotate_refresh(token_hash("t3"), NOW + 3, issued("a4", refresh="t4", family=family))


def test_count_two_allows_two_retries_each_replacing_the_previous_answer(store: Store) -> None:
    family = rotated(store)
    assert store.retry_refresh(token_hash("t1"), NOW + 2, issued("a3", refresh="t3", family=family),
                               grace=GRACE, limit=2) == [("a2", NOW + 900)]
    assert store.retry_refresh(token_hash("t1"), NOW + 3, issued("a4", refresh="t4", family=family),
                               grace=GRACE, limit=2) == [("a3", NOW + 900)]
    assert store.retry_refresh(token_hash("t1"), NOW + 4, issued("a5", refresh="t5", family=family),
                               grace=GRACE, limit=2) is None
    assert store.get_refresh(token_hash("t5")) is None
    assert store.get_refresh(token_hash("t3")).superseded


@pytest.mark.parametrize("case", ["too late", "other client", "answer was used", "family revoked", "never rotated"])
def test_a_retry_outside_the_rules_changes_nothing(store: Store, case: str) -> None:
    family = rotated(store)
    old, at, new = "t1", NOW + 2, issued("a3", refresh="t3", family=family)
    if case == "too late":
        at = NOW + 1 + GRACE + 0.5
    elif case == "other client":
        new = attrs.evolve(new, client_id="other")
    elif case == "answer was used":  # t2 arrived and was rotated: t1 now is a replay
        assert store.rotate_refresh(token_hash("t2"), NOW + 2, issued("a9", refresh="t9", family=family))
    elif case == "family revoked":
        store.revoke_family(family, NOW + 2)
    elif case == "never rotated":
        old = "t2"
    assert store.retry_refresh(token_hash(old), at, new, grace=GRACE, limit=1) is None
    assert store.get_refresh(token_hash("t3")) is None
    assert store.get_refresh(token_hash("t1")).retries == 0
    assert not store.get_refresh(token_hash("t2")).superseded


def test_a_superseded_token_cannot_be_retried(store: Store) -> None:
    family = rotated(store)
    assert store.retry_refresh(token_hash("t1"), NOW + 2, issued("a3", refresh="t3", family=family),
                               grace=GRACE, limit=5)
    # t2 is marked used by the retry; presenting it again is not a retry of t2.
    assert store.retry_refresh(token_hash("t2"), NOW + 3, issued("a4", refresh="t4", family=family),
                               grace=GRACE, limit=5) is None


def test_racing_retries_on_separate_connections_have_one_winner(open_store: OpenStore) -> None:
    """Four connections (as four processes would) retry the same used token
    at once with a count of 1: the conditional UPDATE lets exactly one through."""
    family = rotated(open_store())
    stores = [open_store() for _ in range(4)]
    start = threading.Barrier(len(stores))
    results: dict[int, object] = {}

    def retry(i: int) -> None:
        start.wait()
        results[i] = stores[i].retry_refresh(
            token_hash("t1"), NOW + 2, issued(f"r{i}", refresh=f"n{i}", family=family), grace=GRACE, limit=1)

    threads = [threading.Thread(target=retry, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if r is not None]
    assert len(winners) == 1 and results[winners[0]] == [("a2", NOW + 900)]
    check = stores[0]
    assert check.get_refresh(token_hash("t1")).retries == 1
    issued_now = [i for i in range(4) if check.get_refresh(token_hash(f"n{i}")) is not None]
    assert issued_now == winners


def test_a_new_family_records_the_credential_and_a_rotation_never_rebinds_it(store: Store) -> None:
    store.record_issue(NOW, attrs.evolve(issued("a1", refresh="t1"), credential="fp-1"))
    rec = store.get_refresh(token_hash("t1"))
    assert rec.credential == "fp-1" and rec.family_created_at == NOW
    # A rotation never rebinds a bound family.
    assert store.rotate_refresh(token_hash("t1"), NOW + 1,
                                attrs.evolve(issued("a2", refresh="t2", family=rec.family_id), credential="fp-2"))
    assert store.get_refresh(token_hash("t2")).credential == "fp-1"


# -- the schema upgrade ----------------------------------------------------------

# The families and refresh_tokens tables as schema version 1 made them.
SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE families (family_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, sub TEXT NOT NULL,
    created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE refresh_tokens (token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES families(family_id), client_id TEXT NOT NULL,
    sub TEXT NOT NULL, scope TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL,
    used_at REAL, access_jti TEXT, access_exp REAL);
CREATE INDEX refresh_by_family ON refresh_tokens(family_id);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO families VALUES ('fam-old', 'app', 'alice', 1799990000.0, 0);
INSERT INTO refresh_tokens VALUES ('{old}', 'fam-old', 'app', 'alice', 'chat:read',
    1799990000.0, 1800086400.0, NULL, 'a-old', 1800000900.0);
"""


def write_v1(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_V1.format(old=token_hash("old")))
    conn.close()


def test_a_version_1_file_is_upgraded_in_place_and_works(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    write_v1(path)
    store = Store.open(path)
    try:
        assert store.db.read("SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)]
        old = store.get_refresh(token_hash("old"))
        assert old.family_id == "fam-old" and old.credential is None and old.retries == 0
        assert old.family_created_at == 1799990000.0 and not old.superseded
        # It rotates; the rotation binds the family to the credential of now.
        assert store.rotate_refresh(token_hash("old"), NOW, attrs.evolve(
            issued("a-new", refresh="new", family="fam-old"), credential="fp"))
        assert store.get_refresh(token_hash("new")).credential == "fp"
        # And the retry machinery works on the upgraded tables.
        assert store.retry_refresh(token_hash("old"), NOW + 1, issued("a-3", refresh="t3", family="fam-old"),
                                   grace=GRACE, limit=1) == [("a-new", NOW + 900)]
    finally:
        store.close()
    # Opening again is a no-op.
    again = Store.open(path)
    assert again.get_refresh(token_hash("t3")).family_id == "fam-old"
    again.close()


def test_a_file_from_a_newer_server_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        Store.open(path)
