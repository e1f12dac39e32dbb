"""The account page (SPEC §10) through the router: the apps a user
granted, withdrawing one or all (consent, refresh families, access
tokens), CSRF on the forms.  Live sockets closing with 4003:
tests/oauth/test_pages_browser.py."""

from __future__ import annotations

import re

import attrs
import pytest

from realtime.store import token_hash
from realtime.tokens.keyring import TokenError, issue_access_token
import jwt
from tests.helpers.device import add_device_apps, decide, enter_code, poll, sign_in, start
from tests.helpers.oauth import WEB_CB, WEB_SECRET, Env, body_json, get_code, header, hidden_fields


async def web_tokens(env: Env) -> dict:
    code = await get_code(env, scope="chat:read profile")
    resp = await env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB},
                           auth=("web", WEB_SECRET))
    assert resp.status == 200, resp.body
    return body_json(resp)


async def tv_tokens(env: Env) -> dict:
    grant = await start(env, scope="chat:read offline_access")
    await decide(env, await enter_code(env, grant["user_code"]), "allow")
    resp = await poll(env, grant["device_code"])
    assert resp.status == 200, resp.body
    return body_json(resp)


def jti_of(env: Env, token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def test_sign_in_then_list_granted_apps(env: Env) -> None:
    add_device_apps(env)
    resp = await env.get("/account")
    assert resp.status == 200 and b'value="login"' in resp.body and b"action=\"/account\"" in resp.body
    resp = await sign_in(env, "/account")
    assert resp.status == 303 and header(resp, "location") == "/account"
    await web_tokens(env)
    await tv_tokens(env)
    page = await env.get("/account")
    text = page.body.decode()
    assert page.status == 200 and header(page, "cache-control") == "no-store"
    assert "Web &lt;App&gt;" in text and "Living-room TV" in text
    assert "<code>profile</code>" in text and "<code>offline_access</code>" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert 'name="client_id" value="web"' in text and 'name="all" value="1"' in text


async def test_withdraw_one_app(env: Env) -> None:
    add_device_apps(env)
    await sign_in(env, "/account")
    web = await web_tokens(env)
    tv = await tv_tokens(env)
    page = await env.get("/account")
    fields = hidden_fields(page)  # one CSRF token for every form of the page
    resp = await env.post("/account/revoke", {"csrf_token": fields["csrf_token"], "client_id": "web"})
    assert resp.status == 303 and header(resp, "location") == "/account?done=1"
    # web: consent gone, refresh family revoked, access token revoked.
    assert await env.store.get_consent("alice", "web") is None
    refused = await env.token({"grant_type": "refresh_token", "refresh_token": web["refresh_token"]},
                              auth=("web", WEB_SECRET))
    assert refused.status == 400 and body_json(refused)["error"] == "invalid_grant"
    assert jti_of(env, web["access_token"]) in env.state.revoked
    assert await env.store.is_revoked(jti_of(env, web["access_token"]))
    # tv untouched.
    assert await env.store.get_consent("alice", "tv") is not None
    assert jti_of(env, tv["access_token"]) not in env.state.revoked
    page = await env.get("/account?done=1")
    assert b"Access withdrawn" in page.body and b"Web &lt;App&gt;" not in page.body and b"Living-room TV" in page.body


async def test_withdrawing_cuts_off_tokens_the_store_never_recorded(env: Env) -> None:
    # A password-grant token without a refresh token (or a ticket made from
    # one) is in no family: only a cut-off like POST /api/revoke's refuses it,
    # here, after a restart (the store) and on other nodes.
    add_device_apps(env)
    await sign_in(env, "/account")
    await web_tokens(env)
    settings = env.state.settings
    unrecorded, _ = issue_access_token(env.state.keyring, issuer=settings.issuer, audience=settings.audience,
                                       sub="alice", client_id="web", scope=["chat:read"], ttl=900, now=env.now - 1)
    fields = hidden_fields(await env.get("/account"))
    env.advance(1)
    resp = await env.post("/account/revoke", {"csrf_token": fields["csrf_token"], "client_id": "web"})
    assert resp.status == 303
    with pytest.raises(TokenError):
        env.state.keyring.verify(unrecorded, issuer=settings.issuer, audience=settings.audience, now=env.now,
                                 revoked=env.state.revoked)
    kept = await env.store.live_cutoffs(env.now)
    assert [(sub, client_id) for sub, client_id, *_ in kept] == [("alice", "web")]
    assert not env.state.revoked.cut_off("alice", "tv", env.now - 1)  # the other app is untouched


async def test_sign_out_everywhere(env: Env) -> None:
    add_device_apps(env)
    await sign_in(env, "/account")
    web = await web_tokens(env)
    tv = await tv_tokens(env)
    fields = hidden_fields(await env.get("/account"))
    resp = await env.post("/account/revoke", {"csrf_token": fields["csrf_token"], "all": "1"})
    assert resp.status == 303
    for tokens in (web, tv):
        assert jti_of(env, tokens["access_token"]) in env.state.revoked
    assert await env.store.list_consents("alice") == []
    refused = await env.token({"grant_type": "refresh_token", "refresh_token": tv["refresh_token"], "client_id": "tv"})
    assert refused.status == 400
    page = await env.get("/account?done=all")
    assert b"Signed out everywhere" in page.body and b"not granted any app" in page.body


async def test_withdrawing_needs_the_csrf_token_and_a_session(env: Env) -> None:
    await sign_in(env, "/account")
    await web_tokens(env)
    fields = hidden_fields(await env.get("/account"))
    for bad in ("", "123.abc", fields["csrf_token"] + "x"):
        resp = await env.post("/account/revoke", {"csrf_token": bad, "client_id": "web"})
        assert resp.status == 403
    # The token of another browser (no binding cookie) does not do either.
    other = await env.request("POST", "/account/revoke", body=f"csrf_token={fields['csrf_token']}&client_id=web".encode(),
                              headers=[("content-type", "application/x-www-form-urlencoded")], cookies=False)
    assert other.status == 303 and header(other, "location") == "/account"
    assert await env.store.get_consent("alice", "web") is not None
    # Neither does a missing client_id.
    resp = await env.post("/account/revoke", {"csrf_token": fields["csrf_token"]})
    assert resp.status == 400


async def test_a_users_withdrawal_leaves_other_users_alone(env: Env) -> None:
    bob_env = attrs.evolve(env, jar={})
    await sign_in(bob_env, "/account", user="bob")
    code = await get_code(bob_env, scope="chat:read", user="bob")
    bob = body_json(await bob_env.token({"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB},
                                        auth=("web", WEB_SECRET)))
    await sign_in(env, "/account")
    await web_tokens(env)
    fields = hidden_fields(await env.get("/account"))
    await env.post("/account/revoke", {"csrf_token": fields["csrf_token"], "all": "1"})
    assert await env.store.get_refresh(token_hash(bob["refresh_token"])) is not None
    ok = await bob_env.token({"grant_type": "refresh_token", "refresh_token": bob["refresh_token"]},
                             auth=("web", WEB_SECRET))
    assert ok.status == 200
