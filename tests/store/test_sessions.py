"""Login sessions (OIDC) in the store: saved by cookie hash, rotated,
expired, swept, and ended with everything issued in them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs

from realtime.store import SCHEMA_VERSION, LoginSession, Store, token_hash
from tests.helpers.store import NOW, OpenStore, issued


def session(cookie: str = "cookie-1", sid: str = "sid-1", sub: str = "alice") -> LoginSession:
    return LoginSession(id_hash=token_hash(cookie), sid=sid, sub=sub, credential="mark",
                        auth_time=NOW, expires_at=NOW + 3600)


def test_saved_by_hash_rotated_and_expired(open_store: OpenStore) -> None:
    store = open_store()
    store.save_login_session(session())
    assert store.get_login_session(token_hash("cookie-1"), NOW) == session()
    assert store.get_login_session(token_hash("cookie-1"), NOW + 3600) is None  # expired
    # A sign-in replaces the cookie; the sid may carry over; the old id is dead.
    store.save_login_session(session("cookie-2"), token_hash("cookie-1"))
    assert store.get_login_session(token_hash("cookie-1"), NOW) is None
    assert store.get_login_session(token_hash("cookie-2"), NOW).sid == "sid-1"
    assert store.sweep(NOW + 3601)["login_sessions"] == 1
    assert store.get_login_session(token_hash("cookie-2"), NOW) is None


def test_ending_a_session_revokes_what_was_issued_in_it(open_store: OpenStore) -> None:
    store = open_store()
    store.save_login_session(session())
    store.save_login_session(session("cookie-b", "sid-b"))
    # In sid-1: a code exchanged for a refresh family (then rotated), a code
    # exchanged without refresh, and a code not yet exchanged.
    for code in ("c1", "c2", "c3"):
        store.save_code(token_hash(code), client_id="app", redirect_uri=None, code_challenge=None, sub="alice",
                        scope=["openid"], expires_at=NOW + 60, sid="sid-1", nonce="n", auth_time=NOW)
    assert store.get_code(token_hash("c1")).nonce == "n"
    assert store.redeem_code(token_hash("c1"), NOW, attrs.evolve(issued("a1", refresh="r1"), sid="sid-1",
                                                                  auth_time=NOW))
    family = store.get_refresh(token_hash("r1")).family_id
    assert store.get_refresh(token_hash("r1")).sid == "sid-1"
    assert store.rotate_refresh(token_hash("r1"), NOW + 1, issued("a2", refresh="r2", family=family))
    assert store.redeem_code(token_hash("c2"), NOW, attrs.evolve(issued("a3"), sid="sid-1"))
    # In sid-b: a family that must survive.
    store.save_code(token_hash("cb"), client_id="app", redirect_uri=None, code_challenge=None, sub="alice",
                    scope=["openid"], expires_at=NOW + 60, sid="sid-b")
    assert store.redeem_code(token_hash("cb"), NOW, attrs.evolve(issued("ab", refresh="rb"), sid="sid-b"))

    pairs = store.end_login_session("sid-1", NOW + 2)
    assert {jti for jti, _ in pairs} == {"a1", "a2", "a3"}
    assert all(store.is_revoked(j) for j in ("a1", "a2", "a3")) and not store.is_revoked("ab")
    assert store.get_login_session(token_hash("cookie-1"), NOW) is None
    assert store.get_login_session(token_hash("cookie-b"), NOW) is not None
    assert store.get_refresh(token_hash("r2")).family_revoked
    assert not store.get_refresh(token_hash("rb")).family_revoked
    assert store.get_code(token_hash("c3")).expires_at <= NOW + 2  # no longer exchangeable
    # Again: nothing new, harmless.
    assert store.end_login_session("sid-1", NOW + 3) == pairs


def test_a_version_2_file_gets_the_session_columns(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store.open(path).close()
    conn = sqlite3.connect(path)  # make it look like version 2: no session table or columns
    conn.executescript("""
        DROP TABLE login_sessions;
        DROP INDEX codes_by_sid; DROP INDEX families_by_sid;
        ALTER TABLE codes DROP COLUMN sid; ALTER TABLE codes DROP COLUMN nonce;
        ALTER TABLE codes DROP COLUMN auth_time;
        ALTER TABLE families DROP COLUMN sid; ALTER TABLE families DROP COLUMN auth_time;
        INSERT INTO codes(code_hash, client_id, sub, scope, expires_at) VALUES ('old', 'app', 'alice', '', 1e10);
        UPDATE meta SET value = '2' WHERE key = 'schema';
    """)
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        assert store.db.read("SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)]
        assert store.get_code("old").sid is None
        store.save_login_session(session())
        assert store.end_login_session("sid-1", NOW) == []
    finally:
        store.close()
