"""Presence over real sockets (SPEC §5a): the WebSocket ``presence``
request, and ``join``/``leave`` for a ``sub``'s first and last connection
(by unsubscribe, close, or a refresh that loses the scope).  GET
/api/presence and dropped networks are in tests/net/redis/test_presence_node.py."""

from __future__ import annotations

import attrs
import pytest
import trio

from realtime.config.settings import ChannelRule
from tests.helpers.server import Running
from tests.helpers.settings import CHANNELS, USERS
from tests.helpers.ws import call, connect, quiet, recv, send

PRESENCE_RULES = (
    ChannelRule("room:*", subscribe_scope="chat:read", publish_scope="chat:write", history=10,
                presence=True, join_leave=True),
    ChannelRule("quiet:*", subscribe_scope="chat:read", publish_scope="chat:write", history=10),
    *CHANNELS,
)


@pytest.fixture
async def presence_server(start_server, make_settings) -> Running:
    users = dict(USERS)
    users["alice"] = attrs.evolve(users["alice"], display_name="Alice A.")
    return await start_server(make_settings(channels=PRESENCE_RULES, users=users))


async def test_presence_and_join_leave(presence_server: Running) -> None:
    running = presence_server
    channel = "room:1"
    with trio.fail_after(15):
        async with connect(running, "bob", "chat:read") as bob:
            assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
            assert await call(bob, type="presence", id=2, channel=channel) == {
                "type": "presence", "id": 2, "channel": channel, "members": [{"sub": "bob", "connections": 1}]}

            async with connect(running, "alice", "chat:read chat:write") as alice1:
                assert await call(alice1, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                assert await recv(bob) == {"type": "join", "channel": channel, "sub": "alice"}
                await quiet(alice1)  # no join for oneself

                async with connect(running, "alice", "chat:read") as alice2:
                    # alice's second connection: no second join.
                    assert await call(alice2, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                    await quiet(bob)
                    await quiet(alice1)
                    assert await call(bob, type="presence", id=3, channel=channel) == {
                        "type": "presence", "id": 3, "channel": channel, "members": [
                            {"sub": "bob", "connections": 1},
                            {"sub": "alice", "connections": 2, "display_name": "Alice A."},
                        ]}

                    # One of alice's connections leaves: no leave yet.
                    assert await call(alice1, type="unsubscribe", id=2, channel=channel) == {"type": "ack", "id": 2}
                    await quiet(bob)
                # alice2 closed: her last connection is gone.
                assert await recv(bob) == {"type": "leave", "channel": channel, "sub": "alice"}
                assert (await call(bob, type="presence", id=4, channel=channel))["members"] == [
                    {"sub": "bob", "connections": 1}]

                # join/leave are not messages: they took no seq.
                assert await call(alice1, type="publish", id=3, channel=channel, data="hi") == {
                    "type": "ack", "id": 3, "seq": 1}
                assert (await recv(bob))["seq"] == 1

            # Presence refused where it is not enabled or not allowed.
            disabled = await call(bob, type="presence", id=5, channel="quiet:1")
            assert disabled["type"] == "error" and disabled["code"] == "presence_disabled"
            async with connect(running, "alice", "news:read") as outsider:
                refused = await call(outsider, type="presence", id=1, channel=channel)
                assert refused["type"] == "error" and refused["code"] == "forbidden"
                assert (await call(outsider, type="presence", id=2, channel="nowhere:1"))["code"] == "unknown_channel"
            await quiet(bob)


async def test_join_leave_are_not_replayed(presence_server: Running) -> None:
    running = presence_server
    channel = "room:replay"
    with trio.fail_after(10):
        async with connect(running, "alice", "chat:read chat:write") as alice:
            assert await call(alice, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
            async with connect(running, "bob", "chat:read") as bob:
                assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
            assert await recv(alice) == {"type": "join", "channel": channel, "sub": "bob"}
            assert await recv(alice) == {"type": "leave", "channel": channel, "sub": "bob"}
            await send(alice, type="publish", id=2, channel=channel, data="only message")
            assert (await recv(alice))["seq"] == 1
            assert await recv(alice) == {"type": "ack", "id": 2, "seq": 1}
            async with connect(running, "bob", "chat:read") as bob:
                await send(bob, type="subscribe", id="s", channel=channel, since=0)
                assert await recv(bob) == {"type": "ack", "id": "s", "recovered": True}
                replayed = await recv(bob)
                assert (replayed["type"], replayed["seq"], replayed["data"]) == ("message", 1, "only message")
                await quiet(bob)


async def test_leave_on_close_and_on_refresh(presence_server: Running) -> None:
    running = presence_server
    channel = "room:2"
    with trio.fail_after(10):
        async with connect(running, "bob", "chat:read") as bob:
            assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
            async with connect(running, "alice", "chat:read news:read") as alice:
                assert await call(alice, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                assert await recv(bob) == {"type": "join", "channel": channel, "sub": "alice"}
                # A refresh that loses chat:read drops the subscription: a leave.
                await send(alice, type="refresh", id=2, token=running.mint("alice", "news:read"))
                assert (await recv(alice))["type"] == "refreshed"
                assert (await recv(alice))["code"] == "subscription_revoked"
                assert await recv(bob) == {"type": "leave", "channel": channel, "sub": "alice"}
            async with connect(running, "alice", "chat:read") as alice:
                assert await call(alice, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                assert await recv(bob) == {"type": "join", "channel": channel, "sub": "alice"}
            # Closing the socket (no unsubscribe) is a leave as well.
            assert await recv(bob) == {"type": "leave", "channel": channel, "sub": "alice"}
            await quiet(bob)
