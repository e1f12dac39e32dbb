"""The broker seam: each protocol declares only what its kind can serve,
and the hub picks its paths by the broker it holds."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import trio

from realtime.config.settings import WebSocketSettings
from realtime.hub import Broker, ChannelFeed, Hub, HubError, InProcessBroker, RemoteBroker
from realtime.hub.broker import Replay
from tests.helpers.hub import RULES, FakeConn, FakeRemote, members


def test_protocols_share_only_the_feed() -> None:
    local, remote = members(Broker), members(RemoteBroker)
    assert local & remote == members(ChannelFeed) | {"remote"}
    assert {"publish", "replay", "bind"} <= local - remote
    assert {"publish_async", "prepare", "attach", "report", "presence"} <= remote - local


def test_in_process_broker_serves_broker_and_nothing_remote() -> None:
    broker = InProcessBroker()
    for name in members(Broker):
        assert hasattr(broker, name), name
    for name in members(RemoteBroker) - members(Broker):
        assert not hasattr(broker, name), name
    for name in ("publish", "replay", "last_seq", "watch", "unwatch", "retain", "bind"):
        assert not inspect.iscoroutinefunction(getattr(broker, name)), name


def test_hub_binds_a_local_broker_and_attaches_a_remote_one() -> None:
    bound: list[Any] = []

    class Recording(InProcessBroker):
        def bind(self, deliver: Any) -> None:
            bound.append(deliver)
            super().bind(deliver)

    hub = Hub(RULES, WebSocketSettings(), Recording())
    assert not hub.remote and bound == [hub.deliver]

    remote = FakeRemote()
    remote_hub = Hub(RULES, WebSocketSettings(), remote)  # type: ignore[arg-type]
    assert remote_hub.remote and remote.hub is remote_hub


async def test_each_hub_refuses_the_other_kinds_path() -> None:
    """A programming error, not a client's: caught in tests, never sent."""
    local = Hub(RULES, WebSocketSettings())
    conn = FakeConn()
    with pytest.raises(TypeError):
        await local.subscribe_async(conn, "chat:x")
    with pytest.raises(TypeError):
        await local.publish_async("chat:x", 1, from_sub="alice", scopes=conn.scopes)
    remote = Hub(RULES, WebSocketSettings(), FakeRemote())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        remote.publish("chat:x", 1, from_sub="alice", scopes=conn.scopes)
    with pytest.raises(TypeError):
        remote.subscribe(conn, "chat:x", since=3)
    assert remote.subscribe(conn, "chat:x").seq == 7  # no since: the feed's last_seq serves it


class _SlowRemote(FakeRemote):
    """A remote broker whose ``prepare`` waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.in_prepare = trio.Event()
        self.go = trio.Event()

    async def prepare(self, channel: str, since: int | None) -> Replay:
        self.in_prepare.set()
        await self.go.wait()
        return Replay([], True, 7)


async def test_a_reload_during_a_remote_subscribe_applies_to_it() -> None:
    broker = _SlowRemote()
    hub = Hub(RULES, WebSocketSettings(), broker)  # type: ignore[arg-type]
    conn = FakeConn("alice")
    outcome: list[str] = []

    async def subscribe() -> None:
        try:
            await hub.subscribe_async(conn, "room:1")
            outcome.append("subscribed")
        except HubError as exc:
            outcome.append(exc.code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscribe)
        await broker.in_prepare.wait()
        # The reload drops room:* while the subscribe waits for the broker:
        # revalidate cannot see it yet, so the subscribe itself must refuse.
        hub.update_rules(tuple(r for r in RULES if r.pattern != "room:*"), WebSocketSettings())
        broker.go.set()
    assert outcome == ["unknown_channel"]
    assert hub.subscriptions_of(conn) == ()
