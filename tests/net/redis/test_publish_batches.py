"""Publishes reach Redis in batches: those of one scheduling pass go as
one pipeline, in the order they arrived; a lost script is loaded again;
a publish waiting on a connection that dies is answered, never left
hanging.  A real redis-server; nothing is timed."""

from __future__ import annotations

import re
import signal
from typing import Any

import coredis
import pytest
import trio
import trio.testing
from coredis.tokens import PureToken

from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis import lua
from realtime.net.redis.broker import RedisBroker
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


async def test_a_batch_that_meets_noscript_loads_the_script_and_runs_those_calls_once(node: Any) -> None:
    broker = node.server.broker
    with trio.fail_after(10):
        first, _ = await broker.publish_async(CHANNEL, "alice", b"{}", 10)
        # As after a SCRIPT FLUSH, for this script only (a real flush also
        # makes the link's own scripts fail, and the link reconnects).
        broker.state.scripts["publish"].sha = "0" * 40
        before = broker.publishes.batches
        results = await _publish_together(broker, 3)
    assert sorted(results) == [first + 1, first + 2, first + 3]
    assert broker.publishes.batches - before == 1
    assert broker.state.scripts["publish"].sha != "0" * 40


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


# -- what a failing connection leaves -------------------------------------------------

PUBLISH_REPLY = re.compile(rb"\*2\r\n:\d+\r\n:\d+\r\n")


class CuttingProxy:
    """A loopback proxy in front of redis-server that, once armed, passes
    ``keep`` publish replies on a connection and then cuts it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.keep: int | None = None
        self.cut = trio.Event()
        self.port = 0

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, client, server, False, nursery.cancel_scope)
                nursery.start_soon(self._pipe, server, client, True, nursery.cancel_scope)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # either side went away: so does the relay
        finally:
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(server)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, replies: bool,
                    scope: trio.CancelScope) -> None:
        seen = b""
        while data := await source.receive_some(65536):
            if replies and self.keep is not None:
                start = len(seen)
                seen += data
                ends = [m.end() for m in PUBLISH_REPLY.finditer(seen)]
                if len(ends) >= self.keep:
                    await sink.send_all(data[:ends[self.keep - 1] - start])
                    self.keep = None  # one cut; later connections pass
                    self.cut.set()
                    scope.cancel()
                    return
            await sink.send_all(data)
        scope.cancel()


async def test_a_connection_lost_mid_batch_keeps_the_replies_that_came(redis: RedisServer) -> None:
    proxy = CuttingProxy(redis.port)
    outcomes: dict[int, Any] = {}
    arrived: list[int] = []

    async def publish(broker: RedisBroker, i: int) -> None:
        arrived.append(i)
        try:
            outcomes[i] = (await broker.publish_async(CHANNEL, "alice", b"{}", 100))[0]
        except BrokerUnavailable:
            outcomes[i] = "unavailable"

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0")
            await nursery.start(broker.run)
            proxy.keep = 3
            async with trio.open_nursery() as publishers:
                for i in range(8):
                    publishers.start_soon(publish, broker, i)
            assert proxy.cut.is_set()
            await broker.stop(2.0)
            nursery.cancel_scope.cancel()
        async with coredis.Redis.from_url(redis.url) as raw:
            stored = await raw.xlen(lua.PREFIX_STREAM + CHANNEL.encode())
    # The first three replies came before the cut: those publishes are answered
    # with their seq, not "unavailable" (a retry would publish them twice).
    assert [outcomes[i] for i in arrived] == [1, 2, 3] + ["unavailable"] * 5
    assert stored == 8  # Redis ran them all: the other five lost only their replies


async def test_a_stalled_batch_answers_the_publishes_queued_behind_it(node: Any, redis: RedisServer) -> None:
    broker = node.server.broker
    answered: list[tuple[str, float]] = []

    async def publish() -> None:
        try:
            await broker.publish_async(CHANNEL, "alice", b"{}", 10)
            answered.append(("published", trio.current_time()))
        except BrokerUnavailable:
            answered.append(("unavailable", trio.current_time()))

    with trio.fail_after(20):
        await broker.publish_async(CHANNEL, "alice", b"{}", 10)
        async with coredis.Redis.from_url(redis.url) as raw:
            await raw.client_pause(30_000, PureToken.ALL)  # Redis holds every command
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)  # the stalled batch
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert broker.publishes.in_flight == 1
            for _ in range(300):
                nursery.start_soon(publish)  # queued behind it: more than one batch
    # All at the first batch's timeout (the client's 5 s), not one timeout
    # per batch in turn.
    assert [outcome for outcome, _ in answered] == ["unavailable"] * 301
    assert max(at for _, at in answered) - start < 8


async def test_a_cancelled_publisher_s_queued_message_is_never_sent(node: Any, redis: RedisServer) -> None:
    broker = node.server.broker
    with trio.fail_after(20):
        await broker.publish_async(CHANNEL, "alice", b'"before"', 10)
        async with coredis.Redis.from_url(redis.url) as raw:
            await raw.client_pause(1_000, PureToken.ALL)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.publish_async, CHANNEL, "alice", b'"sent"', 10)
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert broker.publishes.in_flight == 1
            with trio.CancelScope() as cancelled:
                nursery.start_soon(_cancel_soon, cancelled)
                await broker.publish_async(CHANNEL, "alice", b'"cancelled"', 10)
        async with coredis.Redis.from_url(redis.url) as raw:
            entries = await raw.xrange(lua.PREFIX_STREAM + CHANNEL.encode())
    bodies = [entry.field_values[b"m"] for entry in entries]
    assert [b'"before"' in body for body in bodies] == [True, False]
    assert b'"sent"' in bodies[1]
    assert not any(b'"cancelled"' in body for body in bodies)


async def _cancel_soon(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked(0.05)
    scope.cancel()
