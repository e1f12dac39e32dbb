"""authorization_code grant (RFC 6749 §4.1.3, RFC 7636 §4.5–4.6)."""

from __future__ import annotations

from tests.helpers.oauth import (
    ISSUER,
    SPA_CB,
    WEB_CB,
    WEB_SECRET,
    Env,
    body_json,
    get_code,
    new_pkce,
)

AUTH = ("web", WEB_SECRET)


async def exchange(env: Env, code: str, verifier: str | None, **extra: str) -> tuple[int, dict]:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    data = {k: v for k, v in data.items() if v is not None}
    resp = await env.token(data, auth=AUTH)
    return resp.status, body_json(resp)


async def test_code_is_single_use_and_replay_revokes(env: Env) -> None:
    p = new_pkce()
    code = await get_code(env, challenge=p)
    status, first = await exchange(env, code, p.verifier)
    assert status == 200
    status, second = await exchange(env, code, p.verifier)
    assert status == 400 and second["error"] == "invalid_grant"
    claims = env.state.keyring.verify(first["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5)
    assert claims.jti in env.state.revoked
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=AUTH)
    assert body_json(resp)["error"] == "invalid_grant"


async def test_replay_also_revokes_tokens_rotated_from_the_code(env: Env) -> None:
    p = new_pkce()
    code = await get_code(env, challenge=p)
    _, first = await exchange(env, code, p.verifier)
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=AUTH)
    rotated = body_json(resp)
    await exchange(env, code, p.verifier)
    claims = env.state.keyring.verify(rotated["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5)
    assert claims.jti in env.state.revoked
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}, auth=AUTH)
    assert body_json(resp)["error"] == "invalid_grant"


async def test_code_expires_after_60_seconds(env: Env) -> None:
    p = new_pkce()
    code = await get_code(env, challenge=p)
    env.advance(61)
    status, body = await exchange(env, code, p.verifier)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_redirect_uri_must_match_exactly(env: Env) -> None:
    p = new_pkce()
    code = await get_code(env, challenge=p)
    for wrong in (WEB_CB + "/", WEB_CB[:-1], "http://127.0.0.1:9000/cb", None):
        status, body = await exchange(env, code, p.verifier, redirect_uri=wrong)
        assert status == 400 and body["error"] == "invalid_grant", wrong
    status, _ = await exchange(env, code, p.verifier)
    assert status == 200  # failed attempts did not burn the code


async def test_pkce_mismatch_and_malformed_verifier(env: Env) -> None:
    p = new_pkce()
    code = await get_code(env, challenge=p)
    status, body = await exchange(env, code, new_pkce().verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    for bad in ("a" * 42, "a" * 129, "a" * 50 + "!"):
        status, body = await exchange(env, code, bad)
        assert status == 400 and body["error"] == "invalid_request"
    status, body = await exchange(env, code, None)
    assert status == 400 and body["error"] == "invalid_request"


async def test_verifier_without_challenge_is_refused(env: Env) -> None:
    code = await get_code(env)  # confidential client, no PKCE
    status, body = await exchange(env, code, new_pkce().verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    status, body = await exchange(env, code, None)
    assert status == 200 and body["scope"] == "chat:read profile"


async def test_code_of_another_client(env: Env) -> None:
    p = new_pkce()
    code = await get_code(env, client_id="spa", redirect_uri=SPA_CB, scope="chat:read", challenge=p)
    status, body = await exchange(env, code, p.verifier, redirect_uri=SPA_CB)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_unknown_code(env: Env) -> None:
    status, body = await exchange(env, "not-a-code", None)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_missing_code(env: Env) -> None:
    resp = await env.token({"grant_type": "authorization_code", "redirect_uri": WEB_CB}, auth=AUTH)
    assert body_json(resp)["error"] == "invalid_request"


async def test_user_disabled_between_login_and_exchange(env: Env) -> None:
    import attrs

    code = await get_code(env)
    s = env.state.settings
    env.state.settings = attrs.evolve(s, users={k: v for k, v in s.users.items() if k != "alice"})
    status, body = await exchange(env, code, None)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_scope_shrinks_when_app_loses_it(env: Env) -> None:
    import attrs

    code = await get_code(env, scope="chat:read profile")
    s = env.state.settings
    env.state.settings = attrs.evolve(s, apps={**s.apps, "web": attrs.evolve(s.apps["web"], scopes=("chat:read",))})
    status, body = await exchange(env, code, None)
    assert status == 200 and body["scope"] == "chat:read"


async def test_per_app_ttl(env: Env) -> None:
    import attrs

    s = env.state.settings
    env.state.settings = attrs.evolve(s, apps={**s.apps, "web": attrs.evolve(s.apps["web"], access_token_ttl=60.0)})
    code = await get_code(env)
    status, body = await exchange(env, code, None)
    assert status == 200 and body["expires_in"] == 60


async def test_answered_grant_is_on_disk(env: Env, tmp_path) -> None:
    """What the token endpoint answered is committed: a fresh connection sees it."""
    from realtime.store import Store, token_hash

    code = await get_code(env)
    _, body = await exchange(env, code, None)
    other = Store.open(env.store.path)
    try:
        rec = other.get_refresh(token_hash(body["refresh_token"]))
        assert rec is not None and rec.used_at is None and rec.sub == "alice"
        assert other.get_code(token_hash(code)).used_at is not None
    finally:
        other.close()
