"""The login flow's browser cookies: login CSRF by cookie tossing (issue
18 L4) and sessions that end with a password change (L3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import httpx

from realtime.config.load import load_settings
from tests.helpers.oauth import CHEAP, CSRF, PASSWORDS, SESSION, WEB_CB, Env, hidden, hidden_fields
from tests.helpers.server import write_conf

FORM = {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB, "scope": "chat:read"}


async def fetch_form(env: Env, cookie: str | None) -> tuple[dict[str, str], list[str]]:
    """The login form's fields as a browser holding only ``cookie`` gets
    them, and the cookies the server set."""
    headers = [("cookie", cookie)] if cookie else []
    resp = await env.request("GET", "/oauth2/authorize?" + "&".join(f"{k}={v}" for k, v in FORM.items()),
                             headers=headers, cookies=False)
    assert resp.status == 200
    return hidden_fields(resp), [v for k, v in resp.headers if k == "set-cookie"]


async def post_login(env: Env, fields: dict[str, str], cookie: str) -> int:
    body = str(httpx.QueryParams(fields | {"username": "bob", "password": PASSWORDS["bob"]}))
    resp = await env.request("POST", "/oauth2/authorize", body=body.encode(), cookies=False,
                             headers=[("content-type", "application/x-www-form-urlencoded"), ("cookie", cookie)])
    return resp.status


async def test_attacker_chosen_binding_cookie_is_replaced_and_refused(env: Env) -> None:
    """Plain HTTP, where only the signed binding protects the form."""
    env.scheme = "http"
    tossed = "attacker-chosen-binding-value-123"
    fields, set_cookies = await fetch_form(env, f"rt_csrf={tossed}")
    # Not the server's: ignored, and a fresh binding is issued instead.
    assert set_cookies and set_cookies[0].startswith("rt_csrf=") and tossed not in set_cookies[0]
    # The attacker's own credentials, auto-submitted from the victim's
    # browser that holds the tossed cookie: refused.
    assert await post_login(env, fields, f"rt_csrf={tossed}") == 403
    # The browser that holds the binding the server issued succeeds.
    issued = set_cookies[0].split(";", 1)[0]
    assert await post_login(env, fields, issued) == 200


async def test_https_reads_only_host_prefixed_cookies(env: Env) -> None:
    """Over HTTPS a cookie tossed from the HTTP listener or a sibling host
    (no ``__Host-`` prefix possible there) is never read, even a binding
    the server once issued over HTTP, with its matching CSRF token."""
    env.scheme = "http"
    fields, set_cookies = await fetch_form(env, None)
    http_binding = set_cookies[0].split(";", 1)[0].split("=", 1)[1]
    env.scheme = "https"
    assert await post_login(env, fields, f"rt_csrf={http_binding}") == 403
    assert await post_login(env, fields, f"{CSRF}={http_binding}") == 200  # set by HTTPS only
    _, set_cookies = await fetch_form(env, None)
    cookie = set_cookies[0]
    assert cookie.startswith(CSRF + "=") and "; Secure" in cookie and "; Path=/;" in cookie
    assert "domain" not in cookie.lower()


async def test_session_cookie_is_host_prefixed_on_https(env: Env) -> None:
    resp = await env.get("/oauth2/authorize", FORM)
    fields = hidden_fields(resp)
    resp = await env.post("/oauth2/authorize", fields | {"username": "alice", "password": PASSWORDS["alice"]})
    assert resp.status == 200
    session = [v for k, v in resp.headers if k == "set-cookie" and v.startswith(SESSION + "=")]
    assert session and "; Secure" in session[0] and "; Path=/;" in session[0]


# -- L3: a password change ends the browser session ----------------------------

APPS = f"""
[[app]]
name = "Web"
client_id = "web"
client_secret_hash = "{CHEAP.hash("web-secret-" + "x" * 20)}"
redirect_uris = ["{WEB_CB}"]
grant_types = ["authorization_code"]
scopes = ["chat:read"]
"""


def write_users(conf: Path, password: str, **extra: Any) -> None:
    user = {"name": "alice", "password_hash": CHEAP.hash(password), "scopes": ["chat:read"], **extra}
    (conf.parent / "users.json").write_text(json.dumps({"users": [user]}))


async def test_password_change_ends_the_browser_session(tmp_path: Path, start_server: Callable[..., Any]) -> None:
    config = write_conf(tmp_path)
    (config.parent / "apps.toml").write_text(APPS)
    write_users(config, "first-password")
    running = await start_server(load_settings(config))
    async with httpx.AsyncClient(base_url=running.url("")) as browser:
        resp = await browser.get("/oauth2/authorize", params=FORM)
        resp = await browser.post("/oauth2/authorize", data=hidden(resp.text) | {
            "username": "alice", "password": "first-password"})
        resp = await browser.post("/oauth2/authorize", data=hidden(resp.text) | {"decision": "allow"})
        assert resp.status_code == 302 and "code=" in resp.headers["location"]
        # The session and the remembered consent: straight to a code.
        resp = await browser.get("/oauth2/authorize", params=FORM)
        assert resp.status_code == 302 and "code=" in resp.headers["location"]

        write_users(config, "second-password")  # as `realtime user passwd` does
        assert await running.server.reload("test") is True
        resp = await browser.get("/oauth2/authorize", params=FORM)
        assert resp.status_code == 200 and 'value="login"' in resp.text  # the login form, no code

        # A new sign-in with the new password works again...
        resp = await browser.post("/oauth2/authorize", data=hidden(resp.text) | {
            "username": "alice", "password": "second-password"})
        assert resp.status_code == 302 and "code=" in resp.headers["location"]
        # ...until the user is disabled.
        write_users(config, "second-password", disabled=True)
        assert await running.server.reload("test") is True
        resp = await browser.get("/oauth2/authorize", params=FORM)
        assert resp.status_code == 200 and 'value="login"' in resp.text


async def test_full_login_over_real_tls_with_host_cookies(start_server: Callable[..., Any],
                                                          make_settings: Callable[..., Any],
                                                          hashes: dict[str, str], tmp_path: Path,
                                                          client_ssl: Any) -> None:
    """A browser over HTTPS keeps and sends back the ``__Host-`` cookies:
    sign-in, consent, code, and a second authorization from the session."""
    import time

    from tests.helpers.oauth import build_settings

    mine = build_settings(tmp_path, hashes, time.time())
    running = await start_server(make_settings(apps=mine.apps, users=mine.users, oauth={"signing_alg": "ES256"}))
    async with httpx.AsyncClient(base_url=running.url("", "https"), verify=client_ssl) as browser:
        resp = await browser.get("/oauth2/authorize", params=FORM)
        assert resp.status_code == 200 and CSRF in browser.cookies
        resp = await browser.post("/oauth2/authorize", data=hidden(resp.text) | {
            "username": "alice", "password": PASSWORDS["alice"]})
        assert resp.status_code == 200 and SESSION in browser.cookies
        resp = await browser.post("/oauth2/authorize", data=hidden(resp.text) | {"decision": "allow"})
        assert resp.status_code == 302 and "code=" in resp.headers["location"]
        resp = await browser.get("/oauth2/authorize", params=FORM)
        assert resp.status_code == 302 and "code=" in resp.headers["location"]
