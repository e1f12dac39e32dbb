"""OpenID Connect test data and a browser driven by httpx through a real
server's login, consent and logout pages (tests/oauth/test_oidc*.py)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx

from realtime.config.settings import App, Settings, User
from realtime.oauth import pkce
from tests.helpers.oauth import CHEAP, hidden

OIDC_SECRET = "oidc-secret-" + "q" * 20
RP_CB = "https://rp.example/cb"
RP_LOGOUT = "https://rp.example/signed-out"
SPA_CB = "http://127.0.0.1:9/cb"  # a public loopback client (L5: consent every time)
ALICE_PW = "alice-oidc-password"
BOB_PW = "bob-oidc-password"


def oidc_settings(base: Settings) -> Settings:
    """``base`` with an OIDC relying party ``rp`` and users alice and bob."""
    apps = {
        "rp": App(name="Relying Party", client_id="rp", client_secret_hash=CHEAP.hash(OIDC_SECRET),
                  redirect_uris=(RP_CB,), grant_types=("authorization_code", "refresh_token"),
                  scopes=("openid", "profile", "email", "chat:read", "offline_access"),
                  post_logout_redirect_uris=(RP_LOGOUT,)),
        "other": App(name="Other", client_id="other", client_secret_hash=CHEAP.hash(OIDC_SECRET),
                     redirect_uris=("https://other.example/cb",), scopes=("openid", "chat:read"),
                     post_logout_redirect_uris=("https://other.example/bye",)),
    }
    users = {
        "alice": User(name="alice", password_hash=CHEAP.hash(ALICE_PW), scopes=("chat:read", "profile", "email"),
                      display_name="Alice A.", email="alice@example.com"),
        "bob": User(name="bob", password_hash=CHEAP.hash(BOB_PW), scopes=("chat:read",)),
    }
    return attrs.evolve(base, apps=apps, users=users)


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@attrs.define
class Browser:
    """One browser (its cookie jar) on the server at ``base``."""

    http: httpx.AsyncClient
    base: str

    def session_cookie(self) -> str | None:
        return self.http.cookies.get("rt_session")

    async def authorize(self, **params: str) -> httpx.Response:
        query_params = {"response_type": "code", "client_id": "rp", "redirect_uri": RP_CB,
                        "scope": "openid profile email chat:read", "state": secrets.token_urlsafe(8), **params}
        return await self.http.get("/oauth2/authorize", params=query_params)

    async def submit(self, page: httpx.Response, **fields: str) -> httpx.Response:
        return await self.http.post("/oauth2/authorize", data=hidden(page.text) | fields)

    async def sign_in(self, page: httpx.Response, user: str = "alice", password: str = ALICE_PW) -> httpx.Response:
        assert 'name="password"' in page.text, page.text
        return await self.submit(page, username=user, password=password)

    async def code(self, *, user: str = "alice", password: str = ALICE_PW, **params: str) -> dict[str, str]:
        """Authorize, signing in and allowing if asked; the redirect's parameters."""
        resp = await self.authorize(**params)
        if resp.status_code == 200 and 'name="password"' in resp.text:
            resp = await self.sign_in(resp, user, password)
        if resp.status_code == 200 and "Allow" in resp.text:
            resp = await self.submit(resp, decision="allow")
        assert resp.status_code == 302, resp.text
        return query(resp.headers["location"])


async def exchange(http: httpx.AsyncClient, code: str, verifier: str | None = None) -> dict[str, Any]:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": RP_CB}
    if verifier:
        data["code_verifier"] = verifier
    resp = await http.post("/oauth2/token", data=data, auth=("rp", OIDC_SECRET))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def new_verifier() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce.s256(verifier)
