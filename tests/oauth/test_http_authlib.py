"""Through real HTTP: the full authorization-code + PKCE login driven by
Authlib's client (an independent implementation), plus httpx checks."""

from __future__ import annotations

import secrets
from typing import Any, Callable

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.helpers.oauth import PASSWORDS, SVC_SECRET, WEB_CB, WEB_SECRET, build_settings, hidden


@pytest.fixture
async def oauth_server(start_server: Callable[..., Any], make_settings: Callable[..., Any],
                       hashes: dict[str, str], tmp_path) -> Any:
    import time

    mine = build_settings(tmp_path, hashes, time.time())
    return await start_server(make_settings(apps=mine.apps, users=mine.users,
                                            oauth={"signing_alg": "ES256"}))


async def test_authlib_authorization_code_pkce(oauth_server: Any) -> None:
    base = oauth_server.url("")
    async with httpx.AsyncClient(base_url=base) as browser:
        meta = (await browser.get("/.well-known/oauth-authorization-server")).json()
        assert meta["code_challenge_methods_supported"] == ["S256"]
        client = AsyncOAuth2Client(
            client_id="web", client_secret=WEB_SECRET, redirect_uri=WEB_CB,
            scope="chat:read chat:write", code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
        )
        async with client:
            verifier = secrets.token_urlsafe(64)
            uri, state = client.create_authorization_url(base + "/oauth2/authorize", code_verifier=verifier)
            resp = await browser.get(uri)
            assert resp.status_code == 200 and "rt_csrf" in browser.cookies
            form = hidden(resp.text) | {"username": "alice", "password": PASSWORDS["alice"]}
            resp = await browser.post("/oauth2/authorize", data=form)
            assert resp.status_code == 200 and "Allow" in resp.text
            form = hidden(resp.text) | {"decision": "allow"}
            resp = await browser.post("/oauth2/authorize", data=form)
            assert resp.status_code == 302
            location = resp.headers["location"]
            assert location.startswith(WEB_CB)

            token = await client.fetch_token(base + "/oauth2/token", authorization_response=location,
                                             code_verifier=verifier, state=state)
            assert token["token_type"] == "Bearer" and token["refresh_token"]
            assert set(token["scope"].split()) == {"chat:read", "chat:write"}

            info = (await client.get(base + "/oauth2/userinfo")).json()
            assert info["sub"] == "alice"

            old_refresh = token["refresh_token"]
            new = await client.refresh_token(base + "/oauth2/token", refresh_token=old_refresh)
            assert new["refresh_token"] != old_refresh

            resp = await client.introspect_token(base + "/oauth2/introspect", token=new["access_token"])
            assert resp.json()["active"] is True

            resp = await client.revoke_token(base + "/oauth2/revoke", token=new["refresh_token"],
                                             token_type_hint="refresh_token")
            assert resp.status_code == 200
            resp = await client.introspect_token(base + "/oauth2/introspect", token=new["access_token"])
            assert resp.json() == {"active": False}


async def test_http_client_credentials_and_errors(oauth_server: Any) -> None:
    base = oauth_server.url("")
    async with httpx.AsyncClient(base_url=base) as http:
        resp = await http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                               auth=("svc", SVC_SECRET))
        assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
        assert resp.headers["pragma"] == "no-cache"
        resp = await http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=("svc", "nope"))
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Basic")
        resp = await http.post("/oauth2/token", json={"grant_type": "client_credentials"}, auth=("svc", SVC_SECRET))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
        resp = await http.get("/oauth2/authorize", params={"client_id": "web", "redirect_uri": WEB_CB + "/",
                                                           "response_type": "code"})
        assert resp.status_code == 400 and "location" not in resp.headers
        jwks = (await http.get("/oauth2/jwks")).json()
        assert jwks["keys"]
