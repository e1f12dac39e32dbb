"""The whole authorization-code + PKCE flow, end to end through the router."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.helpers.oauth import (
    ISSUER,
    PASSWORDS,
    SPA_CB,
    WEB_CB,
    WEB_SECRET,
    Env,
    authorize,
    body_json,
    header,
    hidden_fields,
    location_params,
    new_pkce,
)


async def test_full_flow(env: Env) -> None:
    p = new_pkce()
    # 1. The authorization request shows the login form and sets the CSRF cookie.
    resp = await env.get("/oauth2/authorize", {
        "response_type": "code", "client_id": "web", "redirect_uri": WEB_CB,
        "scope": "chat:read chat:write", "state": "xyz", "code_challenge": p.challenge,
        "code_challenge_method": "S256",
    })
    assert resp.status == 200
    assert b"Sign in" in resp.body and b"Web &lt;App&gt;" in resp.body  # escaped
    cookie = header(resp, "set-cookie")
    assert cookie and cookie.startswith("__Host-rt_csrf=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie and "; Path=/;" in cookie and "Domain" not in cookie
    assert WEB_CB.split("/cb")[0] in header(resp, "content-security-policy")
    fields = hidden_fields(resp)
    assert fields["csrf_token"] and fields["client_id"] == "web"

    # 2. Log in: a session cookie and the consent page listing the scopes.
    fields.update(username="alice", password=PASSWORDS["alice"])
    resp = await env.post("/oauth2/authorize", fields)
    assert resp.status == 200, resp.body
    assert b"chat:read" in resp.body and b"chat:write" in resp.body and b"Allow" in resp.body
    session_cookie = [v for k, v in resp.headers if k == "set-cookie" and v.startswith("__Host-rt_session=")]
    assert session_cookie and "HttpOnly" in session_cookie[0]

    # 3. Allow: redirect with code, state and iss.
    fields = hidden_fields(resp)
    fields["decision"] = "allow"
    resp = await env.post("/oauth2/authorize", fields)
    assert resp.status == 302
    loc = header(resp, "location")
    assert loc.startswith(WEB_CB + "?")
    params = location_params(resp)
    assert params["state"] == "xyz" and params["iss"] == ISSUER
    code = params["code"]

    # 4. Exchange the code with PKCE (client_secret_basic).
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB,
                            "code_verifier": p.verifier}, auth=("web", WEB_SECRET))
    assert resp.status == 200, resp.body
    assert header(resp, "cache-control") == "no-store" and header(resp, "pragma") == "no-cache"
    tok = body_json(resp)
    assert tok["token_type"] == "Bearer" and tok["scope"] == "chat:read chat:write"
    assert 0 < tok["expires_in"] <= 900 and tok["refresh_token"]
    claims = env.state.keyring.verify(tok["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5)
    assert claims.sub == "alice" and claims.client_id == "web"
    assert claims.scope == frozenset({"chat:read", "chat:write"})

    # 5. Userinfo with the access token.
    resp = await env.get("/oauth2/userinfo", headers=[("authorization", f"Bearer {tok['access_token']}")])
    assert resp.status == 200
    info = body_json(resp)
    # Scope chat:read chat:write: who the token stands for, no profile (SPEC §8).
    assert info == {"sub": "alice", "scope": "chat:read chat:write"}

    # 6. Refresh rotates.
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                           auth=("web", WEB_SECRET))
    assert resp.status == 200
    tok2 = body_json(resp)
    assert tok2["refresh_token"] != tok["refresh_token"]

    # 7. Introspection sees both the access and the new refresh token.
    resp = await env.post("/oauth2/introspect", {"token": tok2["access_token"]}, auth=("web", WEB_SECRET))
    info = body_json(resp)
    assert info["active"] is True and info["sub"] == "alice" and info["client_id"] == "web"
    assert info["iss"] == ISSUER and info["token_type"] == "Bearer" and info["jti"]
    resp = await env.post("/oauth2/introspect", {"token": tok2["refresh_token"]}, auth=("web", WEB_SECRET))
    assert body_json(resp)["active"] is True

    # 8. Reusing the rotated refresh token revokes the family and its live access tokens.
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                           auth=("web", WEB_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_grant"
    for t in (tok, tok2):
        c = env.state.keyring.verify(t["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5)
        assert c.jti in env.state.revoked
        assert await env.store.is_revoked(c.jti)
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok2["refresh_token"]},
                           auth=("web", WEB_SECRET))
    assert body_json(resp)["error"] == "invalid_grant"
    resp = await env.post("/oauth2/introspect", {"token": tok2["access_token"]}, auth=("web", WEB_SECRET))
    assert body_json(resp) == {"active": False}
    resp = await env.get("/oauth2/userinfo", headers=[("authorization", f"Bearer {tok2['access_token']}")])
    assert resp.status == 401 and 'error="invalid_token"' in header(resp, "www-authenticate")

    # 9. A second authorization skips login (session) and consent (remembered).
    p2 = new_pkce()
    resp = await env.get("/oauth2/authorize", {
        "response_type": "code", "client_id": "web", "redirect_uri": WEB_CB,
        "scope": "chat:read", "state": "again", "code_challenge": p2.challenge,
        "code_challenge_method": "S256",
    })
    assert resp.status == 302 and location_params(resp)["state"] == "again"

    # 10. Revocation of a fresh refresh token kills its family.
    code = location_params(resp)["code"]
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB,
                            "code_verifier": p2.verifier, "client_id": "web", "client_secret": WEB_SECRET})
    tok3 = body_json(resp)
    resp = await env.post("/oauth2/revoke", {"token": tok3["refresh_token"], "token_type_hint": "refresh_token"},
                          auth=("web", WEB_SECRET))
    assert resp.status == 200
    c3 = env.state.keyring.verify(tok3["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5)
    assert c3.jti in env.state.revoked
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok3["refresh_token"]},
                           auth=("web", WEB_SECRET))
    assert body_json(resp)["error"] == "invalid_grant"


async def test_public_client_flow_with_offline_access(env: Env) -> None:
    p = new_pkce()
    resp = await authorize(env, client_id="spa", redirect_uri=SPA_CB, scope="chat:read offline_access",
                           challenge=p)
    assert resp.status == 302
    loc = header(resp, "location")
    assert urlsplit(loc).query.startswith("keep=1&")  # the registered query is kept
    code = location_params(resp)["code"]
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_CB,
                            "code_verifier": p.verifier, "client_id": "spa"})
    assert resp.status == 200, resp.body
    tok = body_json(resp)
    assert "refresh_token" in tok and "offline_access" in tok["scope"].split()
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                            "client_id": "spa"})
    assert resp.status == 200 and body_json(resp)["refresh_token"]


async def test_public_client_without_offline_access_gets_no_refresh_token(env: Env) -> None:
    p = new_pkce()
    resp = await authorize(env, client_id="spa", redirect_uri=SPA_CB, scope="chat:read", challenge=p)
    code = location_params(resp)["code"]
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_CB,
                            "code_verifier": p.verifier, "client_id": "spa"})
    assert resp.status == 200
    assert "refresh_token" not in body_json(resp)
