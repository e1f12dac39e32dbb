"""The server API (SPEC §11) over HTTP against one real node: the admin
scope, each endpoint's answer shape, bad input as 400, and a revocation
that outlives a restart."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from realtime.config.settings import Settings
from tests.helpers.admin import admin_token, api
from tests.helpers.server import Running
from tests.helpers.tokens import bearer
from tests.helpers.ws import call, connect, recv, send


async def test_admin_scope_is_required(running: Running) -> None:
    assert (await api(running, "GET", "/api/info", token="")).status_code == 401
    plain = running.mint()
    answer = await api(running, "GET", "/api/connections", token=plain)
    assert answer.status_code == 403
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    assert 'scope="realtime:admin"' in answer.headers["www-authenticate"]
    answer = await api(running, "GET", "/api/info", token="not.a.token")
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]


async def test_connections_lists_and_filters(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running) as alice, connect(running, "bob", "chat:read"):
            assert (await call(alice, type="subscribe", id=1, channel="chat:a"))["type"] == "ack"
            answer = (await api(running, "GET", "/api/connections")).json()
            assert answer["truncated"] is False
            assert sorted(c["sub"] for c in answer["connections"]) == ["alice", "bob"]
            one = next(c for c in answer["connections"] if c["sub"] == "alice")
            assert set(one) == {"id", "sub", "client_id", "node", "transport", "remote", "connected_at",
                                "expires_at", "channels"}
            assert one["channels"] == ["chat:a"] and one["client_id"] == "chat-app"
            assert one["transport"] == "websocket" and one["remote"].startswith("127.0.0.1:")
            by_channel = (await api(running, "GET", "/api/connections", params={"channel": "chat:a"})).json()
            assert [c["sub"] for c in by_channel["connections"]] == ["alice"]
            by_sub = (await api(running, "GET", "/api/connections", params={"sub": "bob"})).json()
            assert [c["sub"] for c in by_sub["connections"]] == ["bob"]
            cut = (await api(running, "GET", "/api/connections", params={"limit": "1"})).json()
            assert len(cut["connections"]) == 1 and cut["truncated"] is True


async def test_disconnect_by_id_and_by_sub_with_code(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running) as alice, connect(running, "bob", "chat:read") as bob:
            listed = (await api(running, "GET", "/api/connections", params={"sub": "alice"})).json()
            conn_id = listed["connections"][0]["id"]
            answer = await api(running, "POST", "/api/disconnect", json={"id": conn_id, "code": 4010, "reason": "bye"})
            assert answer.json() == {"disconnected": 1}
            with pytest.raises(ConnectionClosed) as closed:
                await recv(alice)
            assert closed.value.reason.code == 4010 and closed.value.reason.reason == "bye"
            assert (await api(running, "POST", "/api/disconnect", json={"sub": "bob"})).json() == {"disconnected": 1}
            with pytest.raises(ConnectionClosed) as closed:
                await recv(bob)
            assert closed.value.reason.code == 4003


async def test_unsubscribe_tells_each_connection(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running) as a1, connect(running) as a2:
            for ws in (a1, a2):
                assert (await call(ws, type="subscribe", id=1, channel="chat:u"))["type"] == "ack"
            answer = await api(running, "POST", "/api/unsubscribe", json={"sub": "alice", "channel": "chat:u"})
            assert answer.json() == {"unsubscribed": 2}
            for ws in (a1, a2):
                assert await recv(ws) == {"type": "unsubscribed", "channel": "chat:u"}
            assert running.state.hub.subscriber_count("chat:u") == 0


async def test_history_channels_info(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running) as alice:
            assert (await call(alice, type="subscribe", id=1, channel="chat:h"))["type"] == "ack"
            for i in range(1, 4):
                await send(alice, type="publish", id=f"p{i}", channel="chat:h", data={"n": i})
                assert {(await recv(alice))["type"], (await recv(alice))["type"]} == {"message", "ack"}
            answer = (await api(running, "GET", "/api/history", params={"channel": "chat:h", "since": "1"})).json()
            assert answer == {"channel": "chat:h", "recovered": True, "top": 3, "messages": [
                {"seq": 2, "from": "alice", "data": {"n": 2}}, {"seq": 3, "from": "alice", "data": {"n": 3}}]}
            # The channel's subscribe scope suffices for history; another channel's does not.
            mine = await api(running, "GET", "/api/history", token=running.mint("bob", "chat:read"),
                             params={"channel": "chat:h", "limit": "1"})
            assert mine.status_code == 200 and [m["seq"] for m in mine.json()["messages"]] == [1]
            other = await api(running, "GET", "/api/history", token=running.mint("bob", "chat:read"),
                              params={"channel": "news:x"})
            assert other.status_code == 403
            channels = (await api(running, "GET", "/api/channels", params={"pattern": "chat:*"})).json()
            assert channels == {"channels": [{"channel": "chat:h", "subscribers": 1, "top_seq": 3}]}
            assert (await api(running, "GET", "/api/channels", params={"pattern": "news:*"})).json() == {"channels": []}
            info = (await api(running, "GET", "/api/info")).json()
            assert info["node"] == running.state.node and info["version"]
            assert [(n["node"], n["connections"]) for n in info["nodes"]] == [(running.state.node, 1)]
            assert info["nodes"][0]["uptime_s"] >= 0


@pytest.mark.parametrize(("method", "path", "kw"), [
    ("POST", "/api/disconnect", {"json": {}}),
    ("POST", "/api/disconnect", {"json": {"sub": "alice", "code": 1000}}),
    ("POST", "/api/disconnect", {"json": {"sub": "alice", "code": "4003"}}),
    ("POST", "/api/disconnect", {"json": {"sub": 5}}),
    ("POST", "/api/disconnect", {"json": {"sub": "a", "nope": 1}}),
    ("POST", "/api/disconnect", {"content": b"{", "headers": {"content-type": "application/json"}}),
    ("POST", "/api/disconnect", {"json": ["sub"]}),
    ("POST", "/api/unsubscribe", {"json": {"sub": "alice"}}),
    ("POST", "/api/revoke", {"json": {"client_id": "chat-app"}}),
    ("POST", "/api/revoke", {"json": {"sub": "alice", "issued_before": "now"}}),
    ("GET", "/api/connections", {"params": {"limit": "0"}}),
    ("GET", "/api/connections", {"params": {"limit": "x"}}),
    ("GET", "/api/connections", {"params": {"color": "red"}}),
    ("GET", "/api/history", {"params": {}}),
    ("GET", "/api/history", {"params": {"channel": "chat:x", "since": "-1"}}),
    ("GET", "/api/info", {"params": {"x": "1"}}),
])
async def test_bad_input_is_a_400(running: Running, method: str, path: str, kw: dict[str, Any]) -> None:
    answer = await api(running, method, path, **kw)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request" and answer.json()["error_description"]


async def test_revoke_closes_refuses_and_survives_a_restart(
        start_server: Callable[..., Any], make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    running = await start_server(settings)
    with trio.fail_after(20):
        old = running.mint()
        async with connect(running, "bob", "chat:read") as bob, connect(running) as alice:
            answer = await api(running, "POST", "/api/revoke", json={"sub": "alice"})
            assert answer.json() == {"revoked_families": 0, "closed": 1}
            with pytest.raises(ConnectionClosed) as closed:
                await recv(alice)
            assert closed.value.reason.code == 4003
            await call(bob, type="ping", id="still")  # bob is untouched
        # The old token is refused at the gate and at a bearer endpoint.
        assert (await api(running, "GET", "/api/history", token=old, params={"channel": "chat:x"})).status_code == 401
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(old)):
                pass
        assert rejected.value.status_code == 401
        running.stop()
        await running.stopped.wait()
        again = await start_server(settings)
        assert (await api(again, "GET", "/api/history", token=old, params={"channel": "chat:x"})).status_code == 401
        # A token issued after the cut-off (next second: iat is whole seconds) works.
        fresh = again.mint(now=time.time() + 1)
        assert (await api(again, "GET", "/api/history", token=fresh, params={"channel": "chat:x"})).status_code == 200


async def test_a_ticket_made_before_a_revoke_opens_nothing_after_it(running: Running) -> None:
    # The ticket holds the token's claims as they were: the POST /api/revoke
    # cut-off must still refuse it, on /sse and on the /ws handshake.
    with trio.fail_after(20):
        token = running.mint()
        tickets = []
        for _ in range(2):
            made = await api(running, "POST", "/api/ticket", token=token)
            assert made.status_code == 200, made.text
            tickets.append(made.json()["ticket"])
        assert (await api(running, "POST", "/api/revoke", json={"sub": "alice"})).status_code == 200
        stream = await api(running, "GET", "/sse", token="", params={"ticket": tickets[0], "channel": "chat:x"},
                           headers={"accept": "text/event-stream"})
        assert stream.status_code == 401 and "revoked" in stream.json()["error_description"]
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(running.url(f"/ws?ticket={tickets[1]}", "ws")):
                pass
        assert rejected.value.status_code == 401
