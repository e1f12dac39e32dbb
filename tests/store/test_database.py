"""SQLite's own machinery under the store (WAL, the file, the connection),
and the transactions of every backend (``db``: the store's database, on each)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from realtime.store import Store, StoreClosed, token_hash
from realtime.store.database import Database, LostRace
from tests.helpers.store import NOW, issued


@pytest.fixture
def db(store: Store):
    """The database under the store of each backend (SQLite's :class:`Database`, PgDatabase)."""
    return store.db


def test_pragmas_wal_and_full(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s.db")
    mode = s.db.read("PRAGMA journal_mode")[0][0]
    sync = s.db.read("PRAGMA synchronous")[0][0]
    s.close()
    assert mode == "wal"
    assert sync == 2  # FULL


def test_concurrent_opens_of_a_new_file_all_succeed(tmp_path: Path) -> None:
    # Two servers (or a server and an admin tool) starting together both
    # switch a fresh file to WAL; SQLite answers one of them SQLITE_BUSY
    # without waiting, which used to fail server start-up.
    for round_no in range(20):
        path = tmp_path / f"race{round_no}.db"
        start = threading.Barrier(6)
        opened: list[Store] = []
        errors: list[BaseException] = []

        def open_one() -> None:
            start.wait()
            try:
                opened.append(Store.open(path))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in opened:
            s.close()
        assert errors == [], f"round {round_no}: {errors!r}"
        assert len(opened) == 6


def test_file_is_private_and_its_folder_made(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.sqlite3"
    Database.open(path).close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_codes_are_stored_hashed(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.sqlite3")
    code = "the-secret-code-value-xyz"
    store.save_code(token_hash(code), client_id="app", redirect_uri="https://a/cb",
                    code_challenge="c" * 43, sub="alice", scope={"b", "a"}, expires_at=NOW + 60)
    raw = (tmp_path / "state.sqlite3").read_bytes() + (tmp_path / "state.sqlite3-wal").read_bytes()
    store.close()
    assert code.encode() not in raw


def test_committed_data_visible_to_another_connection(tmp_path: Path) -> None:
    """What a grant answered is on disk: a second connection (as after a crash) sees it."""
    path = tmp_path / "state.sqlite3"
    s = Store.open(path)
    s.record_issue(NOW, issued("a1", refresh="t1"))
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT count(*) FROM refresh_tokens").fetchone()[0] == 1
    finally:
        other.close()
        s.close()


def test_write_rolls_back_on_any_exception(db: Database) -> None:
    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO revoked(jti, exp) VALUES ('x', 1)")
        raise KeyError("boom")

    with pytest.raises(KeyError):
        db.write(half_then_fail)
    assert db.read("SELECT count(*) FROM revoked") == [(0,)]


def test_claim_answers_false_and_keeps_nothing_on_a_lost_race(db: Database) -> None:
    def lose(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO revoked(jti, exp) VALUES ('x', 1)")
        raise LostRace()

    assert db.claim(lose) is False
    assert db.read("SELECT count(*) FROM revoked") == [(0,)]
    assert db.claim(lambda c: c.execute("INSERT INTO revoked(jti, exp) VALUES ('y', 1)")) is True
    assert db.read("SELECT jti FROM revoked") == [("y",)]


def test_failed_store_call_rolls_back(store: Store) -> None:
    store.record_issue(NOW, issued("a1", refresh="t1"))
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        store.record_issue(NOW, issued("a2", refresh="t1"))  # duplicate hash
    assert store.counts()["families"] == 1  # the second family insert was rolled back


def test_closed_database_refuses_calls(db: Database) -> None:
    db.close()
    db.close()  # idempotent
    assert db.closed
    with pytest.raises(StoreClosed):
        db.read("SELECT 1")
    with pytest.raises(StoreClosed):
        db.write(lambda c: None)


def test_threads_share_one_connection(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.sqlite3")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.record_issue(NOW, issued(f"j{n}-{i}", refresh=f"t{n}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.counts()["refresh_tokens"] == 80
    store.close()
