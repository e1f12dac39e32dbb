"""The Redis broker's parts without a Redis: :class:`Delivery` takes a
:class:`BrokerState`, so a fake pub/sub connection and a fake client
drive its ordering rules directly.  Tasks meet on
``wait_all_tasks_blocked``; nothing sleeps."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from realtime.hub import Broker, BrokerUnavailable, RemoteBroker, Replay
from realtime.net.redis import lua
from realtime.net.redis.broker import RedisBroker
from realtime.net.redis.delivery import Delivery
from realtime.net.redis.state import BrokerState
from realtime.protocol import replies
from realtime.protocol.frames import encode_text_frame
from tests.helpers.hub import members


class FakeHub:
    """Records what delivery offers (the :class:`realtime.hub.HubView` side)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.events: list[tuple[str, bytes, str]] = []

    def deliver(self, channel: str, frame: bytes) -> int:
        self.frames.append((channel, frame))
        return 2

    def deliver_event(self, channel: str, frame: bytes, skip_sub: str) -> int:
        self.events.append((channel, frame, skip_sub))
        return 1


class FakePubSub:
    """Messages put in by the test come out of ``get_message``."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](100)
        self.subscribed: list[bytes] = []

    async def get_message(self) -> dict[str, Any]:
        return await self.receive.receive()

    async def subscribe(self, *keys: bytes) -> None:
        self.subscribed.extend(keys)

    def message(self, channel: str, data: bytes) -> None:
        self.send.send_nowait({"type": "message", "channel": lua.PREFIX_CHANNEL + channel.encode(), "data": data})


class FakeClient:
    """A stream per channel: ``xrange`` over ``{seq: body}``."""

    def __init__(self, kept: dict[int, bytes]) -> None:
        self.kept = kept

    async def xrange(self, key: bytes, start: str, end: str) -> list[Any]:
        lo, hi = int(start.split("-")[0]), int(end.split("-")[0])
        return [SimpleNamespace(identifier=f"{seq}-0".encode(), field_values={b"m": body})
                for seq, body in sorted(self.kept.items()) if lo <= seq <= hi]


def body(seq: int) -> bytes:
    return b'{"seq":%d}' % seq


def live(state: BrokerState, channel: str, cursor: int) -> None:
    w = state.watch(channel)
    w.wanted = w.subscribed = w.ready = True
    w.cursor = cursor


def test_redis_broker_serves_remote_broker_only() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0")
    for name in members(RemoteBroker):
        assert hasattr(broker, name), name
    for name in members(Broker) - members(RemoteBroker):
        assert not hasattr(broker, name), name
    revoked: list[tuple[str, float]] = []
    broker.on_revoke = lambda jti, exp: revoked.append((jti, exp))  # what the server sets
    assert broker.state.on_revoke is broker.on_revoke
    assert broker.delivery.state is broker.state is broker.link.state  # one state, shared


async def test_pump_offers_in_order_once_and_fills_gaps_from_the_stream() -> None:
    state = BrokerState("redis://x", node="me")
    hub = FakeHub()
    state.hub = hub
    state.client = FakeClient({2: body(2), 3: body(3)})
    revoked: list[tuple[str, float]] = []
    state.on_revoke = lambda jti, exp: revoked.append((jti, exp))
    live(state, "chat:x", 0)
    ps = FakePubSub()
    for seq in (1, 1, 4, 3, 5):  # a duplicate, a gap (2..3 from the stream), a late one
        ps.message("chat:x", b"M%d %s" % (seq, body(seq)))
    ps.message("chat:x", b"Jbob")
    ps.message("other", b"M1 " + body(1))  # not watched: ignored
    ps.send.send_nowait({"type": "message", "channel": lua.REVOKE_CHANNEL, "data": b"them 12.5 jti-1"})
    ps.send.send_nowait({"type": "message", "channel": lua.REVOKE_CHANNEL, "data": b"me 12.5 jti-2"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Delivery(state).pump, ps)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert hub.frames == [("chat:x", encode_text_frame(body(seq))) for seq in (1, 2, 3, 4, 5)]
    assert state.watches["chat:x"].cursor == 5 and state.delivered == 10
    assert hub.events == [("chat:x", encode_text_frame(replies.join("chat:x", "bob")), "bob")]
    assert revoked == [("jti-1", 12.5)]  # our own revocation is not echoed back


async def test_resubscribe_holds_early_messages_until_the_cursor_is_known() -> None:
    state = BrokerState("redis://x")
    hub = FakeHub()
    state.hub = hub
    state.client = FakeClient({})

    async def seed(keys: list[bytes], args: list[int]) -> int:
        # Meanwhile pub/sub already brought 2 (counted by the seed) and 3.
        state.watches["chat:x"].pending += [(2, body(2)), (3, body(3))]
        return 2

    state.scripts = {"seed": seed}
    w = state.watch("chat:x")
    w.wanted = True
    state.watch("gone").wanted = False  # nobody needs it: dropped, not subscribed
    ps = FakePubSub()
    await Delivery(state).resubscribe(ps)
    assert ps.subscribed == [lua.PREFIX_CHANNEL + b"chat:x"] and "gone" not in state.watches
    assert w.ready and w.settled.is_set() and w.cursor == 3
    assert hub.frames == [("chat:x", encode_text_frame(body(3)))]  # 2 predates this node's cursor


async def test_watch_bookkeeping_wakes_the_control_task() -> None:
    state = BrokerState("redis://x")
    delivery = Delivery(state)
    delivery.watch("chat:x")
    assert state.ctl_wake.is_set() and state.watches["chat:x"].needed
    state.ctl_wake = trio.Event()
    delivery.hold("chat:x")
    delivery.unwatch("chat:x")
    assert not state.ctl_wake.is_set()  # still held by a subscribe under way
    delivery.release("chat:x")
    assert state.ctl_wake.is_set() and not state.watches["chat:x"].needed
    assert delivery.last_seq("chat:x") == 0 and delivery.last_seq("never") == 0


async def test_a_loss_wakes_a_waiting_subscribe_with_unavailable() -> None:
    state = BrokerState("redis://x")
    delivery = Delivery(state)
    with pytest.raises(BrokerUnavailable):
        await delivery.prepare("chat:x", None)  # down: no waiting at all
    state.up = True
    outcome: list[BaseException] = []

    async def subscribe() -> None:
        try:
            await delivery.prepare("chat:x", 3)
        except BrokerUnavailable as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscribe)
        await trio.testing.wait_all_tasks_blocked()
        assert state.ctl_wake.is_set() and outcome == []
        state.up = False
        delivery.reset()  # what the link does on a loss
    assert len(outcome) == 1


async def test_prepare_replays_from_the_stream_up_to_the_cursor() -> None:
    state = BrokerState("redis://x")
    state.up = True
    state.client = FakeClient({3: body(3), 5: body(5)})  # 4 was trimmed
    live(state, "chat:x", 5)
    delivery = Delivery(state)
    replay = await delivery.prepare("chat:x", 2)
    assert replay.frames == [encode_text_frame(body(3)), encode_text_frame(body(5))]
    assert not replay.recovered and replay.last_seq == 5
    assert await delivery.prepare("chat:x", None) == Replay([], True, 5)
