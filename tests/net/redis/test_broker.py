"""Scale-out through Redis (issue 9) and presence across nodes (issue 12):
a real redis-server on a free loopback port, two (or three) realtime nodes
sharing it and one state_dir.  Every wait is bounded and waits on a
message or an event, never on a sleep."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import attrs
import coredis
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from realtime.net.redis import lua
from realtime.config.settings import ChannelRule, Settings
from realtime.tokens.keyring import KeyRing, issue_access_token
from tests.helpers.server import Running, ServerProcess, write_conf
from tests.helpers.settings import CHANNELS, USERS
from tests.helpers.redis import RedisServer, free_port, redis_node_settings
from tests.helpers.tokens import bearer
from tests.helpers.ws import api_publish, call, connect, quiet, recv, send

NODE_TTL = 1.0  # seconds; a dead node's members leave within 1.25 * NODE_TTL

RULES = (
    ChannelRule("room:*", subscribe_scope="chat:read", publish_scope="chat:write", history=10,
                presence=True, join_leave=True),
    *CHANNELS,
)


@pytest.fixture
def node_settings(make_settings: Callable[..., Settings], redis: RedisServer) -> Callable[..., Settings]:
    users = dict(USERS)
    users["alice"] = attrs.evolve(users["alice"], display_name="Alice A.")

    def build(**kw: Any) -> Settings:
        return redis_node_settings(make_settings, redis, NODE_TTL, channels=RULES, users=users, **kw)

    return build


@pytest.fixture
async def nodes(start_server: Callable[..., Any], node_settings: Callable[..., Settings]) -> tuple[Running, Running]:
    """Two nodes, one Redis, one state_dir (so one key ring and one store)."""
    a = await start_server(node_settings())
    b = await start_server(node_settings())
    return a, b


def broker(node: Running) -> Any:
    return node.server.broker


async def collect(ws: Any, count: int) -> list[dict[str, Any]]:
    return [await recv(ws) for _ in range(count)]


# ---------------------------------------------------------------------------
# delivery, order, history


async def test_publish_on_a_reaches_subscriber_on_b_in_order(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    with trio.fail_after(20):
        async with connect(b, "bob", "chat:read") as bob, connect(a) as alice, connect(a, "carol", "chat:read") as carol:
            assert await call(bob, type="subscribe", id=1, channel="chat:x") == {"type": "ack", "id": 1}
            assert await call(carol, type="subscribe", id=1, channel="chat:x") == {"type": "ack", "id": 1}
            for i in range(1, 101):
                await send(alice, type="publish", id=i, channel="chat:x", data={"n": i})
            acks = await collect(alice, 100)
            assert [m["seq"] for m in acks] == list(range(1, 101))
            for ws in (bob, carol):
                got = await collect(ws, 100)
                assert got == [{"type": "message", "channel": "chat:x", "seq": i, "from": "alice", "data": {"n": i}}
                               for i in range(1, 101)]
                await quiet(ws)
            # /api/publish on B: numbered after A's, reaches both nodes.
            response = await api_publish(b, "chat:x", "via api", a.mint())
            assert response.status_code == 200 and response.json()["seq"] == 101
            assert response.json()["delivered"] == 2  # bob on B + carol on A, as the nodes reported them
            assert (await recv(bob))["seq"] == 101
            assert (await recv(carol))["seq"] == 101


async def test_since_on_b_replays_what_a_published(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    with trio.fail_after(20):
        async with connect(a) as alice, connect(b, "bob", "chat:read news:read") as bob:
            for i in range(1, 6):
                assert (await call(alice, type="publish", id=i, channel="chat:h", data=i))["seq"] == i
            assert await call(bob, type="subscribe", id="s", channel="chat:h", since=2) == {
                "type": "ack", "id": "s", "recovered": True}
            assert [m["seq"] for m in await collect(bob, 3)] == [3, 4, 5]
            await send(alice, type="publish", id=6, channel="chat:h", data=6)
            assert (await recv(bob))["seq"] == 6
            await quiet(bob)

            # news:* keeps 5: since 0 after 8 messages is not fully recovered.
            for i in range(1, 9):
                assert (await api_publish(a, "news:x", i, a.mint(scope="news:write"))).json()["seq"] == i
            assert await call(bob, type="subscribe", id="n", channel="news:x", since=0) == {
                "type": "ack", "id": "n", "recovered": False}
            assert [m["data"] for m in await collect(bob, 5)] == [4, 5, 6, 7, 8]
            # A position this numbering never issued.
            async with connect(b, "bob", "chat:read") as bob2:
                assert await call(bob2, type="subscribe", id="z", channel="chat:h", since=99) == {
                    "type": "ack", "id": "z", "recovered": False}
                await quiet(bob2)


# ---------------------------------------------------------------------------
# revocations


async def test_revoke_on_a_closes_socket_on_b_with_4003_and_late_node_knows(
    nodes: tuple[Running, Running], start_server: Callable[..., Any], node_settings: Callable[..., Settings]
) -> None:
    a, b = nodes
    token, claims = issue_access_token(
        b.state.keyring, issuer=b.state.settings.issuer, audience=b.state.settings.audience,
        sub="bob", client_id="chat-app", scope=["chat:read"], ttl=60)
    with trio.fail_after(10):
        async with open_websocket_url(b.url("/ws", "ws"), extra_headers=bearer(token)) as ws:
            assert (await recv(ws))["type"] == "welcome"
            started = trio.current_time()
            a.state.revoke_access(claims.jti, float(claims.exp))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 4003
            assert trio.current_time() - started < 1.0
        assert claims.jti in b.state.revoked
        c = await start_server(node_settings())
        assert claims.jti in c.state.revoked  # loaded from Redis at connect


# ---------------------------------------------------------------------------
# faults


async def test_redis_restart_mid_run_delivery_resumes(nodes: tuple[Running, Running], redis: RedisServer) -> None:
    a, b = nodes
    with trio.fail_after(30):
        async with connect(a) as alice, connect(b, "bob", "chat:read") as bob:
            assert await call(bob, type="subscribe", id=1, channel="chat:r") == {"type": "ack", "id": 1}
            for i in range(1, 4):
                assert (await call(alice, type="publish", id=i, channel="chat:r", data=i))["seq"] == i
            assert [m["seq"] for m in await collect(bob, 3)] == [1, 2, 3]

            await trio.to_thread.run_sync(redis.stop)
            # Every node notices (its pub/sub connection ends) before we go on.
            for node in (a, b):
                await broker(node).state.lost.wait()
            failed = await call(alice, type="publish", id="down", channel="chat:r", data="x")
            assert failed["type"] == "error" and failed["code"] == "unavailable"
            response = await api_publish(a, "chat:r", "x", a.mint())
            assert response.status_code == 503 and response.json()["error"] == "unavailable"
            await quiet(bob)  # subscribers stay connected
            await quiet(alice)

            await trio.to_thread.run_sync(redis.start)  # same port, empty (no persistence)
            for node in (a, b):
                await broker(node).state.connected.wait()
            # Numbering goes on above what clients saw: B raised the counter.
            for i in range(4, 6):
                assert (await call(alice, type="publish", id=i, channel="chat:r", data=i))["seq"] == i
            assert [(m["seq"], m["data"]) for m in await collect(bob, 2)] == [(4, 4), (5, 5)]
            await quiet(bob)


async def test_pubsub_cut_gap_filled_once_in_order(nodes: tuple[Running, Running], redis: RedisServer) -> None:
    """Kill every pub/sub connection while a third party keeps publishing:
    the subscriber on B gets every message exactly once, in order."""
    a, b = nodes
    total = 60
    with trio.fail_after(30):
        async with connect(b, "bob", "chat:read") as bob, coredis.Redis.from_url(redis.url) as raw:
            assert await call(bob, type="subscribe", id=1, channel="chat:g") == {"type": "ack", "id": 1}
            publish = raw.register_script(lua.PUBLISH)
            name = b"chat:g"
            for i in range(1, total + 1):
                body_prefix = b'{"type":"message","channel":"chat:g","seq":'
                body_suffix = b',"from":"ext","data":' + str(i).encode() + b"}"
                await publish(keys=[lua.PREFIX_COUNTER + name, lua.PREFIX_STREAM + name,
                                    lua.PREFIX_CHANNEL + name, lua.PREFIX_COUNTS + name],
                              args=[body_prefix, body_suffix, 100, 60_000])
                if i == total // 3:
                    await raw.client_kill(type_=coredis.PureToken.PUBSUB)
            got = await collect(bob, total)
            assert [(m["seq"], m["data"]) for m in got] == [(i, i) for i in range(1, total + 1)]
            await quiet(bob)
    assert broker(b).state.reconnects >= 1


def test_unreachable_redis_at_start_exits_1(tmp_path: Path) -> None:
    config = write_conf(tmp_path)
    port = free_port()
    config.write_text(config.read_text() + f'\n[broker]\nurl = "redis://127.0.0.1:{port}/0"\n')
    done = subprocess.run([sys.executable, "-m", "realtime", "serve", "-c", str(config)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert "cannot start" in done.stderr and f"redis://127.0.0.1:{port}/0" in done.stderr, done.stderr


# ---------------------------------------------------------------------------
# presence across nodes (issue 12)


async def test_presence_across_nodes(nodes: tuple[Running, Running]) -> None:
    a, b = nodes
    channel = "room:1"
    with trio.fail_after(20):
        async with connect(a) as alice:
            assert await call(alice, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
            async with connect(b, "bob", "chat:read") as bob:
                assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                # The join crosses nodes; nobody hears their own.
                assert await recv(alice) == {"type": "join", "channel": channel, "sub": "bob"}
                await quiet(bob)
                expected = {"type": "presence", "channel": channel, "members": [
                    {"sub": "alice", "connections": 1, "display_name": "Alice A."},
                    {"sub": "bob", "connections": 1}]}
                assert await call(bob, type="presence", id=2, channel=channel) == {**expected, "id": 2}
                async with httpx.AsyncClient() as http:
                    got = await http.get(a.url("/api/presence"), params={"channel": channel},
                                         headers={"authorization": f"Bearer {a.mint('bob', 'chat:read')}"})
                assert got.status_code == 200 and got.json() == expected

                async with connect(b) as alice2:  # alice's second connection, on the other node
                    assert await call(alice2, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                    members = (await call(bob, type="presence", id=3, channel=channel))["members"]
                    assert members[0] == {"sub": "alice", "connections": 2, "display_name": "Alice A."}
                await quiet(bob)  # one of two left: no leave
            # bob's last connection went
            assert await recv(alice) == {"type": "leave", "channel": channel, "sub": "bob"}


async def test_sigkilled_node_loses_its_members_within_bound(
    tmp_path: Path, nursery: trio.Nursery, redis: RedisServer, start_server: Callable[..., Any],
    node_settings: Callable[..., Settings],
) -> None:
    config = write_conf(tmp_path)
    config.write_text(config.read_text() + (
        '\n[[channel]]\npattern = "room:*"\nsubscribe_scope = "chat:read"\npresence = true\njoin_leave = true\n'
        f'\n[broker]\nurl = "{redis.url}"\nnode_ttl = "{NODE_TTL}s"\n'))
    proc, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    state_dir = tmp_path / "conf" / "var"
    ring = KeyRing.load(state_dir / "keys")
    token, _ = issue_access_token(ring, issuer="https://localhost", audience="https://localhost", sub="alice",
                                  client_id="chat-app", scope=["chat:read"], ttl=60)
    a = await start_server(node_settings(server={"state_dir": state_dir}))
    channel = "room:k"
    try:
        with trio.fail_after(20):
            async with connect(a, "bob", "chat:read") as bob:
                assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                host, port = bound["http"].rsplit(":", 1)
                async with open_websocket_url(f"ws://{host}:{port}/ws", extra_headers=bearer(token)) as victim:
                    assert (await recv(victim))["type"] == "welcome"
                    assert await call(victim, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                    assert await recv(bob) == {"type": "join", "channel": channel, "sub": "alice"}
                    proc.proc.send_signal(signal.SIGKILL)
                    killed = trio.current_time()
                    assert await recv(bob) == {"type": "leave", "channel": channel, "sub": "alice"}
                    elapsed = trio.current_time() - killed
                    assert elapsed <= NODE_TTL * 1.25 + 1.0, elapsed  # the bound + scheduling noise on a busy CI
                    members = (await call(bob, type="presence", id=2, channel=channel))["members"]
                    assert members == [{"sub": "bob", "connections": 1}]
    finally:
        if proc.proc.returncode is None:
            proc.proc.kill()
        await proc.proc.wait()
