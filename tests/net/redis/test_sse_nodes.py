"""SSE across two nodes on a real redis-server (SPEC §13): resume with
Last-Event-ID on the other node and after a restart, tickets single use
across nodes, and a refresh that reaches another node."""

from __future__ import annotations

from typing import Any, Callable

import httpx
import pytest
import trio

from realtime.config.settings import Settings
from realtime.protocol.close import CloseCode
from tests.helpers.redis import RedisServer, redis_node_settings
from tests.helpers.server import Running
from tests.helpers.sse import open_stream, sse_url
from tests.helpers.ws import api_publish


@pytest.fixture
def node_settings(make_settings: Callable[..., Settings], redis: RedisServer) -> Callable[..., Settings]:
    def build() -> Settings:
        return redis_node_settings(make_settings, redis)
    return build


async def test_resume_on_the_other_node_misses_nothing_and_repeats_nothing(
        start_server: Callable[..., Any], node_settings: Callable[..., Settings]) -> None:
    a = await start_server(node_settings())
    b = await start_server(node_settings())
    token = a.mint()
    with trio.fail_after(30):
        async with open_stream(a, "chat:r", "chat:s", token=token) as stream:
            assert (await stream.next()).name == "welcome"
            for n in range(4):
                await api_publish(b, "chat:r" if n % 2 else "chat:s", n, token)
            got = [await stream.next() for _ in range(4)]
            last_id = got[-1].id
        assert last_id == "chat:r=2,chat:s=2"
        for n in range(4, 10):  # published while the client is away, on both nodes
            await api_publish(a if n % 2 else b, "chat:r" if n % 2 else "chat:s", n, token)
        async with open_stream(b, "chat:r", "chat:s", token=token, headers={"last-event-id": last_id}) as stream:
            assert (await stream.next()).name == "welcome"
            assert (await stream.next()).data == {"recovered": True}
            replayed = [await stream.next() for _ in range(6)]
            await api_publish(a, "chat:s", "live", token)
            live = await stream.next()
    by_channel = {c: [e.data["data"] for e in replayed if e.data["channel"] == c] for c in ("chat:r", "chat:s")}
    assert by_channel == {"chat:r": [5, 7, 9], "chat:s": [4, 6, 8]}
    assert live.data["data"] == "live" and live.data["seq"] == 6 and live.id == "chat:r=5,chat:s=6"


async def test_resume_after_a_restart_where_redis_keeps_the_history(
        start_server: Callable[..., Any], node_settings: Callable[..., Settings]) -> None:
    a = await start_server(node_settings())
    token = a.mint()
    with trio.fail_after(30):
        async with open_stream(a, "chat:k", token=token) as stream:
            await stream.next()
            await api_publish(a, "chat:k", 1, token)
            last_id = (await stream.next()).id
        await api_publish(a, "chat:k", 2, token)
        a.stop()
        await a.stopped.wait()
        again = await start_server(node_settings())
        async with open_stream(again, "chat:k", token=token, last_event_id=last_id) as stream:
            await stream.next()
            assert (await stream.next()).data == {"recovered": True}
            replayed = await stream.next()
    assert replayed.data["data"] == 2 and replayed.id == "chat:k=2"


async def test_a_ticket_is_single_use_across_nodes(start_server: Callable[..., Any],
                                                   node_settings: Callable[..., Settings]) -> None:
    a = await start_server(node_settings())
    b = await start_server(node_settings())
    token = a.mint()
    async with httpx.AsyncClient() as client:
        answer = await client.post(a.url("/api/ticket"), headers={"authorization": f"Bearer {token}"})
        ticket = answer.json()["ticket"]
        async with open_stream(b, "chat:t", ticket=ticket, client=client) as stream:  # issued on a, used on b
            assert (await stream.next()).data["sub"] == "alice"
        for node in (a, b):
            spent = await client.get(sse_url(node, "chat:t", ticket=ticket))
            assert spent.status_code == 401, spent.text


async def test_a_refresh_sent_to_the_other_node_reaches_the_stream(
        start_server: Callable[..., Any], node_settings: Callable[..., Settings]) -> None:
    a = await start_server(node_settings())
    b = await start_server(node_settings())
    first = a.mint(ttl=60)
    with trio.fail_after(30):
        async with open_stream(a, "chat:f", token=first) as stream, httpx.AsyncClient() as client:
            welcome = await stream.next()
            url = b.url(f"/api/streams/{welcome.data['stream']}/refresh")  # the stream lives on a
            foreign = await client.post(url, json={"token": b.mint(sub="bob", scope="chat:read")})
            assert foreign.status_code == 403, foreign.text
            later = b.mint(ttl=600)
            answer = await client.post(url, json={"token": later})
            assert answer.status_code == 200, answer.text
            refreshed = await stream.next()
            assert refreshed.name == "refreshed" and refreshed.data["expires_at"] == answer.json()["expires_at"]
            (conn,) = a.state.hub.connections.by_sub("alice")
            assert conn.exp == answer.json()["expires_at"] > welcome.data["expires_at"]
            conn.withdraw(CloseCode.GOING_AWAY, "test")
            assert (await stream.next()).data == {"code": CloseCode.GOING_AWAY}
        # Once the stream is gone, its id is unknown on every node.
        for node in (a, b):
            async with httpx.AsyncClient() as client:
                gone = await client.post(node.url(f"/api/streams/{welcome.data['stream']}/refresh"),
                                         json={"token": later})
            assert gone.status_code == 404, gone.text
