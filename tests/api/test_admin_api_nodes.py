"""The server API (SPEC §11) against two nodes on a real redis-server:
every operation acts on both nodes, history comes from the shared stream,
and a node that cannot answer makes the answer partial within the bound."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from realtime.config.settings import BrokerSettings, Settings
from tests.helpers.admin import api
from tests.helpers.redis import RedisServer, redis_node_settings
from tests.helpers.server import Running
from tests.helpers.ws import call, connect, recv, send


@pytest.fixture
async def nodes(start_server: Callable[..., Any], make_settings: Callable[..., Settings],
                redis: RedisServer) -> tuple[Running, Running]:
    return (await start_server(redis_node_settings(make_settings, redis)),
            await start_server(redis_node_settings(make_settings, redis)))


async def test_every_operation_reaches_both_nodes(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    with trio.fail_after(20):
        async with connect(a) as on_a, connect(b) as on_b, connect(b, "bob", "chat:read") as bob:
            for ws in (on_a, on_b):
                assert (await call(ws, type="subscribe", id=1, channel="chat:n"))["type"] == "ack"
            listed = (await api(a, "GET", "/api/connections", params={"sub": "alice"})).json()
            assert "partial" not in listed
            assert sorted(c["node"] for c in listed["connections"]) == sorted([a.state.node, b.state.node])
            assert all(c["channels"] == ["chat:n"] for c in listed["connections"])

            info = (await api(b, "GET", "/api/info")).json()
            assert info["node"] == b.state.node
            assert sorted((n["node"], n["connections"]) for n in info["nodes"]) == sorted(
                [(a.state.node, 1), (b.state.node, 2)])

            await send(on_a, type="publish", id="p", channel="chat:n", data="hello")
            assert (await recv(on_b))["data"] == "hello"  # both nodes have seen seq 1
            assert {(await recv(on_a))["type"], (await recv(on_a))["type"]} == {"ack", "message"}
            channels = (await api(a, "GET", "/api/channels")).json()
            assert channels == {"channels": [{"channel": "chat:n", "subscribers": 2, "top_seq": 1}]}
            history = (await api(b, "GET", "/api/history", params={"channel": "chat:n"})).json()
            assert history == {"channel": "chat:n", "messages": [{"seq": 1, "from": "alice", "data": "hello"}],
                               "recovered": True, "top": 1}

            answer = await api(a, "POST", "/api/unsubscribe", json={"sub": "alice", "channel": "chat:n"})
            assert answer.json() == {"unsubscribed": 2}
            assert await recv(on_b) == {"type": "unsubscribed", "channel": "chat:n"}

            # Disconnect by id reaches the node that holds the connection.
            bobs = (await api(a, "GET", "/api/connections", params={"sub": "bob"})).json()["connections"]
            answer = await api(a, "POST", "/api/disconnect", json={"id": bobs[0]["id"]})
            assert answer.json() == {"disconnected": 1}
            with pytest.raises(ConnectionClosed) as closed:
                await recv(bob)
            assert closed.value.reason.code == 4003


async def test_revoke_on_one_node_closes_on_the_other(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    with trio.fail_after(20):
        async with connect(b) as on_b, connect(b) as again_b:
            started = time.perf_counter()
            answer = await api(a, "POST", "/api/revoke", json={"sub": "alice", "client_id": "chat-app"})
            assert answer.json() == {"revoked_families": 0, "closed": 2}
            for ws in (on_b, again_b):
                with pytest.raises(ConnectionClosed) as closed:
                    await recv(ws)
                assert closed.value.reason.code == 4003
            print(f"revoke on A to the last 4003 on B: {(time.perf_counter() - started) * 1000:.1f} ms")
        # B refuses the old tokens from now on.
        old = a.mint()
        assert (await api(b, "GET", "/api/history", token=old, params={"channel": "chat:x"})).status_code == 401


async def test_a_node_that_cannot_answer_makes_the_answer_partial(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    stuck = trio.Event()

    async def never(op: str, args: dict[str, Any]) -> dict[str, Any]:
        await stuck.wait()
        return {}

    b.server.broker.on_control = never  # B hangs on every request
    a.server.broker.requests.timeout = 0.5
    with trio.fail_after(10):
        async with connect(a):
            started = trio.current_time()
            answer = (await api(a, "GET", "/api/connections")).json()
            assert answer["partial"] is True and [c["node"] for c in answer["connections"]] == [a.state.node]
            assert trio.current_time() - started < 5
    stuck.set()


async def test_an_idempotency_key_holds_across_nodes(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    token = a.mint()
    with trio.fail_after(20):
        async with connect(b, "bob", "chat:read") as bob:
            assert (await call(bob, type="subscribe", id=1, channel="chat:k"))["type"] == "ack"
            async with httpx.AsyncClient() as client:
                body = {"channel": "chat:k", "data": "once", "idempotency_key": "order-7"}
                headers = {"authorization": f"Bearer {token}"}
                first = await client.post(a.url("/api/publish"), json=body, headers=headers)
                again = await client.post(b.url("/api/publish"), json=body, headers=headers)
                assert first.status_code == again.status_code == 200
                assert again.json() == first.json() and first.json()["seq"] == 1
                plain = await client.post(b.url("/api/publish"), json={"channel": "chat:k", "data": "next"},
                                          headers=headers)
                assert plain.json()["seq"] == 2
            assert [(await recv(bob))["data"] for _ in range(2)] == ["once", "next"]


async def test_a_node_away_during_a_revoke_learns_it_from_the_broker(
        start_server: Callable[..., Any], make_settings: Callable[..., Settings], redis: RedisServer,
        tmp_path: Path) -> None:
    """B has a store of its own (its own state dir, A's signing keys): it was
    not running when alice was revoked on A, and refuses her old token once
    it starts, through the cut-off kept in Redis."""
    broker = BrokerSettings(url=redis.url, node_ttl=1.0)
    a = await start_server(make_settings(broker=broker))
    old = a.mint()
    with trio.fail_after(20):
        answer = await api(a, "POST", "/api/revoke", json={"sub": "alice"})
        assert answer.json() == {"revoked_families": 0, "closed": 0}
        base = make_settings(broker=broker)
        b_dir = tmp_path / "state-b"
        shutil.copytree(base.server.state_dir / "keys", b_dir / "keys")
        b = await start_server(attrs.evolve(base, server=attrs.evolve(base.server, state_dir=b_dir)))
        assert b.state.store.path.parent == b_dir
        assert (await api(b, "GET", "/api/history", token=old, params={"channel": "chat:x"})).status_code == 401
        fresh = b.mint(now=time.time() + 1)
        assert (await api(b, "GET", "/api/history", token=fresh, params={"channel": "chat:x"})).status_code == 200
