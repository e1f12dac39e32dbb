"""Webhooks (SPEC §12) with a real server and a real receiver (trio + h11
on 127.0.0.1): every request signed, retries after a 500, no retry after
a 4xx, one channel's events in order, a bounded queue whose overflow is
counted, and a dead receiver that delays no publish."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import attrs
import httpx
import trio

from realtime.config.settings import Settings, WebhookSettings
from tests.helpers.server import Running
from tests.helpers.webhooks import Receiver
from tests.helpers.ws import call, connect, recv, send

SECRET = b"hook-secret-for-tests"


async def start(nursery: trio.Nursery, start_server: Callable[..., Any], make_settings: Callable[..., Settings],
                receiver: Receiver, **hook: Any) -> Running:
    await receiver.start(nursery)
    settings = make_settings(webhooks=(WebhookSettings(url=receiver.url, secret=SECRET, **hook),),
                             websocket={"ping_interval": 0, "publish_rate": "10000/s", "message_rate": "10000/s"})
    return await start_server(settings)


async def metric(running: Running, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(running.url("/metrics"))).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_events_are_signed_and_shaped(nursery: trio.Nursery, start_server: Any, make_settings: Any) -> None:
    receiver = Receiver(SECRET)
    running = await start(nursery, start_server, make_settings, receiver)
    with trio.fail_after(20):
        async with connect(running) as alice:
            assert (await call(alice, type="subscribe", id=1, channel="chat:w"))["type"] == "ack"
            await send(alice, type="publish", id=2, channel="chat:w", data={"hi": 1})
            await recv(alice), await recv(alice)
            assert (await call(alice, type="unsubscribe", id=3, channel="chat:w"))["type"] == "ack"
        got = await receiver.wait_for(7)
    assert receiver.bad_signatures == 0
    events = [r.event for r in got]
    assert [e["type"] for e in events] == ["connect", "subscribe", "channel_occupied", "publish", "unsubscribe",
                                           "channel_vacated", "disconnect"]
    for e in events:
        assert set(e) == {"id", "type", "time", "node", "data"} and e["node"] == running.state.node
    connect_, subscribe, occupied, publish = (e["data"] for e in events[:4])
    assert connect_["sub"] == "alice" and connect_["client_id"] == "chat-app"
    assert connect_["conn_id"].startswith(running.state.node + "-")
    assert subscribe == {"channel": "chat:w", "sub": "alice", "client_id": "chat-app", "conn_id": connect_["conn_id"]}
    assert occupied == {"channel": "chat:w"}
    assert publish == {"channel": "chat:w", "seq": 1, "sub": "alice", "data": {"hi": 1}}
    assert events[-1]["data"]["code"] == 1000
    assert len({e["id"] for e in events}) == 7


async def test_a_500_is_retried_a_4xx_is_not(nursery: trio.Nursery, start_server: Any, make_settings: Any) -> None:
    seen: Counter[str] = Counter()

    def answer(r: Any) -> int:
        seen[r.event_id] += 1
        kind = r.event["data"].get("data")
        if kind == "flaky":
            return 500 if seen[r.event_id] <= 2 else 204
        return 410 if kind == "gone" else 200

    receiver = Receiver(SECRET, answer)
    running = await start(nursery, start_server, make_settings, receiver, events=("publish",), max_attempts=5)
    token = running.mint()
    async with httpx.AsyncClient() as client:
        for data in ("flaky", "gone", "fine"):
            await client.post(running.url("/api/publish"), json={"channel": "chat:r", "data": data},
                              headers={"authorization": f"Bearer {token}"})
    with trio.fail_after(20):
        # One lane (one channel): "flaky" three times, then "gone" once, then "fine".
        got = await receiver.wait_for(5)
    assert [r.event["data"]["data"] for r in got] == ["flaky", "flaky", "flaky", "gone", "fine"]
    assert len({r.event_id for r in got[:3]}) == 1  # the same event, retried
    assert receiver.bad_signatures == 0
    assert await metric(running, "realtime_webhook_retries_total") == 2
    assert await metric(running, "realtime_webhook_failures_total") == 1
    assert await metric(running, "realtime_webhook_deliveries_total") == 2


async def test_one_channels_events_arrive_in_order(nursery: trio.Nursery, start_server: Any,
                                                   make_settings: Any) -> None:
    seen: Counter[str] = Counter()

    def answer(r: Any) -> int:  # every third event fails once
        seen[r.event_id] += 1
        return 503 if r.event["data"]["seq"] % 3 == 0 and seen[r.event_id] == 1 else 200

    receiver = Receiver(SECRET, answer)
    running = await start(nursery, start_server, make_settings, receiver, events=("publish",))
    with trio.fail_after(30):
        async with connect(running) as alice:
            for i in range(1, 31):
                await send(alice, type="publish", id=i, channel=f"chat:{i % 2}", data=i)
            got = await receiver.wait_for(40)
    delivered: dict[str, list[int]] = {}
    for r in got:
        e = r.event["data"]
        if not delivered.get(e["channel"]) or delivered[e["channel"]][-1] != e["seq"]:
            delivered.setdefault(e["channel"], []).append(e["seq"])
    assert delivered == {"chat:0": list(range(1, 16)), "chat:1": list(range(1, 16))}


async def test_a_dead_receiver_delays_no_publish_and_overflow_is_counted(
        nursery: trio.Nursery, start_server: Any, make_settings: Any) -> None:
    receiver = Receiver(SECRET, lambda r: None)  # accepts, never answers
    running = await start(nursery, start_server, make_settings, receiver, events=("publish",),
                          queue_size=20, timeout=30.0)
    with trio.fail_after(10):
        async with connect(running) as alice:
            for i in range(1, 101):
                await send(alice, type="publish", id=i, channel="chat:d", data=i)
            acks = [await recv(alice) for _ in range(100)]
            assert [a["seq"] for a in acks] == list(range(1, 101))
            receiver.stop()  # killed: connections dropped, port closed
            for i in range(101, 201):
                await send(alice, type="publish", id=i, channel="chat:d", data=i)
            assert [(await recv(alice))["seq"] for _ in range(100)] == list(range(101, 201))
    assert await metric(running, "realtime_webhook_dropped_total") >= 200 - 20 - 1
