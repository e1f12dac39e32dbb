"""The store's tables through :class:`Store`, on every backend (``open_store``)."""

from __future__ import annotations

import pytest

from realtime.store import Store, StoreClosed, token_hash
from tests.helpers.store import NOW, OpenStore, issued


def test_code_roundtrip(store: Store) -> None:
    store.save_code(token_hash("code"), client_id="app", redirect_uri="https://a/cb",
                    code_challenge="c" * 43, sub="alice", scope={"b", "a"}, expires_at=NOW + 60)
    rec = store.get_code(token_hash("code"))
    assert rec is not None and rec.scope == frozenset({"a", "b"}) and rec.used_at is None
    assert rec.redirect_uri == "https://a/cb" and rec.code_challenge == "c" * 43
    assert store.get_code(token_hash("other")) is None


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
    assert store.sweep(NOW + 61) == {"codes": 0, "refresh_tokens": 0, "families": 0, "revoked": 0, "login_sessions": 0,
                                     "device_codes": 0, "provider_logins": 0}


def test_consents_merge(store: Store) -> None:
    assert store.get_consent("alice", "app") is None
    store.save_consent("alice", "app", {"a"}, NOW)
    store.save_consent("alice", "app", {"b"}, NOW)
    store.save_consent("alice", "other", {"c"}, NOW)
    assert store.get_consent("alice", "app") == frozenset({"a", "b"})
    store.forget_consent("alice", "other")
    assert store.get_consent("alice", "other") is None
    assert store.get_consent("alice", "app") == frozenset({"a", "b"})
    store.forget_consent("alice")
    assert store.get_consent("alice", "app") is None


def test_reopen_after_close_keeps_everything(open_store: OpenStore) -> None:
    s = open_store()
    s.record_issue(NOW, issued("a1", refresh="t1"))
    s.revoke_jtis([("gone", NOW + 100)])
    s.save_consent("alice", "app", {"x"}, NOW)
    s.close()
    assert s.closed
    with pytest.raises(StoreClosed):
        s.get_refresh(token_hash("t1"))
    s2 = open_store()
    assert s2.get_refresh(token_hash("t1")).sub == "alice"
    assert s2.revoked_jtis(NOW) == [("gone", NOW + 100)]
    assert s2.get_consent("alice", "app") == frozenset({"x"})
