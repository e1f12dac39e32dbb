"""An OAuth 1.0a consumer registered on a real server (the ``o1`` fixture of
tests/oauth1/conftest.py), and a browser that approves request tokens
through the login and consent pages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from oauthlib.oauth1 import Client

from realtime.oauth1 import crypto
from realtime.config.settings import App, User
from tests.helpers.oauth import PASSWORDS, hidden
from tests.helpers.settings import APPS

CONSUMER_KEY = "ck-legacy"
CONSUMER_SECRET = "legacy consumer secret &+%"  # characters that need RFC 5849 §3.6 encoding
RSA_CONSUMER_KEY = "ck-rsa"
CALLBACK = "http://127.0.0.1:9/oauth1-cb"


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def oauth1_apps(state_dir: Path, rsa_private_pem: str, **legacy: Any) -> dict[str, App]:
    key = crypto.load_or_create_key(state_dir)
    apps = dict(APPS)
    apps["legacy"] = App(
        name="Legacy Consumer", client_id="legacy", public=True, grant_types=(),
        redirect_uris=(CALLBACK,), scopes=("chat:read", "chat:write"), oauth1=True,
        consumer_key=CONSUMER_KEY,
        consumer_secret_enc=crypto.encrypt(key, CONSUMER_SECRET, crypto.consumer_context(CONSUMER_KEY)),
        **legacy,
    )
    apps["rsa"] = App(
        name="RSA Consumer", client_id="rsa", public=True, grant_types=(), redirect_uris=(CALLBACK,),
        scopes=("chat:read",), oauth1=True, consumer_key=RSA_CONSUMER_KEY,
        rsa_public_key=public_pem(rsa_private_pem),
    )
    return apps


def oauth1_users(hashes: dict[str, str]) -> dict[str, User]:
    return {
        "alice": User(name="alice", password_hash=hashes["alice"], scopes=("chat:read", "chat:write")),
        "bob": User(name="bob", password_hash=hashes["bob"], scopes=("chat:read",)),
    }


async def approve(base: str, authorize_url: str, user: str = "alice", decision: str = "allow",
                  **client: Any) -> httpx.Response:
    """Sign in and consent like a browser; the last response (302 or the oob page)."""
    async with httpx.AsyncClient(base_url=base, **client) as browser:
        resp = await browser.get(authorize_url)
        assert resp.status_code == 200 and 'value="login"' in resp.text, resp.text
        resp = await browser.post("/oauth1/authorize",
                                  data=hidden(resp.text) | {"username": user, "password": PASSWORDS[user]})
        if resp.status_code == 200 and 'value="consent"' in resp.text:
            resp = await browser.post("/oauth1/authorize", data=hidden(resp.text) | {"decision": decision})
        return resp


def sign(url: str, method: str = "GET", *, token: str | None = None, token_secret: str | None = None,
         **kw: Any) -> dict[str, str]:
    """Headers of a request signed by oauthlib's client (another implementation than the server's checks)."""
    client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_key=token,
                    resource_owner_secret=token_secret, **kw)
    _uri, headers, _body = client.sign(url, http_method=method)
    return headers


def now() -> int:
    return int(time.time())
