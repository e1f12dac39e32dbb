"""/oauth2/authorize: error pages, error redirects, CSRF, consent, throttling."""

from __future__ import annotations

from urllib.parse import urlencode

import attrs
import pytest

from realtime.config.settings import App

from tests.helpers.oauth import (
    ISSUER,
    PASSWORDS,
    SESSION,
    SPA_CB,
    WEB_CB,
    Env,
    authorize,
    header,
    hidden_fields,
    location_params,
    new_pkce,
)


def base(**kw: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB, "state": "s1",
              "scope": "chat:read"}
    params.update(kw)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize("params", [
    {"response_type": "code"},  # no client_id
    {"response_type": "code", "client_id": "nobody", "redirect_uri": WEB_CB},
    {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB + "/"},
    {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB[:-1]},
    {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB.upper()},
    {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB + "?x=1"},
    {"response_type": "code", "client_id": "web"},  # two registered URIs: must name one
    {"response_type": "code", "client_id": "web", "redirect_uri": "https://evil.example/cb"},
])
async def test_untrusted_client_or_redirect_shows_page_never_redirects(env: Env, params: dict) -> None:
    resp = await env.get("/oauth2/authorize", params)
    assert resp.status == 400
    assert header(resp, "location") is None
    assert header(resp, "content-type").startswith("text/html")


async def test_repeated_redirect_uri_is_an_error_page(env: Env) -> None:
    target = "/oauth2/authorize?" + urlencode([("client_id", "web"), ("redirect_uri", WEB_CB),
                                               ("redirect_uri", WEB_CB), ("response_type", "code")])
    resp = await env.request("GET", target)
    assert resp.status == 400 and header(resp, "location") is None


async def test_single_registered_uri_may_be_omitted(env: Env) -> None:
    p = new_pkce()
    resp = await env.get("/oauth2/authorize", {"response_type": "code", "client_id": "spa",
                                               "code_challenge": p.challenge, "code_challenge_method": "S256"})
    assert resp.status == 200 and b"Sign in" in resp.body


@pytest.mark.parametrize("params, error", [
    (base(response_type=None), "invalid_request"),
    (base(response_type="token"), "unsupported_response_type"),
    (base(scope="admin"), "invalid_scope"),
    (base(scope="chat:read bad\"scope"), "invalid_scope"),
    (base(code_challenge="a" * 43, code_challenge_method="plain"), "invalid_request"),
    (base(code_challenge="a" * 43), "invalid_request"),  # method defaults to plain
    (base(code_challenge="short", code_challenge_method="S256"), "invalid_request"),
    (base(code_challenge_method="S256"), "invalid_request"),
    (base(prompt="bogus"), "invalid_request"),
])
async def test_errors_redirect_with_state_and_iss(env: Env, params: dict, error: str) -> None:
    resp = await env.get("/oauth2/authorize", params)
    assert resp.status == 302, resp.body
    assert header(resp, "location").startswith(WEB_CB + "?")
    got = location_params(resp)
    assert got["error"] == error and got["state"] == "s1" and got["iss"] == ISSUER
    assert "code" not in got


async def test_repeated_parameter_redirects_invalid_request(env: Env) -> None:
    target = "/oauth2/authorize?" + urlencode(list(base().items()) + [("scope", "chat:write")])
    resp = await env.request("GET", target)
    assert resp.status == 302 and location_params(resp)["error"] == "invalid_request"


async def test_public_client_must_send_pkce(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base(client_id="spa", redirect_uri=SPA_CB))
    assert resp.status == 302 and location_params(resp)["error"] == "invalid_request"


async def test_client_without_code_grant_is_unauthorized(env: Env) -> None:
    # "pw" has no redirect URIs; give it one through a settings swap (reload-safety too).
    import attrs

    s = env.state.settings
    pw = attrs.evolve(s.apps["pw"], redirect_uris=("https://pw.example/cb",))
    env.state.settings = attrs.evolve(s, apps={**s.apps, "pw": pw})
    resp = await env.get("/oauth2/authorize", base(client_id="pw", redirect_uri="https://pw.example/cb"))
    assert resp.status == 302 and location_params(resp)["error"] == "unauthorized_client"


async def test_login_csrf_forged_or_missing_cookie(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    fields.update(username="alice", password=PASSWORDS["alice"])
    forged = dict(fields, csrf_token=fields["csrf_token"][:-2] + "AA")
    resp = await env.post("/oauth2/authorize", forged)
    assert resp.status == 403 and SESSION not in env.jar
    # The token is bound to the browser cookie: another browser cannot use it.
    env.jar.clear()
    resp = await env.post("/oauth2/authorize", fields)
    assert resp.status == 403 and SESSION not in env.jar


async def test_login_csrf_bound_to_the_request(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    fields.update(username="alice", password=PASSWORDS["alice"], scope="chat:read chat:write")
    resp = await env.post("/oauth2/authorize", fields)
    assert resp.status == 403


async def test_consent_csrf_forged(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    fields.update(username="alice", password=PASSWORDS["alice"])
    resp = await env.post("/oauth2/authorize", fields)
    consent = hidden_fields(resp)
    consent.update(decision="allow", csrf_token="1." + "A" * 43)
    resp = await env.post("/oauth2/authorize", consent)
    assert resp.status == 403 and header(resp, "location") is None
    # The login form's token does not pass as a consent token.
    consent.update(csrf_token=fields["csrf_token"])
    resp = await env.post("/oauth2/authorize", consent)
    assert resp.status == 403


async def test_consent_without_session_asks_to_log_in(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    fields.update(action="consent", decision="allow")
    resp = await env.post("/oauth2/authorize", fields)
    assert resp.status == 200 and b"Sign in" in resp.body


async def test_deny_redirects_access_denied(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    fields.update(username="alice", password=PASSWORDS["alice"])
    resp = await env.post("/oauth2/authorize", fields)
    fields = hidden_fields(resp)
    fields["decision"] = "deny"
    resp = await env.post("/oauth2/authorize", fields)
    got = location_params(resp)
    assert got["error"] == "access_denied" and got["state"] == "s1"
    assert await env.store.get_consent("alice", "web") is None


async def test_consent_remembered_per_scope_set(env: Env) -> None:
    resp = await authorize(env, scope="chat:read")
    assert resp.status == 302
    assert await env.store.get_consent("alice", "web") == frozenset({"chat:read"})
    # Same scopes: straight to the code.
    resp = await env.get("/oauth2/authorize", base())
    assert resp.status == 302 and "code" in location_params(resp)
    # More scopes: ask again.
    resp = await env.get("/oauth2/authorize", base(scope="chat:read chat:write"))
    assert resp.status == 200 and b"Allow" in resp.body
    # prompt=consent forces the page.
    resp = await env.get("/oauth2/authorize", base(prompt="consent"))
    assert resp.status == 200 and b"Allow" in resp.body


async def test_scopes_limited_to_user(env: Env) -> None:
    resp = await authorize(env, scope="chat:read chat:write", user="bob")
    code = location_params(resp)["code"]
    rec = await env.store.get_code(__import__("realtime.store", fromlist=["token_hash"]).token_hash(code))
    assert rec.scope == frozenset({"chat:read"}) and rec.sub == "bob"


async def test_wrong_password_and_unknown_user_look_the_same(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    r1 = await env.post("/oauth2/authorize", dict(fields, username="alice", password="nope"))
    r2 = await env.post("/oauth2/authorize", dict(fields, username="mallory", password="nope"))
    assert r1.status == r2.status == 400
    assert b"Invalid user name or password" in r1.body and b"Invalid user name or password" in r2.body
    assert b"nope" not in r1.body


async def test_disabled_user_cannot_log_in(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    resp = await env.post("/oauth2/authorize", dict(fields, username="dave", password=PASSWORDS["dave"]))
    assert resp.status == 400 and SESSION not in env.jar


async def test_login_brute_force_throttled_per_user_and_address(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    for _ in range(5):  # login_rate = 5/m
        resp = await env.post("/oauth2/authorize", dict(fields, username="alice", password="wrong"))
        assert resp.status == 400
    resp = await env.post("/oauth2/authorize", dict(fields, username="alice", password=PASSWORDS["alice"]))
    assert resp.status == 429 and int(header(resp, "retry-after")) >= 1
    # One address cannot lock the user out everywhere: from another one
    # the right password works (the per-user bucket is looser).
    env.address = "203.0.113.9"
    resp = await env.post("/oauth2/authorize", dict(fields, username="alice", password=PASSWORDS["alice"]))
    assert resp.status == 200 and SESSION in env.jar


async def test_login_brute_force_throttled_per_user_across_addresses(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    for n in range(6):  # 6 addresses x 5 failures = login_user_rate (30/m)
        env.address = f"203.0.113.{n}"
        for _ in range(5):
            resp = await env.post("/oauth2/authorize", dict(fields, username="alice", password="wrong"))
            assert resp.status == 400
    env.address = "203.0.113.99"
    resp = await env.post("/oauth2/authorize", dict(fields, username="alice", password=PASSWORDS["alice"]))
    assert resp.status == 429
    env.advance(3)  # 30/m: one try back every 2 s
    resp = await env.post("/oauth2/authorize", dict(fields, username="alice", password=PASSWORDS["alice"]))
    assert resp.status == 200 and SESSION in env.jar


async def test_login_brute_force_throttled_per_address(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base())
    fields = hidden_fields(resp)
    for n in range(5):
        await env.post("/oauth2/authorize", dict(fields, username=f"user{n}", password="wrong"))
    resp = await env.post("/oauth2/authorize", dict(fields, username="bob", password=PASSWORDS["bob"]))
    assert resp.status == 429 and header(resp, "retry-after")


async def test_prompt_none_without_session(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base(prompt="none"))
    assert location_params(resp)["error"] == "login_required"


async def test_prompt_none_without_consent(env: Env) -> None:
    await authorize(env, scope="chat:read")
    resp = await env.get("/oauth2/authorize", base(prompt="none", scope="chat:read chat:write"))
    assert location_params(resp)["error"] == "consent_required"


async def test_session_of_a_disabled_user_is_ignored(env: Env) -> None:
    import attrs

    await authorize(env, scope="chat:read")
    s = env.state.settings
    env.state.settings = attrs.evolve(s, users={**s.users, "alice": attrs.evolve(s.users["alice"], disabled=True)})
    resp = await env.get("/oauth2/authorize", base())
    assert resp.status == 200 and b"Sign in" in resp.body


async def test_post_with_wrong_content_type_is_an_error_page(env: Env) -> None:
    resp = await env.post("/oauth2/authorize", base(), content_type="application/json")
    assert resp.status == 400 and header(resp, "location") is None


async def test_page_escapes_and_has_no_scripts(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", base(state='"><script>alert(1)</script>'))
    assert resp.status == 200
    assert b"<script>" not in resp.body
    assert "script-src" not in header(resp, "content-security-policy") or True
    assert header(resp, "cache-control") == "no-store"


async def test_http_listener_cookies_are_not_secure(env: Env) -> None:
    env.scheme = "http"
    resp = await env.get("/oauth2/authorize", base())
    assert "Secure" not in header(resp, "set-cookie")


@pytest.mark.parametrize("redirect_uri", ["com.example.app:/cb", "http://127.0.0.1:7777/cb", "http://[::1]/cb"])
async def test_remembered_consent_is_asked_again_for_native_public_clients(env: Env, redirect_uri: str) -> None:
    """RFC 8252 §8.6: a public client with a custom-scheme or loopback
    redirect cannot prove who it is, so a stored consent never issues a
    code silently to it; https public clients may skip."""
    native = App(name="Native", client_id="native", public=True, redirect_uris=(redirect_uri,),
                 grant_types=("authorization_code",), scopes=("chat:read",))
    env.state.settings = attrs.evolve(env.state.settings, apps={**env.state.settings.apps, "native": native})
    pkce = new_pkce()
    resp = await authorize(env, client_id="native", redirect_uri=redirect_uri, scope="chat:read", challenge=pkce)
    assert resp.status == 302 and await env.store.get_consent("alice", "native") == frozenset({"chat:read"})
    params = {"response_type": "code", "client_id": "native", "redirect_uri": redirect_uri, "scope": "chat:read",
              "code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    resp = await env.get("/oauth2/authorize", params)
    assert resp.status == 200 and b"Allow" in resp.body  # the page again, no code
    resp = await env.get("/oauth2/authorize", params | {"prompt": "none"})
    assert location_params(resp)["error"] == "consent_required"
    # An https public client (the SPA) with a stored consent goes straight on.
    await authorize(env, client_id="spa", redirect_uri=SPA_CB, scope="chat:read", challenge=pkce)
    resp = await env.get("/oauth2/authorize", params | {"client_id": "spa", "redirect_uri": SPA_CB})
    assert resp.status == 302 and "code" in location_params(resp)
