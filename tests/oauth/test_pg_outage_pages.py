"""A database outage under a PostgreSQL node, for the pages and OAuth 1.0a
(the token endpoint's case is tests/oauth/test_pg_outage.py): a signed-in
browser's account page, its withdraw form, the device page and logout
answer the 503 page, the OAuth 1.0a endpoints 503, each with one ERROR
line and no traceback; once PostgreSQL is back the same pages answer
again without a restart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import attrs
import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oauthlib.oauth1 import SIGNATURE_RSA, Client

from realtime.config.settings import App
from tests.helpers.oauth import hidden
from tests.helpers.oauth1 import CALLBACK, RSA_CONSUMER_KEY
from tests.helpers.oidc import ALICE_PW, oidc_settings
from tests.helpers.postgres import PostgresCluster, pg_node_settings, write_store_key

pytestmark = pytest.mark.timeout(180)


def rsa_consumer() -> tuple[App, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    app = App(name="RSA Consumer", client_id="rsa", public=True, grant_types=(), redirect_uris=(CALLBACK,),
              scopes=("chat:read",), oauth1=True, consumer_key=RSA_CONSUMER_KEY, rsa_public_key=public)
    return app, private


def signed(url: str, private: str, **kw: str) -> dict[str, str]:
    """Headers of an RSA-SHA1 request signed by oauthlib's client."""
    client = Client(RSA_CONSUMER_KEY, signature_method=SIGNATURE_RSA, rsa_key=private, **kw)
    _uri, headers, _body = client.sign(url, http_method="POST")
    return headers


def signed_request_token(base: str, private: str) -> dict[str, str]:
    return signed(base + "/oauth1/request_token", private, callback_uri=CALLBACK)


async def test_pages_and_oauth1_answer_503_in_an_outage_and_recover(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], own_cluster: PostgresCluster,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    consumer, private = rsa_consumer()
    base = oidc_settings(make_settings())
    base = attrs.evolve(base, apps={**base.apps, "rsa": consumer})
    node = await start_server(pg_node_settings(base, own_cluster.fresh_database(), write_store_key(tmp_path),
                                               tmp_path / "a"))
    origin = node.url("").rstrip("/")
    async with httpx.AsyncClient(base_url=origin, timeout=30) as browser:
        page = await browser.get("/account")
        signed_in = await browser.post("/account", data=hidden(page.text) | {"username": "alice",
                                                                          "password": ALICE_PW})
        assert signed_in.status_code == 303, signed_in.text
        account = await browser.get("/account")
        assert account.status_code == 200 and "csrf_token" in account.text
        csrf = hidden(account.text)["csrf_token"]
        ok = await browser.post("/oauth1/request_token", headers=signed_request_token(origin, private))
        assert ok.status_code == 200, ok.text
        request_token = dict(p.split("=", 1) for p in ok.text.split("&"))["oauth_token"]
        exchange = signed(origin + "/oauth1/access_token", private, resource_owner_key=request_token,
                          verifier="not-needed-the-store-is-asked-first")

        await trio.to_thread.run_sync(own_cluster.halt)
        caplog.clear()
        requests = {
            "account page": lambda: browser.get("/account"),
            "account revoke": lambda: browser.post("/account/revoke", data={"csrf_token": csrf, "all": "1"}),
            "device page": lambda: browser.get("/device"),
            "logout": lambda: browser.get("/oauth2/logout"),
            "oauth1 authorize": lambda: browser.get("/oauth1/authorize", params={"oauth_token": request_token}),
            "oauth1 request_token": lambda: browser.post("/oauth1/request_token",
                                                         headers=signed_request_token(origin, private)),
            "oauth1 access_token": lambda: browser.post("/oauth1/access_token", headers=exchange),
        }
        down: dict[str, httpx.Response] = {}

        async def ask(what: str) -> None:
            down[what] = await requests[what]()

        with trio.fail_after(60):
            async with trio.open_nursery() as at_once:  # each waits the pool's wait: all at once
                for what in requests:
                    at_once.start_soon(ask, what)
        for what, answer in down.items():
            assert answer.status_code == 503, (what, answer.status_code, answer.text)
            if answer.headers["content-type"].startswith("text/html"):
                assert "Temporarily unavailable" in answer.text, what
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert all(r.exc_info is None for r in errors)  # clear lines, no traceback
        assert sum("database is unavailable" in r.getMessage() for r in errors) >= len(down)

        await trio.to_thread.run_sync(own_cluster.resume)
        for _ in range(10):  # each try waits at most the pool's wait for a connection
            back = await browser.get("/account")
            if back.status_code != 503:
                break
        assert back.status_code == 200 and "csrf_token" in back.text, back.text
        assert (await browser.get("/device")).status_code == 200
