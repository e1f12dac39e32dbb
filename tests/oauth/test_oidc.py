"""OpenID Connect through a real server (SPEC §8): Authlib's OIDC client
validating the id_token (signature, iss, aud, nonce, at_hash), discovery,
the login session and the authorization parameters that steer it."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any, Callable

import attrs
import httpx
import jwt
import pytest
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin
from authlib.integrations.httpx_client import AsyncOAuth2Client

from realtime.config.fields import ConfigError
from realtime.config.load import load_settings
from tests.helpers.oauth import CHEAP
from tests.helpers.oidc import BOB_PW, OIDC_SECRET, RP_CB, RP_LOGOUT, Browser, exchange, oidc_settings, query


@pytest.fixture
async def oidc_server(start_server: Callable[..., Any], make_settings: Callable[..., Any]) -> Any:
    return await start_server(oidc_settings(make_settings(oauth={"signing_alg": "ES256"})))


class OidcClient(AsyncOpenIDMixin):
    """Authlib's OpenID Connect relying-party logic (``parse_id_token``:
    JWKS, signature, ``iss``, ``aud``, ``exp``, ``nonce``, ``at_hash``) over
    its httpx OAuth 2 client, without a web framework around it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client_id = "rp"
        self.server_metadata: dict[str, Any] = {}

    async def load_server_metadata(self) -> dict[str, Any]:
        if not self.server_metadata:
            async with httpx.AsyncClient() as http:
                self.server_metadata = (await http.get(self.base + "/.well-known/openid-configuration")).json()
        return self.server_metadata

    def _get_session(self) -> AsyncOAuth2Client:
        # The metadata names https://localhost (the issuer); the test server
        # answers on 127.0.0.1, so the JWKS is fetched from there.
        session = AsyncOAuth2Client(client_id="rp", client_secret=OIDC_SECRET, base_url=self.base)
        session.request = _rebase(session.request, self.base)  # type: ignore[method-assign]
        return session


def _rebase(request: Callable[..., Any], base: str) -> Callable[..., Any]:
    async def call(method: str, url: str, **kw: Any) -> Any:
        return await request(method, url.replace("https://localhost", base), **kw)
    return call


def _half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def test_authlib_validates_the_id_token_of_a_code_flow_and_its_refresh(oidc_server: Any) -> None:
    base = oidc_server.url("")
    rp = OidcClient(base)
    meta = await rp.load_server_metadata()
    async with httpx.AsyncClient(base_url=base) as http:
        browser = Browser(http, base)
        nonce = "n-" + secrets.token_urlsafe(12) + " é/+"  # echoed exactly, whatever it holds
        oauth = AsyncOAuth2Client(client_id="rp", client_secret=OIDC_SECRET, redirect_uri=RP_CB,
                                  scope="openid profile email offline_access", code_challenge_method="S256")
        verifier = secrets.token_urlsafe(48)
        uri, state = oauth.create_authorization_url(base + "/oauth2/authorize", code_verifier=verifier, nonce=nonce)
        page = await http.get(uri)
        assert 'name="password"' in page.text
        page = await browser.sign_in(page)
        assert "Allow" in page.text
        resp = await browser.submit(page, decision="allow")
        assert resp.status_code == 302
        location = resp.headers["location"]
        token = await oauth.fetch_token(base + "/oauth2/token", authorization_response=location,
                                        code_verifier=verifier, state=state)
        assert set(token["scope"].split()) == {"openid", "profile", "email", "offline_access"}
        claims = await rp.parse_id_token(token, nonce=nonce)  # raises on a bad signature, nonce or at_hash
        header = jwt.get_unverified_header(token["id_token"])
        assert header["typ"] == "JWT" and header["kid"] in {k["kid"] for k in (await http.get("/oauth2/jwks")).json()["keys"]}
        assert claims["iss"] == meta["issuer"] == "https://localhost"
        assert claims["sub"] == "alice" and claims["aud"] == "rp" and claims["azp"] == "rp"
        assert claims["nonce"] == nonce
        assert claims["at_hash"] == _half_hash(token["access_token"])
        assert claims["exp"] > claims["iat"] >= claims["auth_time"]
        assert claims["sid"]
        # A tampered nonce is what Authlib catches.
        with pytest.raises(Exception, match="nonce"):
            await rp.parse_id_token(token, nonce=nonce + "x")

        info = (await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {token['access_token']}"})).json()
        assert info == {"sub": "alice", "name": "Alice A.", "preferred_username": "alice", "display_name": "Alice A.",
                        "email": "alice@example.com", "email_verified": False,
                        "scope": "email offline_access openid profile"}

        # A refresh answers a new id_token: same sub and sid, no nonce, at_hash of the new token.
        refreshed = await oauth.refresh_token(base + "/oauth2/token", refresh_token=token["refresh_token"])
        again = await rp.parse_id_token(refreshed, nonce=None)
        assert "nonce" not in again and again["sid"] == claims["sid"] and again["sub"] == "alice"
        assert again["auth_time"] == claims["auth_time"]
        assert again["at_hash"] == _half_hash(refreshed["access_token"])

        # The same session and a remembered consent: no page at all.
        params = await browser.code(nonce="second")
        assert "code" in params
        second = await exchange(http, params["code"])
        decoded = jwt.decode(second["id_token"], options={"verify_signature": False})
        assert decoded["nonce"] == "second" and decoded["sid"] == claims["sid"]

        # RP-initiated logout as Authlib builds it (end_session_endpoint from discovery).
        logout = await rp.create_logout_url(post_logout_redirect_uri=RP_LOGOUT, id_token_hint=token["id_token"])
        resp = await http.get(logout["url"].replace("https://localhost", base))
        assert resp.status_code == 302
        assert resp.headers["location"] == RP_LOGOUT + "?state=" + logout["state"]
        resp = await browser.authorize(prompt="none")
        assert query(resp.headers["location"])["error"] == "login_required"


async def test_no_id_token_without_openid_and_an_app_must_allow_openid(oidc_server: Any) -> None:
    async with httpx.AsyncClient(base_url=oidc_server.url("")) as http:
        browser = Browser(http, "")
        params = await browser.code(scope="chat:read")
        body = await exchange(http, params["code"])
        assert "id_token" not in body and body["scope"] == "chat:read"
        # bob lacks profile, yet openid needs only the app's list.
        params = await browser.code(scope="openid profile", prompt="login", user="bob", password=BOB_PW)
        body = await exchange(http, params["code"])
        assert body["scope"] == "openid" and "id_token" in body
        resp = await http.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": "other", "redirect_uri": "https://other.example/cb",
            "scope": "openid profile", "state": "s"})
        assert query(resp.headers["location"])["error"] == "invalid_scope"


async def test_discovery_documents_agree(oidc_server: Any) -> None:
    async with httpx.AsyncClient(base_url=oidc_server.url("")) as http:
        oidc = (await http.get("/.well-known/openid-configuration")).json()
        oauth = (await http.get("/.well-known/oauth-authorization-server")).json()
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                "grant_types_supported", "token_endpoint_auth_methods_supported", "scopes_supported",
                "code_challenge_methods_supported", "response_types_supported"):
        assert oidc[key] == oauth[key], key
    assert oidc["issuer"] == "https://localhost"
    assert oidc["end_session_endpoint"] == "https://localhost/oauth2/logout"
    assert oidc["device_authorization_endpoint"] == "https://localhost/oauth2/device_authorization"
    assert oidc["response_types_supported"] == ["code"] and oidc["subject_types_supported"] == ["public"]
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert "openid" in oidc["scopes_supported"]
    assert {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash", "azp", "name",
            "preferred_username", "email", "email_verified"} <= set(oidc["claims_supported"])


async def test_prompt_max_age_and_login_hint(oidc_server: Any) -> None:
    async with httpx.AsyncClient(base_url=oidc_server.url("")) as http:
        browser = Browser(http, "")
        # prompt=none without a session: straight back with login_required, no page.
        resp = await browser.authorize(prompt="none", state="s1")
        assert resp.status_code == 302
        assert query(resp.headers["location"]).items() >= {"error": "login_required", "state": "s1"}.items()
        # login_hint prefills the user name.
        resp = await browser.authorize(login_hint="alice")
        assert 'name="username" value="alice"' in resp.text
        resp = await browser.sign_in(resp)
        assert "Allow" in resp.text  # first time for this app: consent
        # prompt=none with a session but no consent yet: consent_required.
        resp = await browser.authorize(prompt="none", state="s2")
        assert query(resp.headers["location"])["error"] == "consent_required"
        first = await browser.code()
        assert "code" in first
        resp = await browser.authorize(prompt="none")
        assert resp.status_code == 302 and "code" in query(resp.headers["location"])
        # prompt=consent asks again though consent is remembered.
        resp = await browser.authorize(prompt="consent")
        assert resp.status_code == 200 and "Allow" in resp.text
        # prompt=login shows the form though signed in.
        resp = await browser.authorize(prompt="login")
        assert resp.status_code == 200 and 'name="password"' in resp.text
        # max_age: a sign-in older than it forces the form; prompt=none then fails.
        first_auth = await _auth_time(http, browser)
        resp = await browser.authorize(max_age="3600")
        assert resp.status_code == 302
        oidc_server.state.oauth.clock = lambda: time.time() + 120
        resp = await browser.authorize(max_age="60", prompt="none")
        assert query(resp.headers["location"])["error"] == "login_required"
        resp = await browser.authorize(max_age="60")
        assert 'name="password"' in resp.text
        resp = await browser.sign_in(resp)
        assert resp.status_code == 302
        code = query(resp.headers["location"])["code"]
        claims = jwt.decode((await exchange(http, code))["id_token"], options={"verify_signature": False})
        assert claims["auth_time"] >= first_auth + 119
        # Bad values are invalid_request at the client.
        for bad in ({"max_age": "-1"}, {"max_age": "abc"}, {"nonce": "n" * 600}):
            resp = await browser.authorize(**bad)
            assert query(resp.headers["location"])["error"] == "invalid_request", bad


async def _auth_time(http: httpx.AsyncClient, browser: Browser) -> int:
    params = await browser.code()
    body = await exchange(http, params["code"])
    return int(jwt.decode(body["id_token"], options={"verify_signature": False})["auth_time"])


async def test_sign_in_rotates_the_session_cookie(oidc_server: Any) -> None:
    async with httpx.AsyncClient(base_url=oidc_server.url("")) as http:
        browser = Browser(http, "")
        planted = secrets.token_urlsafe(32)  # an attacker's value, set before the victim signs in
        http.cookies.set("rt_session", planted, domain="127.0.0.1", path="/")
        resp = await browser.authorize()
        resp = await browser.sign_in(resp)
        first = resp.headers.get("set-cookie", "")
        fresh = [c for c in resp.headers.get_list("set-cookie") if c.startswith("rt_session=") and "Path=/;" in c]
        assert len(fresh) == 1 and "HttpOnly" in fresh[0] and "Path=/;" in fresh[0], first
        cookie = fresh[0].split(";")[0].split("=", 1)[1]
        assert cookie != planted and len(cookie) >= 43
        # The planted value never became a session.
        async with httpx.AsyncClient(base_url=oidc_server.url("")) as attacker:
            attacker.cookies.set("rt_session", planted, domain="127.0.0.1", path="/")
            resp = await Browser(attacker, "").authorize(prompt="none")
            assert query(resp.headers["location"])["error"] == "login_required"
        # Signing in again rotates it, and the old value is dead.
        http.cookies.clear()
        http.cookies.set("rt_session", cookie, domain="127.0.0.1", path="/")
        resp = await browser.authorize(prompt="login")
        resp = await browser.sign_in(resp)
        rotated = [c for c in resp.headers.get_list("set-cookie") if c.startswith("rt_session=") and "Path=/;" in c]
        new_cookie = rotated[0].split(";")[0].split("=", 1)[1]
        assert new_cookie != cookie
        async with httpx.AsyncClient(base_url=oidc_server.url("")) as old:
            old.cookies.set("rt_session", cookie, domain="127.0.0.1", path="/")
            resp = await Browser(old, "").authorize(prompt="none")
            assert query(resp.headers["location"])["error"] == "login_required"
        # The store holds only the hash of the cookie's id.
        rows = oidc_server.state.store.sync.db.read("SELECT id_hash FROM login_sessions")
        assert (hashlib.sha256(new_cookie.encode()).hexdigest(),) in rows
        assert all(new_cookie not in r[0] for r in rows)


async def test_session_survives_a_restart(start_server: Callable[..., Any], make_settings: Callable[..., Any]) -> None:
    settings = oidc_settings(make_settings())
    first = await start_server(settings)
    async with httpx.AsyncClient(base_url=first.url("")) as http:
        browser = Browser(http, "")
        assert "code" in await browser.code()
        cookie = browser.session_cookie()
    first.stop()
    await first.stopped.wait()
    second = await start_server(settings)
    async with httpx.AsyncClient(base_url=second.url("")) as http:
        http.cookies.set("rt_session", cookie or "", domain="127.0.0.1", path="/")
        resp = await Browser(http, "").authorize(prompt="none")
        assert resp.status_code == 302 and "code" in query(resp.headers["location"])


async def test_a_password_change_ends_the_session(oidc_server: Any) -> None:
    async with httpx.AsyncClient(base_url=oidc_server.url("")) as http:
        browser = Browser(http, "")
        assert "code" in await browser.code()
        state = oidc_server.state
        alice = state.settings.users["alice"]
        state.settings = attrs.evolve(state.settings, users={
            **state.settings.users, "alice": attrs.evolve(alice, password_hash=CHEAP.hash("another-password-1"))})
        resp = await browser.authorize(prompt="none")
        assert query(resp.headers["location"])["error"] == "login_required"


def test_session_ttl_key(tmp_path: Any) -> None:
    conf = tmp_path / "realtime.toml"
    conf.write_text('[server]\npublic_url = "https://x.example"\n[oauth]\nsession_ttl = "2h"\n')
    assert load_settings(conf).oauth.session_ttl == 7200.0
    conf.write_text('[server]\npublic_url = "https://x.example"\n[oauth]\nsession_ttl = "soon"\n')
    with pytest.raises(ConfigError, match=r"realtime.toml:4: .*session_ttl"):
        load_settings(conf)


async def test_a_stale_cookie_on_the_old_path_does_not_hide_the_new_session(oidc_server: Any) -> None:
    """Older servers set the plain-HTTP session cookie on Path=/oauth2; a
    browser sends that one first, so a sign-in deletes it."""
    async with httpx.AsyncClient(base_url=oidc_server.url("")) as http:
        http.cookies.set("rt_session", "stale.value-from-an-older-server", domain="127.0.0.1", path="/oauth2")
        browser = Browser(http, "")
        resp = await browser.sign_in(await browser.authorize())
        removals = [c for c in resp.headers.get_list("set-cookie") if "Path=/oauth2" in c]
        assert removals and all("Max-Age=0" in c for c in removals)
        resp = await browser.submit(resp, decision="allow")
        resp = await browser.authorize(prompt="none")
        assert "code" in query(resp.headers["location"])
