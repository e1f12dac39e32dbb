"""Two nodes with separate state dirs on one PostgreSQL database, no
sticky routing: what used to stay on the node that made it is shared.

- a provider login started on node A finishes when the provider's
  callback reaches node B, and the user it created is known on A too;
- OAuth 1.0a secrets sealed on A (token secrets, consumer secrets made by
  ``realtime app add --oauth1``) open on B.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import attrs
import httpx
import pytest
import trio
from authlib.integrations.httpx_client import AsyncOAuth1Client

from realtime.config.load import load_settings
from realtime.config.settings import App, Settings, StoreSettings
from realtime.oauth1 import crypto
from realtime.oauth.providers.users import POLL_INTERVAL
from realtime.store.postgres import PgStore
from tests.helpers.oauth import CHEAP, PASSWORDS, hidden, new_pkce
from tests.helpers.oauth1 import CALLBACK, CONSUMER_KEY, CONSUMER_SECRET, approve, oauth1_users
from tests.helpers.provider import (PROVIDER_SECRET, SITE_APPS, SITE_CONFIG, SITE_PUBLIC, provider_definition,
                                    provider_settings, sign_in_at_provider)
from tests.helpers.server import Running

PUBLIC = SITE_PUBLIC
CLIENT_CB = "http://127.0.0.1/cb"


def store_key_file(root: Path) -> Path:
    key_file = root / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    return key_file


def on_node(settings: Settings, state_dir: Path) -> Settings:
    return attrs.evolve(settings, server=attrs.evolve(settings.server, state_dir=state_dir))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def at(node: Running, public_url: str) -> str:
    """A URL under our public address, sent to ``node`` (as a load balancer
    with no sticky routing might)."""
    parts = urlsplit(public_url)
    return node.url(parts.path) + ("?" + parts.query if parts.query else "")


@pytest.fixture
async def nodes(start_server: Callable[..., Any], make_settings: Callable[..., Settings], pg_url: str,
                tmp_path: Path) -> tuple[Running, Running, Running, Path]:
    """P (the provider), then nodes A and B of one config on one database."""
    p = await start_server(provider_settings(make_settings, tmp_path / "p-state",
                                             (f"{PUBLIC}/oauth2/callback/corp",)))
    root = tmp_path / "s"
    (root / "providers").mkdir(parents=True)
    store_key_file(root)
    (root / "realtime.toml").write_text(
        SITE_CONFIG + f'\n[store]\nurl = "{pg_url}"\nkey_file = "store.key"\n')
    (root / "apps.toml").write_text(SITE_APPS)
    (root / "users.json").write_text(json.dumps({"users": [{"name": "local", "scopes": ["chat:read"]}]}))
    (root / "corp.secret").write_text(PROVIDER_SECRET + "\n")
    definition = provider_definition("corp", p.url("").rstrip("/"), client_secret_file="../corp.secret")
    (root / "providers" / "corp.json").write_text(json.dumps(definition))
    settings = load_settings(root / "realtime.toml")
    a = await start_server(on_node(settings, root / "a"))
    b = await start_server(on_node(settings, root / "b"))
    return p, a, b, root


async def test_a_provider_login_started_on_a_finishes_on_b_and_a_knows_the_user(
        nodes: tuple[Running, Running, Running, Path], pg_url: str) -> None:
    p, a, b, root = nodes
    users_file = (root / "users.json").read_text()
    pkce = new_pkce()
    params = {"response_type": "code", "client_id": "chat", "redirect_uri": CLIENT_CB,
              "scope": "chat:read chat:write", "state": "client-state", "code_challenge": pkce.challenge,
              "code_challenge_method": "S256"}
    # One cookie jar for our site (both nodes are one public address), one for P.
    async with httpx.AsyncClient() as ours, httpx.AsyncClient() as at_p, httpx.AsyncClient() as client:
        page = await ours.get(a.url("/oauth2/authorize?" + urlencode(params)))
        assert page.status_code == 200 and "Log in with Corp account" in page.text
        to_p = await ours.post(a.url("/oauth2/authorize"), data=hidden(page.text) | {"action": "provider",
                                                                                     "provider": "corp"})
        assert to_p.status_code == 302, to_p.text
        back = await sign_in_at_provider(at_p, to_p.headers["location"])
        assert back.startswith(f"{PUBLIC}/oauth2/callback/corp?")

        consent = await ours.get(at(b, back))  # the callback lands on B
        assert consent.status_code == 200, consent.text
        assert "Signed in as <strong>Alice P.</strong>" in consent.text
        # The pending login was taken: the same callback on A (or B) is refused.
        replay = await ours.get(at(a, back))
        assert replay.status_code == 400 and "Sign-in expired" in replay.text

        done = await ours.post(b.url("/oauth2/authorize"),
                               data=hidden(consent.text) | {"action": "consent", "decision": "allow"})
        assert done.status_code == 302 and done.headers["location"].startswith(CLIENT_CB + "?"), done.text
        code = query_of(done.headers["location"])["code"]
        token = await client.post(b.url("/oauth2/token"), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": CLIENT_CB, "client_id": "chat",
            "code_verifier": pkce.verifier})
        assert token.status_code == 200, token.text
        bearer = {"authorization": f"Bearer {token.json()['access_token']}"}

        # A learns of the user B created from the store (its poll), within a few poll intervals.
        deadline = trio.current_time() + 5 * POLL_INTERVAL
        while True:
            info = await client.get(a.url("/oauth2/userinfo"), headers=bearer)
            if info.status_code == 200 or trio.current_time() > deadline:
                break
            await trio.sleep(POLL_INTERVAL / 10)
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == "corp:alice"
        assert a.state.settings.users["corp:alice"].scopes == ("chat:read", "chat:write")
        # The session B started is good on A too, now that A knows its user.
        page = await ours.get(a.url("/oauth2/authorize?" + urlencode(params | {"state": "again"})))
        assert page.status_code == 200 and "Signed in as <strong>Alice P.</strong>" in page.text, page.text

        # A reload keeps the stored user (the users file does not name it).
        assert await a.server.reload("test") is True
        assert "corp:alice" in a.state.settings.users and "local" in a.state.settings.users

    assert (root / "users.json").read_text() == users_file  # the users file is the operator's alone
    store = PgStore.open(pg_url, pool_size=1)
    try:
        assert [u.name for u in store.provider_user_rows()] == ["corp:alice"]
        assert store.provider_logins_count() == 0
    finally:
        store.close()


async def test_oauth1_secrets_sealed_on_a_open_on_b(start_server: Callable[..., Any],
                                                   make_settings: Callable[..., Settings], pg_url: str,
                                                   tmp_path: Path) -> None:
    key_file = store_key_file(tmp_path)
    shared = crypto.shared_key(key_file.read_bytes())  # what `realtime app add --oauth1` seals with
    base = make_settings(store=StoreSettings(url=pg_url, key_file=key_file))
    legacy = App(name="Legacy Consumer", client_id="legacy", public=True, grant_types=(), redirect_uris=(CALLBACK,),
                 scopes=("chat:read", "chat:write"), oauth1=True, consumer_key=CONSUMER_KEY,
                 consumer_secret_enc=crypto.encrypt(shared, CONSUMER_SECRET, crypto.consumer_context(CONSUMER_KEY)))
    hashes = {name: CHEAP.hash(pw) for name, pw in PASSWORDS.items()}
    base = attrs.evolve(base, apps={**base.apps, "legacy": legacy}, users=oauth1_users(hashes))
    a = await start_server(on_node(base, tmp_path / "a"))
    b = await start_server(on_node(base, tmp_path / "b"))
    async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, redirect_uri=CALLBACK) as client:
        await client.fetch_request_token(a.url("/oauth1/request_token"))  # secret sealed on A
        resp = await approve(b.url(""), client.create_authorization_url(b.url("/oauth1/authorize")))  # on B
        assert resp.status_code == 302, resp.text
        client.parse_authorization_response(resp.headers["location"])
        token = await client.fetch_access_token(b.url("/oauth1/access_token"))  # opens A's request secret
    async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, token=token["oauth_token"],
                                 token_secret=token["oauth_token_secret"], force_include_body=True) as client:
        for node in (a, b):  # the access token's secret was sealed on B
            resp = await client.post(node.url("/api/publish"), json={"channel": "chat:lobby", "data": "hi"})
            assert resp.status_code == 200, resp.text
    for node in ("a", "b"):
        assert not (tmp_path / node / crypto.KEY_FILE).exists()  # no per-node key was made
