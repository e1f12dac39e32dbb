"""Device codes (RFC 8628) and the account page's operations through
:class:`Store`, on every backend: single winners, slow_down bookkeeping,
withdrawing a grant, and a version 2 file migrated to 3."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import attrs

from realtime.store import SCHEMA_VERSION, Store, token_hash
from tests.helpers.store import NOW, issued


def new_code(store: Store, name: str = "d1", user: str = "u1", expires: float = NOW + 600) -> str:
    assert store.save_device_code(token_hash(name), token_hash(user), client_id="app", scope={"chat:read"},
                                  now=NOW, expires_at=expires, interval=5.0)
    return token_hash(name)


def test_user_code_clash_is_refused_unless_the_old_one_expired(store: Store) -> None:
    new_code(store)
    assert not store.save_device_code(token_hash("d2"), token_hash("u1"), client_id="app", scope=(),
                                      now=NOW + 1, expires_at=NOW + 601, interval=5.0)
    # Once the first request expired, its user code may be drawn again.
    assert store.save_device_code(token_hash("d2"), token_hash("u1"), client_id="app", scope=(),
                                  now=NOW + 600, expires_at=NOW + 1200, interval=5.0)
    assert store.get_device_by_user_code(token_hash("u1")).device_hash == token_hash("d2")


def test_polls_record_slow_down_and_grow_the_interval(store: Store) -> None:
    device = new_code(store)
    first = store.poll_device_code(device, NOW + 1)
    assert first is not None and not first.too_fast and first.record.status == "pending"
    fast = store.poll_device_code(device, NOW + 3)
    assert fast.too_fast and fast.record.interval == 10.0
    slow = store.poll_device_code(device, NOW + 14)
    assert not slow.too_fast and slow.record.interval == 10.0
    assert store.poll_device_code(token_hash("unknown"), NOW) is None


def test_decide_once_and_only_while_pending_and_live(store: Store) -> None:
    new_code(store)
    assert store.decide_device_code(token_hash("u1"), sub="alice", approved=True, scope={"chat:read"}, now=NOW + 1)
    assert not store.decide_device_code(token_hash("u1"), sub="mallory", approved=False, scope=(), now=NOW + 2)
    record = store.get_device_by_user_code(token_hash("u1"))
    assert record.status == "approved" and record.sub == "alice"
    new_code(store, "d2", "u2", expires=NOW + 10)
    assert not store.decide_device_code(token_hash("u2"), sub="alice", approved=True, scope=(), now=NOW + 10)


def test_redeem_once_even_when_racing(store: Store) -> None:
    device = new_code(store)
    assert not store.redeem_device_code(device, NOW + 1, issued("early"))  # not approved yet
    store.decide_device_code(token_hash("u1"), sub="alice", approved=True, scope={"chat:read"}, now=NOW + 1)
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def redeem(n: int) -> None:
        barrier.wait()
        wins.append(store.redeem_device_code(device, NOW + 2, issued(f"jti-{n}", refresh=f"r-{n}")))

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, False, False, True]
    # Only the winner's refresh token was recorded.
    assert sum(store.get_refresh(token_hash(f"r-{n}")) is not None for n in range(4)) == 1


def test_withdraw_grant_revokes_families_codes_and_device_tokens(store: Store) -> None:
    store.save_consent("alice", "app", {"chat:read"}, NOW)
    store.save_consent("alice", "other", {"chat:read"}, NOW)
    store.record_issue(NOW, issued("fam-access", refresh="r1"))
    code = token_hash("code")
    store.save_code(code, client_id="app", redirect_uri=None, code_challenge=None, sub="alice", scope=(),
                    expires_at=NOW + 60)
    assert store.redeem_code(code, NOW, issued("code-access"))
    device = new_code(store)
    store.decide_device_code(token_hash("u1"), sub="alice", approved=True, scope={"chat:read"}, now=NOW)
    assert store.redeem_device_code(device, NOW, issued("device-access"))
    store.record_issue(NOW, attrs.evolve(issued("other-access", refresh="r2"), client_id="other"))
    store.record_issue(NOW, attrs.evolve(issued("bob-access", refresh="r3"), sub="bob"))

    assert [c for c, _, _ in store.list_consents("alice")] == ["app", "other"]
    assert {c for c, _, _ in store.live_families_of("alice", NOW)} == {"app", "other"}
    pairs = store.withdraw_grant("alice", "app", NOW + 1)
    assert {j for j, _ in pairs} == {"fam-access", "code-access", "device-access"}
    assert all(store.is_revoked(j) for j, _ in pairs)
    assert store.get_consent("alice", "app") is None and store.get_consent("alice", "other") is not None
    assert store.get_refresh(token_hash("r1")).family_revoked
    assert not store.get_refresh(token_hash("r2")).family_revoked
    # Everything of alice; bob's untouched.
    pairs = store.withdraw_grant("alice", None, NOW + 2)
    assert "other-access" in {j for j, _ in pairs} and store.list_consents("alice") == []
    assert store.live_families_of("alice", NOW + 2) == []
    assert not store.get_refresh(token_hash("r3")).family_revoked and not store.is_revoked("bob-access")


def test_sweep_keeps_device_rows_until_their_tokens_expire(store: Store) -> None:
    device = new_code(store)
    store.decide_device_code(token_hash("u1"), sub="alice", approved=True, scope=(), now=NOW)
    store.redeem_device_code(device, NOW, issued("device-access", exp=NOW + 3600))
    new_code(store, "d2", "u2")
    assert store.sweep(NOW + 601)["device_codes"] == 1  # the unused one
    assert store.withdraw_grant("alice", "app", NOW + 700) == [("device-access", NOW + 3600)]
    assert store.sweep(NOW + 3600 + 301)["device_codes"] == 1


def test_a_version_2_file_gets_the_device_table(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE device_codes")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        assert store.db.read("SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)]
        new_code(store)
        assert store.get_device_by_user_code(token_hash("u1")) is not None
    finally:
        store.close()
