"""Webhooks across two nodes on a real redis-server: channel_occupied and
channel_vacated (and join/leave) are told once for the whole cluster, by
the node whose subscriber made the change."""

from __future__ import annotations

from typing import Any, Callable

import trio

from realtime.config.settings import BrokerSettings, ChannelRule, Settings, WebhookSettings
from tests.helpers.redis import RedisServer
from tests.helpers.settings import CHANNELS
from tests.helpers.webhooks import Receiver
from tests.helpers.ws import call, connect, recv

SECRET = b"cluster-hook-secret"


async def test_occupied_and_vacated_once_across_nodes(nursery: trio.Nursery, start_server: Callable[..., Any],
                                                      make_settings: Callable[..., Settings],
                                                      redis: RedisServer) -> None:
    receiver = Receiver(SECRET)
    await receiver.start(nursery)
    rules = (ChannelRule("room:*", subscribe_scope="chat:read", publish_scope="chat:write", join_leave=True),
             *CHANNELS)
    hook = WebhookSettings(url=receiver.url, secret=SECRET,
                           events=("channel_occupied", "channel_vacated", "join", "leave"))

    def settings() -> Settings:
        return make_settings(channels=rules, webhooks=(hook,), broker=BrokerSettings(url=redis.url, node_ttl=1.0))

    a, b = await start_server(settings()), await start_server(settings())
    with trio.fail_after(20):
        async with connect(a) as on_a:
            assert (await call(on_a, type="subscribe", id=1, channel="room:1"))["type"] == "ack"
            await receiver.wait_for(2)
            async with connect(b, "bob", "chat:read") as on_b:
                assert (await call(on_b, type="subscribe", id=1, channel="room:1"))["type"] == "ack"
                assert (await recv(on_a))["type"] == "join"
                await receiver.wait_for(3)
                assert (await call(on_a, type="unsubscribe", id=2, channel="room:1"))["type"] == "ack"
                assert (await recv(on_b))["type"] == "leave"
                await receiver.wait_for(4)
        got = await receiver.wait_for(6)
    assert receiver.bad_signatures == 0
    seen = [(r.event["type"], r.event["data"].get("sub"), r.event["node"]) for r in got]
    assert seen == [
        ("channel_occupied", None, a.state.node), ("join", "alice", a.state.node),
        ("join", "bob", b.state.node),
        ("leave", "alice", a.state.node),
        ("leave", "bob", b.state.node), ("channel_vacated", None, b.state.node),
    ]
