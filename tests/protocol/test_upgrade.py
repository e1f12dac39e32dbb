"""The WebSocket gate and session, through a real server and real clients."""

from __future__ import annotations

import json
import ssl
import time

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from realtime.tokens.keyring import KeyRing, issue_access_token
from tests.helpers.server import Running
from tests.helpers.ws import loads, next_of_type
from tests.helpers.tokens import bearer


async def test_welcome_with_authorization_header(running: Running) -> None:
    token = running.mint()
    async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(token)) as ws:
        welcome = loads(await ws.get_message())
        assert welcome["type"] == "welcome"
        assert welcome["sub"] == "alice"
        assert isinstance(welcome["expires_at"], int)
        assert 50 <= welcome["expires_at"] - time.time() <= 61


async def test_subprotocol_token_selects_realtime_v1_and_never_echoes(running: Running) -> None:
    token = running.mint()
    async with open_websocket_url(
        running.url("/ws", "ws"), subprotocols=["realtime.v1", f"bearer.{token}"]
    ) as ws:
        assert ws.subprotocol == "realtime.v1"
        assert loads(await ws.get_message())["type"] == "welcome"


async def test_raw_101_names_only_realtime_v1(running: Running) -> None:
    token = running.mint()
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    async with stream:
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Protocol: realtime.v1, bearer." + token.encode() + b"\r\n\r\n")
        head = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(4096)
    head = head.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 101")
    assert b"sec-websocket-protocol: realtime.v1\r\n" in head + b"\r\n"
    assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in head
    assert token.lower().encode() not in head


async def test_query_token_refused_unless_enabled(start_server, make_settings) -> None:
    off = await start_server(make_settings())
    token = off.mint()
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(off.url(f"/ws?access_token={token}", "ws")):
            pass
    assert rejected.value.status_code == 401

    on = await start_server(make_settings(websocket={"token_in_query": True, "ping_interval": 0}))
    token = on.mint()
    async with open_websocket_url(on.url(f"/ws?access_token={token}", "ws")) as ws:
        assert loads(await ws.get_message())["type"] == "welcome"


@pytest.mark.parametrize("case", ["missing", "garbage", "expired", "foreign_key", "wrong_issuer", "revoked",
                                  "unknown_user", "disabled_user", "unknown_client"])
async def test_bad_tokens_get_401_before_upgrade(running: Running, tmp_path, case: str) -> None:
    state = running.state
    headers: list[tuple[bytes, bytes]] = []
    if case == "garbage":
        headers = bearer("not.a.jwt")
    elif case == "expired":
        headers = bearer(running.mint(ttl=-60))
    elif case == "foreign_key":
        other = KeyRing.load_or_create(tmp_path / "other-keys", "RS256")
        token, _ = issue_access_token(other, issuer=state.settings.issuer, audience=state.settings.audience,
                                      sub="alice", client_id="chat-app", scope=["chat:read"], ttl=60)
        headers = bearer(token)
    elif case == "wrong_issuer":
        token, _ = issue_access_token(state.keyring, issuer="https://evil.example", audience=state.settings.audience,
                                      sub="alice", client_id="chat-app", scope=["chat:read"], ttl=60)
        headers = bearer(token)
    elif case == "revoked":
        token, claims = issue_access_token(state.keyring, issuer=state.settings.issuer,
                                           audience=state.settings.audience, sub="alice",
                                           client_id="chat-app", scope=["chat:read"], ttl=60)
        state.revoked.add(claims.jti, claims.exp)
        headers = bearer(token)
    elif case == "unknown_user":
        headers = bearer(running.mint(sub="mallory"))
    elif case == "disabled_user":
        import attrs

        users = dict(state.settings.users)
        users["alice"] = attrs.evolve(users["alice"], disabled=True)
        state.settings = attrs.evolve(state.settings, users=users)
        headers = bearer(running.mint())
    elif case == "unknown_client":
        headers = bearer(running.mint(client_id="nobody"))
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(running.url("/ws", "ws"), extra_headers=headers):
            pass
    assert rejected.value.status_code == 401
    challenge = dict(rejected.value.headers)[b"www-authenticate"]
    assert challenge.startswith(b"Bearer")
    assert b'error="invalid_token"' in challenge


async def test_token_without_channel_scope_gets_403(running: Running) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(running.mint(sub="carol", scope="profile"))):
            pass
    assert rejected.value.status_code == 403


async def test_ping_ack_and_error(running: Running) -> None:
    async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(running.mint())) as ws:
        await next_of_type(ws, "welcome")
        await ws.send_message(json.dumps({"type": "ping", "id": 7}))
        pong = await next_of_type(ws, "pong")
        assert pong.get("id") == 7
        await ws.send_message(json.dumps({"type": "bogus", "id": "x"}))
        error = await next_of_type(ws, "error")
        assert error["id"] == "x" and error["code"] and error["message"]


async def test_invalid_json_closes_1007(running: Running) -> None:
    async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(running.mint())) as ws:
        await next_of_type(ws, "welcome")
        await ws.send_message("{not json")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1007


async def test_oversized_message_closes_1009(start_server, make_settings) -> None:
    server = await start_server(make_settings(websocket={"max_message_bytes": 1024, "ping_interval": 0}))
    async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(server.mint())) as ws:
        await next_of_type(ws, "welcome")
        await ws.send_message(json.dumps({"type": "ping", "pad": "x" * 2000}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1009


async def test_expiry_warning_then_4001(start_server, make_settings) -> None:
    server = await start_server(make_settings(websocket={"expiry_warning": 1.0, "ping_interval": 0}))
    token = server.mint(ttl=2)
    async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(token)) as ws:
        welcome = await next_of_type(ws, "welcome")
        warning = await next_of_type(ws, "token_expiring")
        assert warning["expires_at"] == welcome["expires_at"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4001


async def test_refresh_moves_the_deadline(start_server, make_settings) -> None:
    server = await start_server(make_settings(websocket={"expiry_warning": 1.0, "ping_interval": 0}))
    async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(server.mint(ttl=2))) as ws:
        welcome = await next_of_type(ws, "welcome")
        await next_of_type(ws, "token_expiring")
        fresh = server.mint(ttl=4)
        await ws.send_message(json.dumps({"type": "refresh", "id": 1, "token": fresh}))
        refreshed = await next_of_type(ws, "refreshed")
        assert refreshed["expires_at"] > welcome["expires_at"]
        # The old deadline passes while we wait for the new warning.
        warning = await next_of_type(ws, "token_expiring")
        assert warning["expires_at"] == refreshed["expires_at"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4001


async def test_refresh_for_another_subject_is_refused(running: Running) -> None:
    async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(running.mint())) as ws:
        await next_of_type(ws, "welcome")
        other = running.mint(sub="bob", scope="chat:read")
        await ws.send_message(json.dumps({"type": "refresh", "id": 2, "token": other}))
        error = await next_of_type(ws, "error")
        assert error["id"] == 2 and error["code"] == "invalid_token"
        await ws.send_message(json.dumps({"type": "ping", "id": 3}))
        assert (await next_of_type(ws, "pong"))["id"] == 3


async def test_wss_with_trustme(running: Running, client_ssl: ssl.SSLContext) -> None:
    url = f"wss://localhost:{running.https.port}/ws"
    async with open_websocket_url(url, ssl_context=client_ssl, extra_headers=bearer(running.mint())) as ws:
        assert (await next_of_type(ws, "welcome"))["sub"] == "alice"
        await ws.send_message(json.dumps({"type": "ping", "id": 1}))
        assert (await next_of_type(ws, "pong"))["id"] == 1


async def test_revocation_closes_live_socket_with_4003(running: Running) -> None:
    token = running.mint()
    async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(token)) as ws:
        await next_of_type(ws, "welcome")
        claims = running.state.keyring.verify(token, issuer=running.state.settings.issuer,
                                              audience=running.state.settings.audience)
        assert running.state.revoke_access(claims.jti, claims.exp) == 1
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4003


async def test_non_trio_client_websockets_sync(running: Running) -> None:
    """A second, independent client implementation (websockets, threads)."""
    from websockets.sync.client import connect

    url = running.url("/ws", "ws")
    token = running.mint()

    def talk() -> list[dict]:
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            first = json.loads(ws.recv(timeout=5))
            ws.send(json.dumps({"type": "ping", "id": "w"}))
            second = json.loads(ws.recv(timeout=5))
            return [first, second]

    first, second = await trio.to_thread.run_sync(talk)
    assert first["type"] == "welcome"
    assert second == {"type": "pong", "id": "w"}
