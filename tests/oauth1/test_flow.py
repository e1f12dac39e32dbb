"""End to end on a real server: the three-legged OAuth 1.0a flow driven by
Authlib's OAuth 1 client, then a signed publish, a signed WebSocket
handshake, and revocation closing the socket with 4003."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
import trio
from authlib.integrations.httpx_client import AsyncOAuth1Client
from authlib.integrations.base_client import OAuthError
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from realtime.net.reload import withdraw_lost_access, withdraw_retired_keys
from realtime.oauth1.resource import OAUTH1_KID, withdraw_oauth1
from tests.helpers.oauth import PASSWORDS, hidden
from tests.helpers.server import Running
from tests.helpers.ws import next_of_type
from tests.helpers.oauth1 import (
    CALLBACK,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    RSA_CONSUMER_KEY,
    approve,
    sign,
)


async def three_legged(o1: Running, **client_kw: Any) -> dict[str, str]:
    """Request token, browser approval, access token; returns the access token dict."""
    base = o1.url("")
    async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, redirect_uri=CALLBACK, **client_kw) as client:
        request_token = await client.fetch_request_token(base + "/oauth1/request_token")
        assert request_token["oauth_callback_confirmed"] == "true"
        url = client.create_authorization_url(base + "/oauth1/authorize")
        resp = await approve(base, url)
        assert resp.status_code == 302, resp.text
        location = resp.headers["location"]
        assert location.startswith(CALLBACK + "?")
        client.parse_authorization_response(location)
        return await client.fetch_access_token(base + "/oauth1/access_token")


def ws_auth(o1: Running, token: dict[str, str], path: str = "/ws") -> list[tuple[str, str]]:
    # The client signs the http equivalent of the ws URL it connects to.
    headers = sign(o1.url(path, "http"), token=token["oauth_token"], token_secret=token["oauth_token_secret"])
    return [("Authorization", headers["Authorization"])]


async def test_three_legged_publish_websocket_revoke(o1: Running) -> None:
    token = await three_legged(o1)
    assert set(token) >= {"oauth_token", "oauth_token_secret"}
    base = o1.url("")

    async with open_websocket_url(o1.url("/ws", "ws"), extra_headers=ws_auth(o1, token)) as ws:
        welcome = json.loads(await ws.get_message())
        assert welcome["type"] == "welcome" and welcome["sub"] == "alice"
        await ws.send_message(json.dumps({"type": "subscribe", "channel": "chat:lobby", "id": 1}))
        assert (await next_of_type(ws, "ack"))["id"] == 1

        # force_include_body: Authlib otherwise sends a non-form body empty.
        async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, token=token["oauth_token"],
                                     token_secret=token["oauth_token_secret"], force_include_body=True) as client:
            resp = await client.post(base + "/api/publish", json={"channel": "chat:lobby", "data": "hi"})
            assert resp.status_code == 200, resp.text
            assert resp.json()["delivered"] == 1
            message = await next_of_type(ws, "message")
            assert message["from"] == "alice" and message["data"] == "hi"

            # Revoking the token closes its live socket with 4003 ...
            resp = await client.post(base + "/oauth1/revoke")
            assert resp.status_code == 200, resp.text
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(5):
                    await ws.get_message()
            assert closed.value.reason.code == 4003

            # ... and the token no longer signs anything.
            resp = await client.post(base + "/api/publish", json={"channel": "chat:lobby", "data": "x"})
            assert resp.status_code == 401
            assert resp.json()["oauth_problem"] == "token_revoked"
            assert resp.headers["www-authenticate"].startswith("OAuth ")

    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(o1.url("/ws", "ws"), extra_headers=ws_auth(o1, token)):
            pass
    assert rejected.value.status_code == 401


async def test_signed_handshake_over_tls_and_scope(o1: Running, client_ssl: Any) -> None:
    token = await three_legged(o1)
    headers = sign(o1.url("/ws?x=1", "https").replace("127.0.0.1", "localhost"),
                   token=token["oauth_token"], token_secret=token["oauth_token_secret"])
    url = o1.url("/ws?x=1", "wss").replace("127.0.0.1", "localhost")
    async with open_websocket_url(url, ssl_context=client_ssl,
                                  extra_headers=[("Authorization", headers["Authorization"])]) as ws:
        welcome = json.loads(await ws.get_message())
        assert welcome["sub"] == "alice"
        # An OAuth 1 token does not expire by itself.
        assert welcome["expires_at"] > 10**11
        # The scope granted is the user's share of what the consumer may have.
        await ws.send_message(json.dumps({"type": "subscribe", "channel": "news:x", "id": 2}))
        assert (await next_of_type(ws, "error"))["id"] == 2


async def test_reload_app_removal_and_key_rotation(o1: Running) -> None:
    token = await three_legged(o1)
    state = o1.state
    async with open_websocket_url(o1.url("/ws", "ws"), extra_headers=ws_auth(o1, token)) as ws:
        await ws.get_message()
        conns = state.hub.connections.by_client("legacy")
        assert len(conns) == 1 and conns[0].kid == OAUTH1_KID
        # No signing key of the ring is this connection's: rotation must not touch it.
        assert withdraw_retired_keys(state) == 0
        old = state.settings
        new_apps = dict(old.apps)
        del new_apps["legacy"]
        import attrs

        new = attrs.evolve(old, apps=new_apps)
        state.settings = new
        assert withdraw_lost_access(state, old, new) + withdraw_oauth1(state, old, new) >= 1
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4003


async def test_oob_with_hmac_sha256(o1: Running) -> None:
    """Authlib has no HMAC-SHA256: oauthlib's client signs this flow."""
    base = o1.url("")

    async def post(http: httpx.AsyncClient, path: str, client: Client, **params: str) -> httpx.Response:
        body = urlencode(params) if params else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        uri, headers, body = client.sign(base + path, http_method="POST", body=body, headers=headers)
        return await http.post(uri, headers=headers, content=body or b"")

    async with httpx.AsyncClient() as http:
        temp = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri="oob",
                      signature_method=SIGNATURE_HMAC_SHA256)
        resp = await post(http, "/oauth1/request_token", temp, scope="chat:read")
        rt = dict(parse_qsl(resp.text))
        assert resp.status_code == 200 and rt["oauth_callback_confirmed"] == "true", resp.text
        resp = await approve(base, f"/oauth1/authorize?oauth_token={rt['oauth_token']}")
        assert resp.status_code == 200
        verifier = resp.text.split("to finish: ")[1].split("<")[0]
        exchange = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_key=rt["oauth_token"],
                          resource_owner_secret=rt["oauth_token_secret"], verifier=verifier,
                          signature_method=SIGNATURE_HMAC_SHA256)
        resp = await post(http, "/oauth1/access_token", exchange)
        token = dict(parse_qsl(resp.text))
        assert resp.status_code == 200 and token["oauth_token"] != rt["oauth_token"], resp.text
        signer = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_key=token["oauth_token"],
                        resource_owner_secret=token["oauth_token_secret"], signature_method=SIGNATURE_HMAC_SHA256)
        uri, headers, _ = signer.sign(base + "/api/publish", http_method="POST")
        resp = await http.post(uri, headers=headers, json={"channel": "chat:a", "data": 1})
        assert resp.status_code == 403, resp.text  # only chat:read was asked for
        assert "insufficient_scope" in resp.headers["www-authenticate"]


async def test_rsa_sha1_consumer(o1: Running, rsa_private_pem: str) -> None:
    base = o1.url("")
    async with AsyncOAuth1Client(RSA_CONSUMER_KEY, signature_method="RSA-SHA1", rsa_key=rsa_private_pem,
                                 redirect_uri=CALLBACK) as client:
        await client.fetch_request_token(base + "/oauth1/request_token")
        resp = await approve(base, client.create_authorization_url(base + "/oauth1/authorize"), user="bob")
        client.parse_authorization_response(resp.headers["location"])
        token = await client.fetch_access_token(base + "/oauth1/access_token")
        assert token["oauth_token"]
        # HMAC is not available to a consumer that registered only a public key.
        async with AsyncOAuth1Client(RSA_CONSUMER_KEY, "guess", redirect_uri=CALLBACK) as hmac_client:
            resp = await hmac_client.post(base + "/oauth1/request_token")
            assert resp.status_code == 400
            assert parse_qs(resp.text)["oauth_problem"] == ["signature_method_rejected"]


async def test_plaintext_only_over_https(o1: Running, client_ssl: Any) -> None:
    async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, redirect_uri=CALLBACK,
                                 signature_method="PLAINTEXT") as client:
        resp = await client.post(o1.url("/oauth1/request_token"))
        assert resp.status_code == 400
        assert parse_qs(resp.text)["oauth_problem"] == ["signature_method_rejected"]
    async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, redirect_uri=CALLBACK,
                                 signature_method="PLAINTEXT", verify=client_ssl) as client:
        token = await client.fetch_request_token(o1.url("/oauth1/request_token", "https"))
        assert token["oauth_token"]


async def test_denied_consent_redirects_without_verifier(o1: Running) -> None:
    base = o1.url("")
    async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, redirect_uri=CALLBACK) as client:
        rt = await client.fetch_request_token(base + "/oauth1/request_token")
        resp = await approve(base, client.create_authorization_url(base + "/oauth1/authorize"), decision="deny")
        params = parse_qs(urlsplit(resp.headers["location"]).query)
        assert params == {"denied": [rt["oauth_token"]], "oauth_problem": ["permission_denied"]}
        async with httpx.AsyncClient() as browser:
            resp = await browser.get(base + "/oauth1/authorize", params={"oauth_token": rt["oauth_token"]})
            assert resp.status_code == 400 and "location" not in resp.headers


async def test_authlib_sees_errors(o1: Running) -> None:
    async with AsyncOAuth1Client(CONSUMER_KEY, "wrong secret", redirect_uri=CALLBACK) as client:
        with pytest.raises(OAuthError) as exc:
            await client.fetch_request_token(o1.url("/oauth1/request_token"))
        assert "signature_invalid" in str(exc.value)


async def test_remembered_consent_is_asked_again_for_a_loopback_callback(o1: Running) -> None:
    """RFC 8252 §8.6: the consumer's callback is loopback,
    so a stored consent and a live session still show the consent page."""
    base = o1.url("")
    async with httpx.AsyncClient(base_url=base) as browser:
        for round_ in range(2):
            async with AsyncOAuth1Client(CONSUMER_KEY, CONSUMER_SECRET, redirect_uri=CALLBACK) as client:
                await client.fetch_request_token(base + "/oauth1/request_token")
                resp = await browser.get(client.create_authorization_url(base + "/oauth1/authorize"))
            if round_ == 0:
                assert 'value="login"' in resp.text
                resp = await browser.post("/oauth1/authorize",
                                          data=hidden(resp.text) | {"username": "alice", "password": PASSWORDS["alice"]})
            assert resp.status_code == 200 and 'value="consent"' in resp.text  # never a silent 302
            resp = await browser.post("/oauth1/authorize", data=hidden(resp.text) | {"decision": "allow"})
            assert resp.status_code == 302 and resp.headers["location"].startswith(CALLBACK + "?")
