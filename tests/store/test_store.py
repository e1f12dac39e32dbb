"""The SQLite state store: real files in tmp_path, reopened after close."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio

from realtime.store import AsyncStore, IssuedTokens, Store, StoreClosed, token_hash

NOW = 1_800_000_000.0


def issued(jti: str, refresh: str | None = None, family: str | None = None, exp: float = NOW + 900,
           scope: frozenset[str] = frozenset({"chat:read"})) -> IssuedTokens:
    return IssuedTokens(
        access_jti=jti, access_exp=exp,
        refresh_hash=token_hash(refresh) if refresh else None,
        refresh_expires_at=NOW + 86400 if refresh else None,
        family_id=family, client_id="app", sub="alice", scope=scope,
    )


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "state.sqlite3")
    yield s
    s.close()


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


def test_codes_are_stored_hashed(store: Store, tmp_path: Path) -> None:
    code = "the-secret-code-value-xyz"
    store.save_code(token_hash(code), client_id="app", redirect_uri="https://a/cb",
                    code_challenge="c" * 43, sub="alice", scope={"b", "a"}, expires_at=NOW + 60)
    raw = (tmp_path / "state.sqlite3").read_bytes() + (tmp_path / "state.sqlite3-wal").read_bytes()
    assert code.encode() not in raw
    rec = store.get_code(token_hash(code))
    assert rec is not None and rec.scope == frozenset({"a", "b"}) and rec.used_at is None
    assert rec.redirect_uri == "https://a/cb"


def test_code_single_use_and_replay_revokes(store: Store) -> None:
    h = token_hash("code1")
    store.save_code(h, client_id="app", redirect_uri=None, code_challenge=None, sub="alice",
                    scope=(), expires_at=NOW + 60)
    assert store.redeem_code(h, NOW, issued("jti-1", refresh="r1"))
    assert store.get_code(h).used_at == NOW
    # A second redemption loses.
    assert not store.redeem_code(h, NOW + 1, issued("jti-2", refresh="r2"))
    assert store.get_refresh(token_hash("r2")) is None
    # Rotate once so the family has a second live access token.
    assert store.rotate_refresh(token_hash("r1"), NOW + 2, issued(
        "jti-3", refresh="r3", family=store.get_refresh(token_hash("r1")).family_id))
    pairs = store.revoke_code_grant(h, NOW + 3)
    assert {j for j, _ in pairs} == {"jti-1", "jti-3"}
    assert store.get_refresh(token_hash("r3")).family_revoked
    assert store.is_revoked("jti-1") and store.is_revoked("jti-3")


def test_refresh_rotation_and_reuse(store: Store) -> None:
    store.record_issue(NOW, issued("a1", refresh="t1"))
    first = store.get_refresh(token_hash("t1"))
    assert first is not None and not first.family_revoked and first.used_at is None
    assert store.rotate_refresh(token_hash("t1"), NOW + 1, issued("a2", refresh="t2", family=first.family_id))
    assert store.get_refresh(token_hash("t1")).used_at == NOW + 1
    second = store.get_refresh(token_hash("t2"))
    assert second.family_id == first.family_id
    # Rotating the used one again fails without touching anything.
    assert not store.rotate_refresh(token_hash("t1"), NOW + 2, issued("a3", refresh="t3", family=first.family_id))
    assert store.get_refresh(token_hash("t3")) is None
    pairs = store.revoke_family(first.family_id, NOW + 2)
    assert {j for j, _ in pairs} == {"a1", "a2"}
    assert store.get_refresh(token_hash("t2")).family_revoked
    # Revoked family: even the fresh token cannot rotate.
    assert not store.rotate_refresh(token_hash("t2"), NOW + 3, issued("a4", refresh="t4", family=first.family_id))


def test_expired_access_tokens_are_not_revoked_again(store: Store) -> None:
    store.record_issue(NOW, issued("old", refresh="t1", exp=NOW + 10))
    fam = store.get_refresh(token_hash("t1")).family_id
    assert store.revoke_family(fam, NOW + 10 + 301) == []  # past exp + the leeway grace


def test_revoked_jtis_and_sweep(store: Store) -> None:
    store.revoke_jtis([("j1", NOW + 10), ("j2", NOW + 1000)])
    store.revoke_jtis([("j1", NOW + 20)])  # idempotent, keeps the later exp
    assert sorted(store.revoked_jtis(NOW)) == [("j1", NOW + 20), ("j2", NOW + 1000)]
    assert store.revoked_jtis(NOW + 500) == [("j2", NOW + 1000)]  # j1: exp + grace passed
    store.save_code(token_hash("c"), client_id="app", redirect_uri=None, code_challenge=None,
                    sub="alice", scope=(), expires_at=NOW + 60)
    store.record_issue(NOW, issued("a", refresh="r", exp=NOW + 900))
    counts = store.sweep(NOW + 2 * 86400)
    assert counts["revoked"] == 2 and counts["codes"] == 1 and counts["refresh_tokens"] == 1
    assert counts["families"] == 1
    assert store.counts() == {"codes": 0, "families": 0, "refresh_tokens": 0, "revoked": 0, "consents": 0}


def test_sweep_keeps_live_rows(store: Store) -> None:
    store.save_code(token_hash("c"), client_id="app", redirect_uri=None, code_challenge=None,
                    sub="alice", scope=(), expires_at=NOW + 60)
    store.record_issue(NOW, issued("a", refresh="r"))
    store.revoke_jtis([("j", NOW + 100)])
    assert store.sweep(NOW + 61) == {"codes": 0, "refresh_tokens": 0, "families": 0, "revoked": 0}


def test_consents_merge(store: Store) -> None:
    assert store.get_consent("alice", "app") is None
    store.save_consent("alice", "app", {"a"}, NOW)
    store.save_consent("alice", "app", {"b"}, NOW)
    assert store.get_consent("alice", "app") == frozenset({"a", "b"})
    store.forget_consent("alice")
    assert store.get_consent("alice", "app") is None


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.sqlite3"
    s = Store.open(path)
    s.record_issue(NOW, issued("a1", refresh="t1"))
    s.revoke_jtis([("gone", NOW + 100)])
    s.save_consent("alice", "app", {"x"}, NOW)
    s.close()
    assert s.closed
    with pytest.raises(StoreClosed):
        s.get_refresh(token_hash("t1"))
    s2 = Store.open(path)
    try:
        assert s2.get_refresh(token_hash("t1")).sub == "alice"
        assert s2.revoked_jtis(NOW) == [("gone", NOW + 100)]
        assert s2.get_consent("alice", "app") == frozenset({"x"})
    finally:
        s2.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


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


def test_failed_transaction_rolls_back(store: Store) -> None:
    store.record_issue(NOW, issued("a1", refresh="t1"))
    with pytest.raises(sqlite3.IntegrityError):
        store.record_issue(NOW, issued("a2", refresh="t1"))  # duplicate hash
    assert store.counts()["families"] == 1  # the second family insert was rolled back


def test_threads_share_one_connection(store: Store) -> None:
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


async def test_async_store_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = await AsyncStore.open(path)
    await store.save_code(token_hash("c"), client_id="app", redirect_uri=None, code_challenge=None,
                          sub="alice", scope={"s"}, expires_at=NOW + 60)
    results = []

    async def redeem(n: int) -> None:
        results.append(await store.redeem_code(token_hash("c"), NOW, issued(f"j{n}", refresh=f"r{n}")))

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(redeem, n)
    assert sorted(results) == [False, False, False, False, True]
    assert (await store.get_code(token_hash("c"))).used_at == NOW
    await store.revoke_jtis([("x", NOW + 5)])
    assert await store.revoked_jtis(NOW) == [("x", NOW + 5)]
    await store.close()
    again = await AsyncStore.open(path)
    assert await again.is_revoked("x")
    assert (await again.counts())["refresh_tokens"] == 1
    await again.close()
