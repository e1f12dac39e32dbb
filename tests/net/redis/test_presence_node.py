"""Presence on one node with real clients (issue 12): GET /api/presence and
its scope checks, the member cap, and a client that vanishes without a
close frame (it stops answering pings) leaving within the keep-alive
timeout.  Waits are bounded and wait on messages, never on sleeps."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import trio

from realtime.config.settings import ChannelRule
from tests.helpers.server import Running
from tests.helpers.settings import CHANNELS, USERS
from tests.helpers.ws import RawClient, call, connect, recv

RULES = (
    ChannelRule("room:*", subscribe_scope="chat:read", publish_scope="chat:write", history=10,
                presence=True, join_leave=True),
    ChannelRule("quiet:*", subscribe_scope="chat:read", publish_scope="chat:write", history=10),
    *CHANNELS,
)
PING, PONG = 0.3, 0.3


async def start(start_server: Any, make_settings: Any, **ws: Any) -> Running:
    users = dict(USERS)
    users["alice"] = attrs.evolve(users["alice"], display_name="Alice A.")
    return await start_server(make_settings(channels=RULES, users=users, websocket=ws))  # type: ignore[no-any-return]


async def get_presence(running: Running, channel: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.get(running.url("/api/presence"), params={"channel": channel}, headers=headers)


async def test_api_presence_scope_checks_and_cap(start_server: Any, make_settings: Any) -> None:
    running = await start(start_server, make_settings, ping_interval=0, max_presence_members=2)
    with trio.fail_after(15):
        async with connect(running) as alice, connect(running, "bob", "chat:read") as bob, \
                connect(running, "carol", "chat:read") as carol:
            for ws in (alice, bob, carol):
                assert (await call(ws, type="subscribe", id=1, channel="room:1"))["type"] == "ack"
            got = await get_presence(running, "room:1", running.mint("bob", "chat:read"))
            assert got.status_code == 200 and got.headers["content-type"] == "application/json"
            assert got.json() == {"type": "presence", "channel": "room:1", "truncated": True, "members": [
                {"sub": "alice", "connections": 1, "display_name": "Alice A."}, {"sub": "bob", "connections": 1}]}
            over_ws = await call(carol, type="presence", id=9, channel="room:1")
            assert over_ws["truncated"] is True and len(over_ws["members"]) == 2

    missing = await get_presence(running, "room:1", None)
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]
    bad = await get_presence(running, "room:1", "not-a-token")
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    scope = await get_presence(running, "room:1", running.mint("carol", "profile"))
    assert scope.status_code == 403 and 'error="insufficient_scope"' in scope.headers["www-authenticate"]
    disabled = await get_presence(running, "quiet:1", running.mint("bob", "chat:read"))
    assert disabled.status_code == 400 and disabled.json()["error"] == "presence_disabled"
    unknown = await get_presence(running, "nope:1", running.mint("bob", "chat:read"))
    assert unknown.status_code == 404
    async with httpx.AsyncClient() as client:
        none = await client.get(running.url("/api/presence"),
                                headers={"authorization": f"Bearer {running.mint('bob', 'chat:read')}"})
    assert none.status_code == 400 and none.json()["error"] == "invalid_request"


async def test_dropped_client_leaves_within_keepalive_timeout(start_server: Any, make_settings: Any) -> None:
    debounce = 0.2  # [websocket] join_leave_debounce holds a leave this long
    running = await start(start_server, make_settings, ping_interval=PING, pong_timeout=PONG,
                          join_leave_debounce=debounce)
    with trio.fail_after(15):
        async with connect(running, "bob", "chat:read") as bob:
            assert (await call(bob, type="subscribe", id=1, channel="room:2"))["type"] == "ack"
            # alice connects raw, subscribes, then goes silent: never reads
            # again, never answers a ping (a pulled cable; no FIN, no close).
            ghost = await RawClient.open(running, running.mint())
            await ghost.send(type="subscribe", id=1, channel="room:2")
            assert (await ghost.until_id(1))["type"] == "ack"
            assert await recv(bob) == {"type": "join", "channel": "room:2", "sub": "alice"}
            silent_from = trio.current_time()
            # bob answers pings (trio-websocket does) so only the ghost goes.
            assert await recv(bob) == {"type": "leave", "channel": "room:2", "sub": "alice"}
            assert trio.current_time() - silent_from <= PING + PONG + debounce + 0.5
            assert (await call(bob, type="presence", id=2, channel="room:2"))["members"] == [
                {"sub": "bob", "connections": 1}]
            await trio.aclose_forcefully(ghost.stream)
