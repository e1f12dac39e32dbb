"""History bounded in bytes: per channel (``[[channel]]
history_bytes``) and across channels (``[websocket] max_history_bytes``,
oldest evicted first), idle channels capped by ``[websocket]
max_idle_channels``; a ``since`` that reaches past an eviction is
``recovered: false``."""

from __future__ import annotations

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub import Hub
from realtime.hub.inprocess import InProcessBroker
from tests.helpers.hub import FakeConn, replay_into, seqs

WRITE = frozenset({"chat:write"})
BLOB = "x" * 1000  # a frame of a bit over 1 KB


def hub_with(max_history_bytes: int, history_bytes: int = 1024 * 1024, **ws: object) -> tuple[Hub, InProcessBroker]:
    rules = (ChannelRule("big:*", "chat:read", "chat:write", history=100, history_bytes=history_bytes),)
    hub = Hub(rules, WebSocketSettings(max_history_bytes=max_history_bytes, **ws))
    assert isinstance(hub.broker, InProcessBroker)
    return hub, hub.broker


def publish(hub: Hub, channel: str, n: int) -> None:
    for _ in range(n):
        hub.publish(channel, BLOB, from_sub="p", scopes=WRITE)


def kept(hub: Hub, channel: str) -> list[int]:
    conn = FakeConn()
    result = hub.subscribe(conn, channel, since=0)
    replay_into(conn, result)
    hub.drop(conn)
    return seqs(conn)


def test_a_channel_keeps_at_most_history_bytes() -> None:
    hub, broker = hub_with(10**9, history_bytes=5500)
    publish(hub, "big:a", 20)
    assert broker.kept_bytes("big:a") <= 5500
    assert kept(hub, "big:a") == [16, 17, 18, 19, 20]  # 5 frames of ~1.05 KB fit


def test_the_global_budget_is_never_exceeded_and_evicts_the_oldest_first() -> None:
    hub, broker = hub_with(10_000)
    for i in range(30):
        hub.publish(f"big:{i % 3}", BLOB, from_sub="p", scopes=WRITE)
        assert broker.history_bytes <= 10_000
    # Publishes went big:0, big:1, big:2, big:0, ...: the ~9 newest survive,
    # whatever channel they are on.
    survivors = {ch: kept(hub, ch) for ch in ("big:0", "big:1", "big:2")}
    assert survivors == {"big:0": [8, 9, 10], "big:1": [8, 9, 10], "big:2": [8, 9, 10]}
    assert broker.history_bytes == sum(broker.kept_bytes(f"big:{i}") for i in range(3))


def test_since_before_an_eviction_is_not_recovered() -> None:
    hub, _ = hub_with(5_000)
    publish(hub, "big:a", 10)
    conn = FakeConn()
    result = hub.subscribe(conn, "big:a", since=2)
    replay_into(conn, result)
    assert result.recovered is False
    assert seqs(conn) == [7, 8, 9, 10]
    result = hub.subscribe(FakeConn(), "big:a", since=6)
    assert result.recovered is True


def test_a_frame_larger_than_the_budget_is_not_kept_and_breaks_recovery() -> None:
    hub, broker = hub_with(10**9, history_bytes=3000)
    publish(hub, "big:a", 2)
    hub.publish("big:a", "y" * 5000, from_sub="p", scopes=WRITE)
    assert broker.kept_bytes("big:a") == 0
    assert hub.subscribe(FakeConn(), "big:a", since=1).recovered is False


def test_order_bookkeeping_stays_bounded_under_channel_trimming() -> None:
    hub, broker = hub_with(10**9, history_bytes=3000)
    publish(hub, "big:a", 5000)
    assert broker.order_entries() <= 2 * 3 + 64


def test_max_idle_channels_is_configurable() -> None:
    hub, broker = hub_with(10**9, max_idle_channels=3)
    for i in range(10):
        hub.publish(f"big:{i}", 1, from_sub="p", scopes=WRITE)
    assert broker.channel_count() == 3
    assert hub.subscribe(FakeConn(), "big:0", since=1).recovered is False  # forgotten


def test_a_reload_applies_smaller_budgets_at_once() -> None:
    hub, broker = hub_with(10**9)
    publish(hub, "big:a", 20)
    rules = (ChannelRule("big:*", "chat:read", "chat:write", history=100, history_bytes=4000),)
    hub.update_rules(rules, WebSocketSettings(max_history_bytes=2200))
    assert broker.history_bytes <= 2200
    assert kept(hub, "big:a") == [19, 20]
