"""Each way a signed request fails, on a real server, with its RFC 5849
§3.2 status and its ``oauth_problem``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import httpx
from oauthlib.oauth1 import Client

from tests.helpers.server import Running
from tests.helpers.oauth1 import CALLBACK, CONSUMER_KEY, CONSUMER_SECRET, approve

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def problem(resp: httpx.Response) -> str:
    if resp.headers["content-type"].startswith("application/json"):
        return resp.json()["oauth_problem"]
    return parse_qs(resp.text)["oauth_problem"][0]


async def send(http: httpx.AsyncClient, url: str, client: Client, method: str = "POST") -> httpx.Response:
    uri, headers, body = client.sign(url, http_method=method)
    return await http.request(method, uri, headers=headers, content=body or b"")


async def request_token(http: httpx.AsyncClient, o1: Running) -> dict[str, str]:
    client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri=CALLBACK)
    resp = await send(http, o1.url("/oauth1/request_token"), client)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-www-form-urlencoded"
    assert resp.headers["cache-control"] == "no-store"
    return dict(parse_qsl(resp.text))


async def approved(http: httpx.AsyncClient, o1: Running) -> tuple[dict[str, str], str]:
    rt = await request_token(http, o1)
    resp = await approve(o1.url(""), f"/oauth1/authorize?oauth_token={rt['oauth_token']}")
    assert resp.status_code == 302
    return rt, parse_qs(resp.headers["location"].split("?", 1)[1])["oauth_verifier"][0]


def exchanger(rt: dict[str, str], verifier: str, **kw: Any) -> Client:
    return Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_key=rt["oauth_token"],
                  resource_owner_secret=rt["oauth_token_secret"], verifier=verifier, **kw)


async def access_token(http: httpx.AsyncClient, o1: Running) -> dict[str, str]:
    rt, verifier = await approved(http, o1)
    resp = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, verifier))
    assert resp.status_code == 200, resp.text
    return dict(parse_qsl(resp.text))


async def test_replayed_nonce(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        token = await access_token(http, o1)
        client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_key=token["oauth_token"],
                        resource_owner_secret=token["oauth_token_secret"])
        uri, headers, _ = client.sign(o1.url("/api/publish"), http_method="POST")
        first = await http.post(uri, headers=headers, json={"channel": "chat:a", "data": 1})
        assert first.status_code == 200, first.text
        replay = await http.post(uri, headers=headers, json={"channel": "chat:a", "data": 1})
        assert replay.status_code == 401
        assert problem(replay) == "nonce_used"
        assert replay.json()["error"] == "invalid_token"
        assert 'oauth_problem="nonce_used"' in replay.headers["www-authenticate"]


async def test_stale_and_future_timestamps(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        for skew in (-301 - 5, 400):
            client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri=CALLBACK,
                            timestamp=str(int(time.time()) + skew))
            resp = await send(http, o1.url("/oauth1/request_token"), client)
            assert resp.status_code == 401
            assert problem(resp) == "timestamp_refused"
            low, high = map(int, parse_qs(resp.text)["oauth_acceptable_timestamps"][0].split("-"))
            assert high - low == 600


async def test_wrong_signature(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        client = Client(CONSUMER_KEY, client_secret="not the secret", callback_uri=CALLBACK)
        resp = await send(http, o1.url("/oauth1/request_token"), client)
        assert resp.status_code == 401 and problem(resp) == "signature_invalid"
        assert resp.headers["www-authenticate"].startswith("OAuth realm=")
        # Signed for another URL (path) than the one requested.
        client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri=CALLBACK)
        _uri, headers, _ = client.sign(o1.url("/oauth1/elsewhere"), http_method="POST")
        resp = await http.post(o1.url("/oauth1/request_token"), headers=headers)
        assert resp.status_code == 401 and problem(resp) == "signature_invalid"
        # A tampered query parameter.
        uri, headers, _ = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri=CALLBACK).sign(
            o1.url("/oauth1/request_token?scope=chat:read"), http_method="POST")
        resp = await http.post(uri.replace("chat:read", "chat:write"), headers=headers)
        assert resp.status_code == 401 and problem(resp) == "signature_invalid"


async def test_wrong_verifier_then_right_one(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        rt, verifier = await approved(http, o1)
        resp = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, "x" + verifier[1:]))
        assert resp.status_code == 401 and problem(resp) == "verifier_invalid"
        # A verifier is bound to its request token: another one's does not fit.
        rt2, verifier2 = await approved(http, o1)
        resp = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, verifier2))
        assert resp.status_code == 401 and problem(resp) == "verifier_invalid"
        resp = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, verifier))
        assert resp.status_code == 200


async def test_reused_request_token(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        rt, verifier = await approved(http, o1)
        resp = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, verifier))
        assert resp.status_code == 200
        again = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, verifier))
        assert again.status_code == 401 and problem(again) == "token_used"
        # The approval page refuses it too, without redirecting.
        page = await http.get(o1.url("/oauth1/authorize"), params={"oauth_token": rt["oauth_token"]})
        assert page.status_code == 400 and "location" not in page.headers


async def test_unapproved_request_token(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        rt = await request_token(http, o1)
        resp = await send(http, o1.url("/oauth1/access_token"), exchanger(rt, "whatever"))
        assert resp.status_code == 401 and problem(resp) == "permission_unknown"


async def test_request_token_is_not_an_access_token(o1: Running) -> None:
    async with httpx.AsyncClient() as http:
        rt, _verifier = await approved(http, o1)
        client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_key=rt["oauth_token"],
                        resource_owner_secret=rt["oauth_token_secret"])
        uri, headers, _ = client.sign(o1.url("/api/publish"), http_method="POST")
        resp = await http.post(uri, headers=headers, json={"channel": "chat:a", "data": 1})
        assert resp.status_code == 401 and problem(resp) == "token_rejected"


async def test_malformed_requests(o1: Running) -> None:
    url = o1.url("/oauth1/request_token")
    async with httpx.AsyncClient() as http:
        unknown = Client("ck-nobody", client_secret="x", callback_uri=CALLBACK)
        resp = await send(http, url, unknown)
        assert resp.status_code == 401 and problem(resp) == "consumer_key_unknown"

        no_callback = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET)
        resp = await send(http, url, no_callback)
        assert resp.status_code == 400 and problem(resp) == "parameter_absent"
        assert parse_qs(resp.text)["oauth_parameters_absent"] == ["oauth_callback"]

        foreign = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri="https://evil.example/cb")
        resp = await send(http, url, foreign)
        assert resp.status_code == 400 and problem(resp) == "parameter_rejected"

        # Protocol parameters in the header and the query at once.
        uri, headers, _ = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri=CALLBACK).sign(
            url, http_method="POST")
        resp = await http.post(uri + "?oauth_nonce=x", headers=headers)
        assert resp.status_code == 400 and problem(resp) == "parameter_rejected"

        resp = await http.post(url, headers={"Authorization": 'OAuth oauth_consumer_key="ck-legacy"'})
        assert resp.status_code == 400 and problem(resp) == "parameter_absent"

        resp = await http.post(url, headers={"Authorization": 'OAuth oauth_version="2.0", oauth_consumer_key="x"'})
        assert resp.status_code == 400 and problem(resp) == "version_rejected"

        resp = await http.post(url, headers={"Authorization": "OAuth garbage"})
        assert resp.status_code == 400

        resp = await http.post(o1.url("/api/publish"), headers={"Authorization": "OAuth realm=\"x\""},
                               json={"channel": "chat:a"})
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


async def test_query_signed_request(o1: Running) -> None:
    """RFC 5849 §3.5.3: the parameters may travel in the query instead."""
    from oauthlib.oauth1 import SIGNATURE_TYPE_QUERY

    async with httpx.AsyncClient() as http:
        client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, callback_uri=CALLBACK,
                        signature_type=SIGNATURE_TYPE_QUERY)
        resp = await send(http, o1.url("/oauth1/request_token"), client)
        assert resp.status_code == 200, resp.text
