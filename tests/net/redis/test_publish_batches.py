"""Publishes reach Redis in batches: those of one scheduling pass go as
one pipeline, in the order they arrived; a lost script is loaded again;
a publish waiting on a connection that dies is answered, never left
hanging.  A real redis-server; nothing is timed."""

from __future__ import annotations

import signal
from typing import Any

import coredis
import pytest
import trio
import trio.testing
from coredis.tokens import PureToken

from realtime.hub.broker import BrokerUnavailable
from tests.helpers.redis import RedisServer, redis_node_settings

CHANNEL = "chat:batch"


@pytest.fixture
async def node(start_server: Any, make_settings: Any, redis: RedisServer) -> Any:
    return await start_server(redis_node_settings(make_settings, redis))


async def test_publishes_of_one_pass_go_as_one_pipeline_in_arrival_order(node: Any) -> None:
    broker = node.server.broker
    count = 12
    arrived: list[int] = []
    seqs: dict[int, int] = {}

    async def publish(i: int) -> None:
        arrived.append(i)  # publish_async queues before its first await
        seq, _ = await broker.publish_async(CHANNEL, "alice", b'{"i":%d}' % i, 10)
        seqs[i] = seq

    with trio.fail_after(10):
        await broker.publish_async(CHANNEL, "alice", b"{}", 10)  # the channel's first message: seq 1
        before = broker.publishes.batches
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(publish, i)
    assert broker.publishes.batches - before == 1
    # Redis numbered them in the order they were queued.
    assert [seqs[i] for i in arrived] == list(range(2, count + 2))


async def test_a_publish_after_script_flush_loads_the_script_again(node: Any, redis: RedisServer) -> None:
    broker = node.server.broker
    with trio.fail_after(10):
        first, _ = await broker.publish_async(CHANNEL, "alice", b"{}", 10)
        async with coredis.Redis.from_url(redis.url) as raw:
            await raw.script_flush()
        results = await _publish_together(broker, 3)
    assert sorted(results) == [first + 1, first + 2, first + 3]


async def test_publishes_in_flight_when_redis_dies_are_answered_unavailable(node: Any, redis: RedisServer) -> None:
    broker = node.server.broker
    assert redis.proc is not None
    outcomes: list[str] = []

    async def publish() -> None:
        try:
            await broker.publish_async(CHANNEL, "alice", b"{}", 10)
            outcomes.append("published")
        except BrokerUnavailable:
            outcomes.append("unavailable")

    with trio.fail_after(10):
        async with coredis.Redis.from_url(redis.url) as raw:
            # Redis holds every command for 10 s: the publishes are sent and wait.
            await raw.client_pause(10_000, PureToken.ALL)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(publish)
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert broker.publishes.in_flight == 3
            redis.proc.send_signal(signal.SIGKILL)
    assert outcomes == ["unavailable"] * 3
    redis.proc.wait(10)
    redis.proc = None


async def _publish_together(broker: Any, count: int) -> list[int]:
    results: list[int] = []

    async def one() -> None:
        results.append((await broker.publish_async(CHANNEL, "alice", b"{}", 10))[0])

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return results
