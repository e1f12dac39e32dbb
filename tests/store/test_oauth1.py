"""The OAuth 1 tables of the state store."""

from __future__ import annotations

from realtime.store import OAuth1AccessToken
from tests.helpers.store import OpenStore

NOW = 1_900_000_000.0


def access(token_hash: str = "a1") -> OAuth1AccessToken:
    return OAuth1AccessToken(token_hash, "oauth1-" + token_hash, "legacy", "alice", frozenset({"chat:read"}),
                             "aesgcm1:x", NOW, None, None)


def test_nonce_is_refused_again_after_a_restart(open_store: OpenStore) -> None:
    store = open_store()
    assert store.oauth1_use_nonce("ck", "", "n1", int(NOW), NOW + 301)
    assert not store.oauth1_use_nonce("ck", "", "n1", int(NOW), NOW + 301)
    assert store.oauth1_use_nonce("ck", "tok", "n1", int(NOW), NOW + 301)  # another token
    assert store.oauth1_use_nonce("ck", "", "n1", int(NOW) + 1, NOW + 302)  # another timestamp
    store.close()
    store = open_store()
    assert not store.oauth1_use_nonce("ck", "", "n1", int(NOW), NOW + 301)
    # Past its window the nonce is forgotten (the timestamp check refuses it by then).
    assert store.oauth1_sweep(NOW + 400)["oauth1_nonces"] == 3
    store.close()


def test_request_token_lifecycle(open_store: OpenStore) -> None:
    store = open_store()
    store.oauth1_save_request_token("r1", client_id="legacy", secret_enc="aesgcm1:x", callback="oob",
                                    scope={"chat:read"}, expires_at=NOW + 600)
    record = store.oauth1_get_request_token("r1")
    assert record is not None and record.sub is None and record.scope == {"chat:read"}
    assert not store.oauth1_authorize_request_token("r1", sub="alice", scope=(), verifier_hash="v", now=NOW + 601)
    assert store.oauth1_authorize_request_token("r1", sub="alice", scope={"chat:read"}, verifier_hash="v", now=NOW)
    assert not store.oauth1_authorize_request_token("r1", sub="bob", scope=(), verifier_hash="w", now=NOW)
    assert store.oauth1_exchange("r1", NOW, access())
    assert not store.oauth1_exchange("r1", NOW, access("a2"))  # single use; nothing recorded
    assert store.oauth1_get_access_token("a2") is None
    assert store.oauth1_get_request_token("r1").used_at == NOW
    assert store.oauth1_revoke_access_token("a1", NOW)
    assert not store.oauth1_revoke_access_token("a1", NOW)
    assert store.oauth1_get_access_token("a1").revoked_at == NOW
    counts = store.oauth1_sweep(NOW + 2 * 86400)
    assert counts["oauth1_request_tokens"] == 1 and counts["oauth1_access_tokens"] == 1
    store.close()
