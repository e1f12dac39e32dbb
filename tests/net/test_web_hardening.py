"""Browser-facing hardening through a real server (issue 13 §5): the login,
consent, error and demo pages send a strict CSP, ``X-Frame-Options: DENY``
and ``Referrer-Policy: no-referrer``; cookies are ``HttpOnly``,
``SameSite=Lax`` and, on HTTPS, ``Secure``."""

from __future__ import annotations

import ssl
import time

import attrs
import httpx

from realtime.config.settings import DemoSettings
from tests.helpers.oauth import CHEAP, PASSWORDS, WEB_CB, build_settings, hidden, new_pkce


def assert_page_headers(r: httpx.Response) -> None:
    h = r.headers
    assert h["x-frame-options"] == "DENY", r.url
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-content-type-options"] == "nosniff"
    csp = {d.strip().split(" ")[0]: d.strip() for d in h["content-security-policy"].split(";")}
    assert csp["default-src"] == "default-src 'none'", csp
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["base-uri"] == "base-uri 'none'"
    assert "form-action" in csp
    assert "'unsafe-eval'" not in h["content-security-policy"]
    assert "'unsafe-inline'" not in csp.get("script-src", "")
    assert "no-store" in h["cache-control"]


def assert_cookies(r: httpx.Response, secure: bool) -> None:
    cookies = r.headers.get_list("set-cookie")
    assert cookies, r.url
    for cookie in cookies:
        attrs_ = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        assert "httponly" in attrs_, cookie
        assert attrs_.get("samesite", "").lower() in ("samesite=lax", "samesite=strict"), cookie
        assert ("secure" in attrs_) == secure, cookie


async def test_login_consent_error_and_demo_pages(start_server, make_settings, client_ssl: ssl.SSLContext, tmp_path) -> None:
    oauth = build_settings(tmp_path, {k: CHEAP.hash(v) for k, v in
                                      {"web": "w" * 30, "old": "o" * 30, "svc": "s" * 30, "pw": "p" * 30,
                                       "weird": "x" * 30, **PASSWORDS}.items()}, time.time())
    settings = attrs.evolve(make_settings(), apps=oauth.apps, users=oauth.users, demo=DemoSettings(enabled=True))
    server = await start_server(settings)
    for scheme, port in (("https", server.https.port), ("http", server.http.port)):
        async with httpx.AsyncClient(base_url=f"{scheme}://localhost:{port}", verify=client_ssl) as http:
            p = new_pkce()
            r = await http.get("/oauth2/authorize", params={
                "response_type": "code", "client_id": "web", "redirect_uri": WEB_CB, "scope": "chat:read",
                "state": "s", "code_challenge": p.challenge, "code_challenge_method": "S256"})
            assert r.status_code == 200 and "password" in r.text
            assert_page_headers(r)
            assert_cookies(r, secure=scheme == "https")
            r = await http.post("/oauth2/authorize", data={**hidden(r.text), "action": "login", "username": "alice",
                                                           "password": PASSWORDS["alice"]})
            assert r.status_code == 200 and "Allow" in r.text, r.text  # the consent page
            assert_page_headers(r)
            assert_cookies(r, secure=scheme == "https")
            r = await http.get("/oauth2/authorize", params={"response_type": "code", "client_id": "nobody"})
            assert r.status_code == 400 and "text/html" in r.headers["content-type"]
            assert_page_headers(r)
            r = await http.get("/demo/")
            assert r.status_code == 200
            assert_page_headers(r)
            # API answers are not framable either.
            r = await http.get("/healthz")
            assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
