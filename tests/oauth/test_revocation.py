"""RFC 7009 revocation."""

from __future__ import annotations

from tests.helpers.oauth import ISSUER, SVC_SECRET, WEB_CB, WEB_SECRET, Env, body_json, get_code, header

AUTH = ("web", WEB_SECRET)


async def tokens(env: Env) -> dict:
    code = await get_code(env)
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB}, auth=AUTH)
    return body_json(resp)


async def test_revoke_access_token(env: Env) -> None:
    tok = await tokens(env)
    resp = await env.post("/oauth2/revoke", {"token": tok["access_token"], "token_type_hint": "access_token"}, auth=AUTH)
    assert resp.status == 200 and header(resp, "cache-control") == "no-store"
    jti = env.state.keyring.verify(tok["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5).jti
    assert jti in env.state.revoked and await env.store.is_revoked(jti)
    resp = await env.get("/oauth2/userinfo", headers=[("authorization", "Bearer " + tok["access_token"])])
    assert resp.status == 401
    # The refresh token is untouched (RFC 7009 lets us choose; we keep it).
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, auth=AUTH)
    assert resp.status == 200


async def test_revoke_refresh_token_revokes_family(env: Env) -> None:
    tok = await tokens(env)
    resp = await env.post("/oauth2/revoke", {"token": tok["refresh_token"]}, auth=AUTH)
    assert resp.status == 200
    jti = env.state.keyring.verify(tok["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5).jti
    assert jti in env.state.revoked
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, auth=AUTH)
    assert body_json(resp)["error"] == "invalid_grant"


async def test_unknown_tokens_are_200(env: Env) -> None:
    for token in ("nonsense", "a.b.c", "x" * 300):
        resp = await env.post("/oauth2/revoke", {"token": token, "token_type_hint": "weird_hint"}, auth=AUTH)
        assert resp.status == 200 and resp.body == b""


async def test_another_clients_token_is_refused(env: Env) -> None:
    tok = await tokens(env)
    resp = await env.post("/oauth2/revoke", {"token": tok["refresh_token"]}, auth=("svc", SVC_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_grant"
    resp = await env.post("/oauth2/revoke", {"token": tok["access_token"]}, auth=("svc", SVC_SECRET))
    assert resp.status == 400
    jti = env.state.keyring.verify(tok["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5).jti
    assert jti not in env.state.revoked


async def test_client_authentication_required(env: Env) -> None:
    tok = await tokens(env)
    resp = await env.post("/oauth2/revoke", {"token": tok["refresh_token"]})
    assert resp.status == 401
    resp = await env.post("/oauth2/revoke", {"token": tok["refresh_token"]}, auth=("web", "wrong"))
    assert resp.status == 401


async def test_missing_token_parameter(env: Env) -> None:
    resp = await env.post("/oauth2/revoke", {}, auth=AUTH)
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"


async def test_public_client_may_revoke_its_own(env: Env) -> None:
    from tests.helpers.oauth import SPA_CB, new_pkce

    p = new_pkce()
    code = await get_code(env, client_id="spa", redirect_uri=SPA_CB, scope="chat:read offline_access", challenge=p)
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_CB,
                            "code_verifier": p.verifier, "client_id": "spa"})
    tok = body_json(resp)
    resp = await env.post("/oauth2/revoke", {"token": tok["refresh_token"], "client_id": "spa"})
    assert resp.status == 200
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": "spa"})
    assert body_json(resp)["error"] == "invalid_grant"
