"""refresh_token grant: rotation, reuse detection, scope rules (RFC 6749 §6, RFC 9700 §4.14)."""

from __future__ import annotations

import attrs

from tests.helpers.oauth import ISSUER, WEB_CB, WEB_SECRET, Env, body_json, get_code

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
