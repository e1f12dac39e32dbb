"""RFC 7662 introspection, userinfo (RFC 6750 errors), RFC 8414 metadata, JWKS."""

from __future__ import annotations

import attrs

from realtime.tokens.keyring import issue_access_token

from tests.helpers.oauth import (
    ISSUER,
    SVC_SECRET,
    WEB_CB,
    WEB_SECRET,
    Env,
    body_json,
    get_code,
    header,
)

AUTH = ("web", WEB_SECRET)


async def tokens(env: Env) -> dict:
    code = await get_code(env)
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB}, auth=AUTH)
    return body_json(resp)


async def introspect(env: Env, token: str, auth=AUTH) -> tuple[int, dict]:
    resp = await env.post("/oauth2/introspect", {"token": token}, auth=auth)
    return resp.status, body_json(resp)


async def test_access_token_fields(env: Env) -> None:
    tok = await tokens(env)
    status, info = await introspect(env, tok["access_token"], auth=("svc", SVC_SECRET))  # a resource server
    assert status == 200
    assert info["active"] is True
    for key in ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "token_type", "jti"):
        assert key in info, key
    assert info["scope"] == "chat:read profile" and info["aud"] == ISSUER


async def test_refresh_token_only_for_its_client(env: Env) -> None:
    tok = await tokens(env)
    status, info = await introspect(env, tok["refresh_token"])
    assert info["active"] is True and info["token_type"] == "refresh_token" and info["sub"] == "alice"
    status, info = await introspect(env, tok["refresh_token"], auth=("svc", SVC_SECRET))
    assert info == {"active": False}


async def test_inactive_cases(env: Env) -> None:
    tok = await tokens(env)
    for token in ("garbage", "a.b.c", tok["access_token"][:-4] + "AAAA"):
        assert (await introspect(env, token))[1] == {"active": False}
    # Used refresh token.
    await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, auth=AUTH)
    assert (await introspect(env, tok["refresh_token"]))[1] == {"active": False}


async def test_user_disabled_makes_token_inactive(env: Env) -> None:
    tok = await tokens(env)
    s = env.state.settings
    env.state.settings = attrs.evolve(s, users={**s.users, "alice": attrs.evolve(s.users["alice"], disabled=True)})
    assert (await introspect(env, tok["access_token"]))[1] == {"active": False}


async def test_introspection_needs_authentication(env: Env) -> None:
    tok = await tokens(env)
    resp = await env.post("/oauth2/introspect", {"token": tok["access_token"]})
    assert resp.status == 401
    resp = await env.post("/oauth2/introspect", {"token": tok["access_token"], "client_id": "spa"})
    assert resp.status == 401 and body_json(resp)["error"] == "invalid_client"
    resp = await env.post("/oauth2/introspect", {}, auth=AUTH)
    assert resp.status == 400


async def test_userinfo_errors(env: Env) -> None:
    resp = await env.get("/oauth2/userinfo")
    assert resp.status == 401 and header(resp, "www-authenticate").startswith("Bearer")
    resp = await env.get("/oauth2/userinfo", headers=[("authorization", "Bearer nope")])
    assert resp.status == 401 and 'error="invalid_token"' in header(resp, "www-authenticate")
    # A client_credentials token stands for no user.
    resp = await env.token({"grant_type": "client_credentials"}, auth=("svc", SVC_SECRET))
    cc = body_json(resp)["access_token"]
    resp = await env.get("/oauth2/userinfo", headers=[("authorization", "Bearer " + cc)])
    assert resp.status == 403 and 'error="insufficient_scope"' in header(resp, "www-authenticate")


async def test_userinfo_post_with_form_token(env: Env) -> None:
    tok = await tokens(env)
    resp = await env.post("/oauth2/userinfo", {"access_token": tok["access_token"]})
    assert resp.status == 200 and body_json(resp)["sub"] == "alice"
    resp = await env.post("/oauth2/userinfo", {"access_token": tok["access_token"]},
                          headers=[("authorization", "Bearer " + tok["access_token"])])
    assert resp.status == 400


async def test_metadata(env: Env) -> None:
    resp = await env.get("/.well-known/oauth-authorization-server")
    assert resp.status == 200
    meta = body_json(resp)
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth2/token"
    assert meta["authorization_endpoint"] == ISSUER + "/oauth2/authorize"
    assert meta["jwks_uri"] == ISSUER + "/oauth2/jwks"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"chat:read", "chat:write", "notify", "profile"} <= set(meta["scopes_supported"])
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token",
                                                  "client_credentials", "password",
                                                  "urn:ietf:params:oauth:grant-type:device_code"}
    assert "none" in meta["token_endpoint_auth_methods_supported"]


async def test_jwks(env: Env) -> None:
    resp = await env.get("/oauth2/jwks")
    assert resp.status == 200
    keys = body_json(resp)["keys"]
    assert keys and all("kid" in k for k in keys)
    assert not any("d" in k for k in keys)  # never a private part


def signed(env: Env, scope: str, sub: str = "alice") -> list[tuple[str, str]]:
    token, _ = issue_access_token(env.state.keyring, issuer=ISSUER, audience=ISSUER, sub=sub, client_id="web",
                                  scope=scope.split(), ttl=60, now=env.now)
    return [("authorization", "Bearer " + token)]


async def test_userinfo_claims_follow_the_scope(env: Env) -> None:
    """SPEC §8: ``sub`` always; ``profile`` adds name and preferred_username
    (and the older display_name); ``email`` adds email and email_verified."""
    resp = await env.get("/oauth2/userinfo", headers=signed(env, "chat:read"))
    assert body_json(resp) == {"sub": "alice", "scope": "chat:read"}
    resp = await env.get("/oauth2/userinfo", headers=signed(env, "chat:read profile"))
    assert body_json(resp) == {"sub": "alice", "name": "Alice A.", "preferred_username": "alice",
                               "display_name": "Alice A.", "scope": "chat:read profile"}
    resp = await env.get("/oauth2/userinfo", headers=signed(env, "email"))
    assert body_json(resp) == {"sub": "alice", "email": "alice@example.com", "email_verified": False,
                               "scope": "email"}
    # A user without a display name or an address: the name stands in, no email.
    resp = await env.get("/oauth2/userinfo", headers=signed(env, "profile email", sub="bob"))
    assert body_json(resp) == {"sub": "bob", "name": "bob", "preferred_username": "bob",
                               "scope": "email profile"}
