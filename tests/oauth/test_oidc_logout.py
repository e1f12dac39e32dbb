"""RP-initiated logout through a real server (SPEC §8): it ends the login
session, revokes what was issued in it and closes those sockets with 4003;
a GET without a valid id_token_hint asks first; never an open redirect."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode
from typing import Any, Callable

import httpx
import jwt
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from realtime.tokens.keyring import KeyRing
from tests.helpers.oauth import hidden
from tests.helpers.oidc import BOB_PW, OIDC_SECRET, RP_LOGOUT, Browser, exchange, oidc_settings, query
from tests.helpers.tokens import bearer

SCOPE = "openid profile chat:read offline_access"


@pytest.fixture
async def server(start_server: Callable[..., Any], make_settings: Callable[..., Any]) -> Any:
    return await start_server(oidc_settings(make_settings()))


async def expect_close(ws: Any, code: int) -> None:
    with trio.fail_after(5):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    assert closed.value.reason.code == code


async def signed_in_tokens(http: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    got = await Browser(http, "").code(scope=SCOPE, **params)
    return await exchange(http, got["code"])


async def still_signed_in(http: httpx.AsyncClient) -> bool:
    resp = await Browser(http, "").authorize(prompt="none", scope=SCOPE)
    return "code" in query(resp.headers["location"])


async def test_logout_with_a_hint_revokes_the_session_and_closes_its_sockets_4003(server: Any) -> None:
    base, ws_url = server.url(""), server.url("/ws", "ws")
    async with httpx.AsyncClient(base_url=base) as http, httpx.AsyncClient(base_url=base) as other:
        tokens = await signed_in_tokens(http)
        second = await signed_in_tokens(http)  # a second grant in the same session
        elsewhere = await signed_in_tokens(other)  # alice in another browser: another session
        async with open_websocket_url(ws_url, extra_headers=bearer(tokens["access_token"])) as ws, \
                open_websocket_url(ws_url, extra_headers=bearer(second["access_token"])) as ws2, \
                open_websocket_url(ws_url, extra_headers=bearer(elsewhere["access_token"])) as kept:
            for socket in (ws, ws2, kept):
                assert json.loads(await socket.get_message())["type"] == "welcome"
            resp = await http.get("/oauth2/logout", params={
                "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": RP_LOGOUT, "state": "st&ate"})
            assert resp.status_code == 302, resp.text
            assert resp.headers["location"] == RP_LOGOUT + "?state=st%26ate"
            cleared = [c for c in resp.headers.get_list("set-cookie") if c.startswith("rt_session=")]
            assert cleared and "Max-Age=0" in cleared[0]
            await expect_close(ws, 4003)
            await expect_close(ws2, 4003)
            await http_ok(kept)  # the other session's socket is untouched
        for grant in (tokens, second):
            resp = await http.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
                "grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
            assert resp.json()["error"] == "invalid_grant"
            resp = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {grant['access_token']}"})
            assert resp.status_code == 401
        assert not await still_signed_in(http)
        assert await still_signed_in(other)
        resp = await other.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
            "grant_type": "refresh_token", "refresh_token": elsewhere["refresh_token"]})
        assert resp.status_code == 200


async def http_ok(ws: Any) -> None:
    await ws.send_message(json.dumps({"type": "ping", "id": "p"}))
    with trio.fail_after(5):
        assert json.loads(await ws.get_message())


async def test_a_code_not_yet_exchanged_dies_with_the_session(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        tokens = await signed_in_tokens(http)
        pending = await Browser(http, "").code(scope=SCOPE)
        resp = await http.post("/oauth2/logout", data={"id_token_hint": tokens["id_token"]})
        assert resp.status_code == 200 and "signed out" in resp.text
        resp = await http.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
            "grant_type": "authorization_code", "code": pending["code"], "redirect_uri": "https://rp.example/cb"})
        assert resp.json()["error"] == "invalid_grant"
        assert not await still_signed_in(http)


async def test_an_expired_hint_is_accepted_for_logout(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        tokens = await signed_in_tokens(http)
        exp = jwt.decode(tokens["id_token"], options={"verify_signature": False})["exp"]
        server.state.oauth.clock = lambda: exp + 3600.0
        resp = await http.get("/oauth2/logout", params={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": RP_LOGOUT})
        assert resp.status_code == 302 and resp.headers["location"] == RP_LOGOUT
        server.state.oauth.clock = time.time
        assert not await still_signed_in(http)


async def test_get_without_a_hint_asks_and_only_a_csrf_checked_post_signs_out(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        await signed_in_tokens(http)
        page = await http.get("/oauth2/logout", params={
            "client_id": "rp", "post_logout_redirect_uri": RP_LOGOUT, "state": "s"})
        assert page.status_code == 200 and "Sign out?" in page.text and "Alice A." in page.text
        assert await still_signed_in(http)  # asking ended nothing
        fields = hidden(page.text)
        assert fields["csrf_token"]
        # A forged form (another site's POST without the token, or a wrong one) asks again.
        for forged in ({}, {"csrf_token": "1.abc"}):
            resp = await http.post("/oauth2/logout", data={**{k: v for k, v in fields.items() if k != "csrf_token"},
                                                           **forged, "action": "logout"})
            assert resp.status_code == 200 and "Sign out?" in resp.text
            assert await still_signed_in(http)
        # Another browser cannot use this browser's token (bound to its CSRF cookie and session).
        async with httpx.AsyncClient(base_url=server.url("")) as attacker:
            resp = await attacker.post("/oauth2/logout", data={**fields, "action": "logout"})
            assert resp.status_code == 200 and "Sign out?" in resp.text
        resp = await http.post("/oauth2/logout", data={**fields, "action": "logout"})
        assert resp.status_code == 302 and resp.headers["location"] == RP_LOGOUT + "?state=s"
        assert not await still_signed_in(http)


async def test_a_hint_of_another_user_asks_before_ending_this_browsers_session(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url("")) as http, httpx.AsyncClient(base_url=server.url("")) as b:
        await signed_in_tokens(http)  # alice here
        bobs = await signed_in_tokens(b, user="bob", password=BOB_PW)
        resp = await http.get("/oauth2/logout", params={"id_token_hint": bobs["id_token"]})
        assert resp.status_code == 200 and "Sign out?" in resp.text
        assert await still_signed_in(http)


async def test_open_redirects_and_bad_hints_are_refused(server: Any, tmp_path: Any) -> None:
    foreign = KeyRing.load_or_create(tmp_path / "foreign-keys", "RS256")
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        tokens = await signed_in_tokens(http)
        hint = tokens["id_token"]
        claims = jwt.decode(hint, options={"verify_signature": False})
        forged = foreign.sign(claims, typ="JWT")
        access_as_hint = tokens["access_token"]  # typ at+jwt: not an ID token
        cases = [
            {"post_logout_redirect_uri": "https://evil.example/"},  # no client known
            {"client_id": "rp", "post_logout_redirect_uri": "https://evil.example/"},
            {"client_id": "rp", "post_logout_redirect_uri": RP_LOGOUT + "/"},  # not exact
            {"client_id": "rp", "post_logout_redirect_uri": RP_LOGOUT.upper()},
            {"client_id": "rp", "post_logout_redirect_uri": "https://rp.example/cb"},  # a login redirect, not logout
            {"client_id": "other", "post_logout_redirect_uri": RP_LOGOUT},  # another app's URI
            {"id_token_hint": hint, "post_logout_redirect_uri": "https://evil.example/"},
            {"id_token_hint": hint, "client_id": "other", "post_logout_redirect_uri": "https://other.example/bye"},
            {"id_token_hint": forged, "post_logout_redirect_uri": RP_LOGOUT},
            {"id_token_hint": access_as_hint, "post_logout_redirect_uri": RP_LOGOUT},
            {"id_token_hint": "not.a.jwt", "post_logout_redirect_uri": RP_LOGOUT},
            {"client_id": "nobody", "post_logout_redirect_uri": RP_LOGOUT},
            [("client_id", "rp"), ("post_logout_redirect_uri", RP_LOGOUT),
             ("post_logout_redirect_uri", "https://evil.example/")],  # repeated
        ]
        for params in cases:
            for method in ("GET", "POST"):
                if method == "GET":
                    resp = await http.get("/oauth2/logout", params=params)
                else:
                    resp = await http.post("/oauth2/logout", content=urlencode(params), headers={
                        "content-type": "application/x-www-form-urlencoded"})
                assert resp.status_code == 400, (params, resp.status_code)
                assert "location" not in resp.headers and "Logout refused" in resp.text
        assert await still_signed_in(http)


async def test_over_https_logout_clears_the_host_prefixed_cookie(server: Any, client_ssl: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url("", "https"), verify=client_ssl) as http:
        got = await Browser(http, "").code(scope=SCOPE)
        assert "__Host-rt_session" in http.cookies
        tokens = await exchange(http, got["code"])
        resp = await http.post("/oauth2/logout", data={"id_token_hint": tokens["id_token"]})
        assert resp.status_code == 200
        cleared = [c for c in resp.headers.get_list("set-cookie") if c.startswith("__Host-rt_session=")]
        assert cleared and "Max-Age=0" in cleared[0] and "Secure" in cleared[0] and "Path=/;" in cleared[0]
        assert "__Host-rt_session" not in http.cookies
        resp = await Browser(http, "").authorize(prompt="none", scope=SCOPE)
        assert query(resp.headers["location"])["error"] == "login_required"


async def test_bad_input_gets_a_clear_page(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        cases = [
            ("POST", {"content": b'{"id_token_hint": "x"}', "headers": {"content-type": "application/json"}}),
            ("POST", {"content": b"\xff\xfe=%zz", "headers": {"content-type": "application/x-www-form-urlencoded"}}),
            ("GET", {"params": {"client_id": "rp", "state": "s" * 5000}}),
            ("GET", {"params": {"id_token_hint": "a" * 10_000}}),
            ("GET", {"params": {"id_token_hint": "e30.e30.", "client_id": "rp"}}),  # alg-less, unsigned
        ]
        for method, kw in cases:
            resp = await http.request(method, "/oauth2/logout", **kw)
            assert resp.status_code == 400, (kw, resp.status_code, resp.text[:200])
            assert resp.headers["content-type"].startswith("text/html") and "location" not in resp.headers
