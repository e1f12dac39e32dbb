"""OAuth 2 test data (apps, users, secrets, cheap password hashes) and
:class:`Env`: an App with a real KeyRing, a real AsyncStore and the
real Hub, driven through ``router.dispatch`` (no sockets); the ``env``
fixture of tests/oauth/conftest.py builds one."""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import attrs
from argon2 import PasswordHasher

from realtime.http.request import Request
from realtime.http.responses import Response
from realtime.http.router import Router
from realtime.oauth import pkce
from realtime.oauth.services import OAuthServices
from realtime.config.settings import App, OAuthSettings, RetiredSecret, ServerSettings, Settings, User
from realtime.api.app import App as ServerApp
from realtime.store.aio import AsyncStore

# Cheap argon2id parameters: the hashes carry them, so verification is fast too.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

ISSUER = "https://auth.example"
WEB_SECRET = "web-secret-" + "x" * 20
OLD_WEB_SECRET = "old-web-secret-" + "y" * 20
SVC_SECRET = "svc-secret-" + "z" * 20
PW_SECRET = "pw-secret-" + "w" * 20
WEIRD_ID = "we:ird+id%"
WEIRD_SECRET = "se:cr et+%&="
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "dave": "dave-password"}

#: The login-flow cookies as an HTTPS browser (Env's default) holds them.
SESSION = "__Host-rt_session"
CSRF = "__Host-rt_csrf"

WEB_CB = "https://client.example/cb"
SPA_CB = "https://spa.example/cb?keep=1"


def build_settings(tmp_path: Path, hashes: dict[str, str], now: float) -> Settings:
    apps = {
        "web": App(name="Web <App>", client_id="web", client_secret_hash=hashes["web"],
                   retired_secrets=(RetiredSecret(hashes["old"], now + 3600),),
                   redirect_uris=(WEB_CB, "http://127.0.0.1:9000/cb"),
                   grant_types=("authorization_code", "refresh_token"),
                   scopes=("chat:read", "chat:write", "profile")),
        "spa": App(name="SPA", client_id="spa", public=True, redirect_uris=(SPA_CB,),
                   grant_types=("authorization_code", "refresh_token"), scopes=("chat:read", "chat:write")),
        "svc": App(name="Service", client_id="svc", client_secret_hash=hashes["svc"],
                   grant_types=("client_credentials",), scopes=("chat:write", "notify"),
                   access_token_ttl=120.0),
        "pw": App(name="Legacy", client_id="pw", client_secret_hash=hashes["pw"],
                  grant_types=("password", "refresh_token"), scopes=("chat:read", "chat:write")),
        WEIRD_ID: App(name="Weird", client_id=WEIRD_ID, client_secret_hash=hashes["weird"],
                      grant_types=("client_credentials",), scopes=("notify",)),
    }
    users = {
        "alice": User(name="alice", password_hash=hashes["alice"], scopes=("chat:read", "chat:write", "profile"),
                      display_name="Alice A.", email="alice@example.com"),
        "bob": User(name="bob", password_hash=hashes["bob"], scopes=("chat:read",)),
        "dave": User(name="dave", password_hash=hashes["dave"], scopes=("chat:read",), disabled=True),
    }
    return Settings(
        server=ServerSettings(state_dir=tmp_path / "state", public_url=ISSUER + "/"),
        oauth=OAuthSettings(signing_alg="ES256", login_rate="5/m"),
        apps=apps,
        users=users,
    )


@attrs.define
class Env:
    state: ServerApp
    router: Router
    now: float
    jar: dict[str, str] = attrs.field(factory=dict)
    address: str = "198.51.100.7"
    scheme: str = "https"

    @property
    def services(self) -> OAuthServices:
        return self.state.oauth

    @property
    def store(self) -> AsyncStore:
        return self.state.store

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def request(self, method: str, target: str, *, body: bytes = b"",
                      headers: Iterable[tuple[str, str]] = (), cookies: bool = True) -> Response:
        hdrs = [(k.lower(), v) for k, v in headers]
        if cookies and self.jar:
            hdrs.append(("cookie", "; ".join(f"{k}={v}" for k, v in self.jar.items())))
        req = Request(method=method, target=target, headers=tuple(hdrs), body=body,
                      client_host=self.address, scheme=self.scheme)
        resp = await self.router.dispatch(req, self.state)
        for name, value in resp.headers:
            if name == "set-cookie":
                k, _, rest = value.partition("=")
                self.jar[k] = rest.split(";", 1)[0]
        return resp

    async def get(self, path: str, params: dict[str, str] | None = None, **kw: Any) -> Response:
        target = path + ("?" + urlencode(params) if params else "")
        return await self.request("GET", target, **kw)

    async def post(self, path: str, data: dict[str, str] | list[tuple[str, str]] | None = None, *,
                   auth: tuple[str, str] | None = None, headers: Iterable[tuple[str, str]] = (),
                   content_type: str = "application/x-www-form-urlencoded", **kw: Any) -> Response:
        hdrs = [("content-type", content_type), *headers]
        if auth is not None:
            hdrs.append(("authorization", basic(*auth)))
        body = urlencode(data or {}).encode()
        return await self.request("POST", path, body=body, headers=hdrs, **kw)

    async def token(self, data: dict[str, str], auth: tuple[str, str] | None = None, **kw: Any) -> Response:
        return await self.post("/oauth2/token", data, auth=auth, **kw)


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode each part, then Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def header(resp: Response, name: str) -> str | None:
    for k, v in resp.headers:
        if k == name:
            return v
    return None


def body_json(resp: Response) -> dict[str, Any]:
    return json.loads(resp.body)


def hidden(text: str) -> dict[str, str]:
    """The hidden fields of an HTML form page (login, consent)."""
    return {html.unescape(n): html.unescape(v)
            for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', text)}


def hidden_fields(resp: Response) -> dict[str, str]:
    return hidden(resp.body.decode())


def location_params(resp: Response) -> dict[str, str]:
    loc = header(resp, "location")
    assert loc is not None, resp
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}


@attrs.frozen
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    return Pkce(verifier, pkce.s256(verifier))


async def authorize(env: Env, *, client_id: str = "web", redirect_uri: str | None = WEB_CB,
                    scope: str | None = "chat:read profile", user: str = "alice",
                    challenge: Pkce | None = None, state: str = "st-123",
                    extra: dict[str, str] | None = None) -> Response:
    """GET /oauth2/authorize, log in if asked, consent if asked; the final response."""
    params = {"response_type": "code", "client_id": client_id, "state": state}
    if redirect_uri is not None:
        params["redirect_uri"] = redirect_uri
    if scope is not None:
        params["scope"] = scope
    if challenge is not None:
        params["code_challenge"] = challenge.challenge
        params["code_challenge_method"] = "S256"
    params.update(extra or {})
    resp = await env.get("/oauth2/authorize", params)
    for _ in range(3):
        if resp.status != 200:
            return resp
        fields = hidden_fields(resp)
        if 'value="login"' in resp.body.decode():
            fields.update(action="login", username=user, password=PASSWORDS[user])
        else:
            fields.update(action="consent", decision="allow")
        resp = await env.post("/oauth2/authorize", fields)
    return resp


async def get_code(env: Env, **kw: Any) -> str:
    resp = await authorize(env, **kw)
    assert resp.status == 302, resp.body
    params = location_params(resp)
    assert "code" in params, params
    return params["code"]
