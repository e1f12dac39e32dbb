"""refresh_token grant: rotation, reuse detection, scope rules (RFC 6749 §6, RFC 9700 §4.14);
the retry grace, the family's absolute lifetime and its credential binding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest

from realtime.config.load import ConfigError, load_settings
from realtime.store import token_hash
from tests.helpers.oauth import CHEAP, ISSUER, PASSWORDS, PW_SECRET, WEB_CB, WEB_SECRET, Env, body_json, get_code

AUTH = ("web", WEB_SECRET)


async def first_tokens(env: Env, scope: str = "chat:read chat:write profile") -> dict:
    code = await get_code(env, scope=scope)
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB}, auth=AUTH)
    assert resp.status == 200, resp.body
    return body_json(resp)


async def refresh(env: Env, token: str, auth=AUTH, **extra: str):
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": token, **extra}, auth=auth)
    return resp.status, body_json(resp)


async def test_rotation_chain(env: Env) -> None:
    tok = await first_tokens(env)
    seen = {tok["refresh_token"]}
    for _ in range(3):
        status, tok = await refresh(env, tok["refresh_token"])
        assert status == 200 and tok["refresh_token"] not in seen
        seen.add(tok["refresh_token"])


async def test_reuse_revokes_family_and_live_access_tokens(env: Env) -> None:
    t1 = await first_tokens(env)
    _, t2 = await refresh(env, t1["refresh_token"])
    _, t3 = await refresh(env, t2["refresh_token"])
    status, body = await refresh(env, t1["refresh_token"])  # stolen and replayed
    assert status == 400 and body["error"] == "invalid_grant"
    for t in (t1, t2, t3):
        jti = env.state.keyring.verify(t["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5).jti
        assert jti in env.state.revoked
    # The legitimate holder's latest token is dead too.
    status, body = await refresh(env, t3["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    # And the revocations are persisted for the next start.
    persisted = {j for j, _ in await env.store.revoked_jtis(env.now)}
    assert len(persisted) == 3


async def test_narrower_scope_allowed_wider_refused(env: Env) -> None:
    tok = await first_tokens(env, scope="chat:read profile")
    status, body = await refresh(env, tok["refresh_token"], scope="chat:read")
    assert status == 200 and body["scope"] == "chat:read"
    # The new refresh token keeps the original grant (RFC 6749 §6).
    status, body = await refresh(env, body["refresh_token"], scope="chat:read profile")
    assert status == 200 and body["scope"] == "chat:read profile"
    status, body = await refresh(env, body["refresh_token"], scope="chat:read chat:write")
    assert status == 400 and body["error"] == "invalid_scope"


async def test_disabled_user_cannot_refresh(env: Env) -> None:
    tok = await first_tokens(env)
    s = env.state.settings
    env.state.settings = attrs.evolve(s, users={**s.users, "alice": attrs.evolve(s.users["alice"], disabled=True)})
    status, body = await refresh(env, tok["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_another_clients_refresh_token(env: Env) -> None:
    tok = await first_tokens(env)
    status, body = await refresh(env, tok["refresh_token"], auth=None, client_id="spa")
    assert status == 400 and body["error"] == "invalid_grant"
    # The owner can still use it: a foreign presentation is not a reuse.
    status, _ = await refresh(env, tok["refresh_token"])
    assert status == 200


async def test_expired_refresh_token(env: Env) -> None:
    tok = await first_tokens(env)
    env.advance(31 * 86400)
    status, body = await refresh(env, tok["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_unknown_and_missing_refresh_token(env: Env) -> None:
    status, body = await refresh(env, "nonsense")
    assert status == 400 and body["error"] == "invalid_grant"
    resp = await env.token({"grant_type": "refresh_token"}, auth=AUTH)
    assert body_json(resp)["error"] == "invalid_request"


async def test_app_without_refresh_grant_is_unauthorized(env: Env) -> None:
    tok = await first_tokens(env)
    s = env.state.settings
    env.state.settings = attrs.evolve(
        s, apps={**s.apps, "web": attrs.evolve(s.apps["web"], grant_types=("authorization_code",))})
    status, body = await refresh(env, tok["refresh_token"])
    assert status == 400 and body["error"] == "unauthorized_client"


# -- issue 18: helpers -----------------------------------------------------------


def set_oauth(env: Env, **changes: Any) -> None:
    s = env.state.settings
    env.state.settings = attrs.evolve(s, oauth=attrs.evolve(s.oauth, **changes))


def jti_of(tok: dict) -> str:
    """The access token's jti (read, not verified: the tests move the clock past exp)."""
    return jwt.decode(tok["access_token"], options={"verify_signature": False})["jti"]


async def family_revoked(env: Env, tok: dict) -> bool:
    record = await env.store.get_refresh(token_hash(tok["refresh_token"]))
    assert record is not None
    return record.family_revoked


# -- item 6: a retry within the grace ----------------------------------------------


async def test_a_retry_within_the_grace_gets_a_fresh_pair_and_revokes_the_lost_one(env: Env) -> None:
    set_oauth(env, refresh_reuse_grace=10.0, refresh_reuse_count=1)
    t1 = await first_tokens(env)
    _, lost = await refresh(env, t1["refresh_token"])  # answered, but the answer never arrived
    env.advance(3)
    status, t3 = await refresh(env, t1["refresh_token"])
    assert status == 200 and t3["refresh_token"] != lost["refresh_token"]
    assert jti_of(lost) in env.state.revoked and jti_of(t3) not in env.state.revoked
    assert {j for j, _ in await env.store.revoked_jtis(env.now)} == {jti_of(lost)}
    status, t4 = await refresh(env, t3["refresh_token"])  # the fresh pair lives on
    assert status == 200
    # The lost answer, presented after all, is a reuse: the family goes.
    status, body = await refresh(env, lost["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    assert await family_revoked(env, t4) and jti_of(t4) in env.state.revoked


async def test_grace_off_by_default_reuse_revokes(env: Env) -> None:
    assert env.state.settings.oauth.refresh_reuse_grace == 0
    t1 = await first_tokens(env)
    _, t2 = await refresh(env, t1["refresh_token"])
    status, _ = await refresh(env, t1["refresh_token"])
    assert status == 400 and await family_revoked(env, t2)


@pytest.mark.parametrize("case", ["too late", "too many times", "answer was used"])
async def test_reuse_outside_the_grace_revokes_the_family(env: Env, case: str) -> None:
    set_oauth(env, refresh_reuse_grace=10.0, refresh_reuse_count=1)
    t1 = await first_tokens(env)
    _, t2 = await refresh(env, t1["refresh_token"])
    if case == "too late":
        env.advance(10.5)
    elif case == "too many times":
        status, t2 = await refresh(env, t1["refresh_token"])
        assert status == 200
    elif case == "answer was used":  # t2 arrived: t1 again is a replay, not a retry
        _, t2 = await refresh(env, t2["refresh_token"])
    status, body = await refresh(env, t1["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    assert await family_revoked(env, t2) and jti_of(t2) in env.state.revoked


async def test_a_used_token_from_another_client_revokes_the_family(env: Env) -> None:
    """Inside the grace too: only the token's own client may retry (SPEC §2)."""
    set_oauth(env, refresh_reuse_grace=10.0, refresh_reuse_count=1)
    t1 = await first_tokens(env)
    _, t2 = await refresh(env, t1["refresh_token"])
    status, body = await refresh(env, t1["refresh_token"], auth=None, client_id="spa")
    assert status == 400 and body["error"] == "invalid_grant"
    assert await family_revoked(env, t2) and jti_of(t2) in env.state.revoked


# -- I5: the family's absolute lifetime ---------------------------------------------


async def test_refresh_expiry_is_cut_at_the_family_end(env: Env) -> None:
    set_oauth(env, refresh_family_ttl=40 * 86400.0)  # refresh_token_ttl is 30d
    start = env.now
    tok = await first_tokens(env)
    record = await env.store.get_refresh(token_hash(tok["refresh_token"]))
    assert record.expires_at == pytest.approx(start + 30 * 86400)
    env.advance(20 * 86400)
    _, tok = await refresh(env, tok["refresh_token"])
    record = await env.store.get_refresh(token_hash(tok["refresh_token"]))
    assert record.expires_at == pytest.approx(start + 40 * 86400)  # not now + 30d
    env.advance(19 * 86400)
    status, tok = await refresh(env, tok["refresh_token"])
    assert status == 200
    env.advance(1 * 86400)  # the family is 40 days old
    status, body = await refresh(env, tok["refresh_token"])
    assert status == 400 and body == {"error": "invalid_grant", "error_description": "the refresh token has expired"}


async def test_a_shorter_family_ttl_applies_to_existing_families(env: Env) -> None:
    tok = await first_tokens(env)
    env.advance(2 * 86400)
    set_oauth(env, refresh_family_ttl=86400.0)  # lowered by a reload
    status, body = await refresh(env, tok["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


# -- L3: a password change ends the families ----------------------------------------------


async def password_tokens(env: Env, user: str) -> dict:
    resp = await env.token({"grant_type": "password", "username": user, "password": PASSWORDS[user],
                            "scope": "chat:read"}, auth=("pw", PW_SECRET))
    assert resp.status == 200, resp.body
    return body_json(resp)


def change_password(env: Env, user: str, new: str) -> None:
    s = env.state.settings
    env.state.settings = attrs.evolve(
        s, users={**s.users, user: attrs.evolve(s.users[user], password_hash=CHEAP.hash(new))})


async def test_a_password_change_revokes_the_users_families(env: Env) -> None:
    alice, bob = await password_tokens(env, "alice"), await password_tokens(env, "bob")
    code_family = await first_tokens(env)  # alice again, through the browser
    change_password(env, "alice", "a-new-password")
    for tok in (alice, code_family):
        status, body = await refresh(env, tok["refresh_token"], auth=("pw", PW_SECRET)) if tok is alice \
            else await refresh(env, tok["refresh_token"])
        assert status == 400 and body["error"] == "invalid_grant"
        assert await family_revoked(env, tok) and jti_of(tok) in env.state.revoked
    status, _ = await refresh(env, bob["refresh_token"], auth=("pw", PW_SECRET))
    assert status == 200
    # A family begun after the change works.
    resp = await env.token({"grant_type": "password", "username": "alice", "password": "a-new-password"},
                           auth=("pw", PW_SECRET))
    status, _ = await refresh(env, body_json(resp)["refresh_token"], auth=("pw", PW_SECRET))
    assert status == 200


async def test_the_store_holds_a_fingerprint_not_the_hash(env: Env) -> None:
    tok = await password_tokens(env, "alice")
    record = await env.store.get_refresh(token_hash(tok["refresh_token"]))
    password_hash = env.state.settings.users["alice"].password_hash
    assert record.credential and len(record.credential) == 64
    dump = b"".join(p.read_bytes() for p in env.store.path.parent.glob("state.sqlite3*"))
    assert password_hash.encode() not in dump and password_hash.split("$")[-1].encode() not in dump


async def test_a_removed_user_cannot_refresh(env: Env) -> None:
    tok = await password_tokens(env, "bob")
    s = env.state.settings
    env.state.settings = attrs.evolve(s, users={k: v for k, v in s.users.items() if k != "bob"})
    status, body = await refresh(env, tok["refresh_token"], auth=("pw", PW_SECRET))
    assert status == 400 and body["error"] == "invalid_grant"


# -- the keys ---------------------------------------------------------------------


def write_config(tmp_path: Path, oauth: str) -> Path:
    conf = tmp_path / "realtime.toml"
    conf.write_text(f'[server]\nstate_dir = "var"\n\n[oauth]\n{oauth}\n')
    return conf


def test_the_keys_and_their_defaults(tmp_path: Path) -> None:
    oauth = load_settings(write_config(tmp_path, "")).oauth
    assert (oauth.refresh_reuse_grace, oauth.refresh_reuse_count, oauth.refresh_family_ttl) == (0.0, 1, 90 * 86400.0)
    oauth = load_settings(write_config(
        tmp_path, 'refresh_reuse_grace = "30s"\nrefresh_reuse_count = 3\nrefresh_family_ttl = "7d"')).oauth
    assert (oauth.refresh_reuse_grace, oauth.refresh_reuse_count, oauth.refresh_family_ttl) == (30.0, 3, 7 * 86400.0)


@pytest.mark.parametrize("line, key, words", [
    ('refresh_reuse_grace = "10m"', "refresh_reuse_grace", "at most 5m"),
    ('refresh_reuse_grace = "soon"', "refresh_reuse_grace", ""),
    ("refresh_reuse_count = 0", "refresh_reuse_count", "at least 1"),
    ('refresh_reuse_count = "2"', "refresh_reuse_count", "integer"),
    ('refresh_family_ttl = "0s"', "refresh_family_ttl", "longer than zero"),
])
def test_bad_values_name_file_line_and_key(tmp_path: Path, line: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write_config(tmp_path, line))
    text = str(error.value)
    assert f"realtime.toml:5: oauth.{key}" in text or f"realtime.toml:5: {key}" in text, text
    assert words in text


async def test_introspection_agrees_with_the_grant(env: Env) -> None:
    """RFC 7662: a refresh token the grant would refuse is not active."""
    async def active(tok: dict) -> bool:
        resp = await env.post("/oauth2/introspect", {"token": tok["refresh_token"]}, auth=AUTH)
        return body_json(resp)["active"]

    tok = await first_tokens(env)
    assert await active(tok)
    env.advance(3600)
    set_oauth(env, refresh_family_ttl=3600.0)
    assert not await active(tok)
    set_oauth(env, refresh_family_ttl=90 * 86400.0)
    assert await active(tok)
    change_password(env, "alice", PASSWORDS["alice"])  # a new hash, even of the same password, is a change
    assert not await active(tok)
