"""Channels end to end (SPEC §4–5, issue 5): a real server on 127.0.0.1:0,
real clients (trio-websocket, httpx, and a raw wsproto client that stops
reading).  Every wait is bounded and waits on a message, never on a sleep."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import TextMessage

from realtime.config.settings import ChannelRule
from tests.helpers.server import Running
from tests.helpers.settings import CHANNELS
from tests.helpers.ws import RawClient, api_publish, call, connect, loads, quiet, recv, send


# ---------------------------------------------------------------------------
# 1. shapes


async def test_subscribe_publish_message_shape(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running) as alice, connect(running, "bob", "chat:read") as bob:
            assert await call(alice, type="subscribe", id=1, channel="chat:shape") == {"type": "ack", "id": 1}
            assert await call(bob, type="subscribe", id="b", channel="chat:shape") == {"type": "ack", "id": "b"}

            payloads = [{"text": "hi", "n": [1, 2.5, None, True]}, None, "ünïcødé ✓", [1, {"a": {}}], 0]
            for i, data in enumerate(payloads, start=1):
                await send(alice, type="publish", id=f"p{i}", channel="chat:shape", data=data)
                expected = {"type": "message", "channel": "chat:shape", "seq": i, "from": "alice", "data": data}
                # The publisher is subscribed: the fan-out reaches it before the ack.
                assert await recv(alice) == expected
                assert await recv(alice) == {"type": "ack", "id": f"p{i}", "seq": i}
                assert await recv(bob) == expected

            # No id, no ack; the message still goes out with the next seq.
            await send(alice, type="publish", channel="chat:shape", data="no id")
            assert (await recv(bob))["seq"] == len(payloads) + 1
            assert (await recv(alice))["seq"] == len(payloads) + 1
            await quiet(alice)

            # Unsubscribe: acked, and bob gets nothing more.
            assert await call(bob, type="unsubscribe", id=9, channel="chat:shape") == {"type": "ack", "id": 9}
            await send(alice, type="publish", id="after", channel="chat:shape", data=1)
            assert (await recv(alice))["seq"] == len(payloads) + 2
            assert await recv(alice) == {"type": "ack", "id": "after", "seq": len(payloads) + 2}
            await quiet(bob)

            # A second subscribe to the same channel is a no-op: no duplicate delivery.
            assert await call(alice, type="subscribe", id=10, channel="chat:shape") == {"type": "ack", "id": 10}
            await send(alice, type="publish", id="dup", channel="chat:shape", data=2)
            assert (await recv(alice))["seq"] == len(payloads) + 3
            assert (await recv(alice))["type"] == "ack"
            await quiet(alice)


# ---------------------------------------------------------------------------
# 2. order across 200 subscribers


async def test_order_across_200_subscribers(start_server, make_settings) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0, "publish_rate": "1000/s"}))
    subscribers, messages, channel = 200, 50, "chat:fanout"
    subscribed = 0
    all_subscribed = trio.Event()
    received: dict[int, list[tuple[int, Any]]] = {}

    async def subscriber(n: int) -> None:
        nonlocal subscribed
        async with connect(running, "bob", "chat:read") as ws:
            assert await call(ws, type="subscribe", id=n, channel=channel) == {"type": "ack", "id": n}
            subscribed += 1
            if subscribed == subscribers:
                all_subscribed.set()
            got = received[n] = []
            for _ in range(messages + 1):
                m = await recv(ws)
                assert m["type"] == "message" and m["channel"] == channel
                got.append((m["seq"], m["data"]))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for n in range(subscribers):
                nursery.start_soon(subscriber, n)
            await all_subscribed.wait()
            async with connect(running) as alice:
                # Pipelined: the publishes go out back to back, acks read after.
                for i in range(1, messages + 1):
                    await send(alice, type="publish", id=i, channel=channel, data={"i": i})
                for i in range(1, messages + 1):
                    assert await recv(alice) == {"type": "ack", "id": i, "seq": i}
            answer = await api_publish(running, channel, "done", running.mint())
            assert answer.status_code == 200
            assert answer.json() == {"delivered": subscribers, "seq": messages + 1}

    expected = [(i, {"i": i}) for i in range(1, messages + 1)] + [(messages + 1, "done")]
    assert len(received) == subscribers
    for n, got in received.items():
        assert got == expected, f"subscriber {n} got {got[:5]}..."


# ---------------------------------------------------------------------------
# 3. since recovery


async def test_since_recovery_after_reconnect(running: Running) -> None:
    channel = "chat:recover"

    def msg(seq: int) -> dict[str, Any]:
        return {"type": "message", "channel": channel, "seq": seq, "from": "alice", "data": {"n": seq}}

    async def publish(ws: WebSocketConnection, seq: int) -> None:
        assert await call(ws, type="publish", id=seq, channel=channel, data={"n": seq}) == {
            "type": "ack", "id": seq, "seq": seq}

    with trio.fail_after(10):
        async with connect(running) as alice:
            async with connect(running, "bob", "chat:read") as bob:
                assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                for seq in (1, 2, 3):
                    await publish(alice, seq)
                last_seen = 0
                for seq in (1, 2, 3):
                    m = await recv(bob)
                    assert m == msg(seq)
                    last_seen = m["seq"]
            # bob is gone; alice carries on.
            for seq in (4, 5, 6, 7):
                await publish(alice, seq)
            async with connect(running, "bob", "chat:read") as bob:
                await send(bob, type="subscribe", id="again", channel=channel, since=last_seen)
                assert await recv(bob) == {"type": "ack", "id": "again", "recovered": True}
                for seq in (4, 5, 6, 7):
                    assert await recv(bob) == msg(seq)
                for seq in (8, 9):
                    await publish(alice, seq)
                for seq in (8, 9):
                    assert await recv(bob) == msg(seq)
                await quiet(bob)  # no duplicate, nothing extra

            # since == newest seq: recovered, nothing to replay.  Without an id
            # the ack still comes (the flag must not be lost), without an id.
            async with connect(running, "bob", "chat:read") as bob:
                await send(bob, type="subscribe", channel=channel, since=9)
                assert await recv(bob) == {"type": "ack", "recovered": True}
                await quiet(bob)
                await publish(alice, 10)
                assert await recv(bob) == msg(10)

            # since above anything this numbering issued: not recovered.
            async with connect(running, "bob", "chat:read") as bob:
                await send(bob, type="subscribe", id=5, channel=channel, since=1000)
                assert await recv(bob) == {"type": "ack", "id": 5, "recovered": False}
                await quiet(bob)

            # since=0 on a channel that never had a message: recovered.
            async with connect(running, "bob", "chat:read") as bob:
                assert await call(bob, type="subscribe", id=6, channel="chat:empty", since=0) == {
                    "type": "ack", "id": 6, "recovered": True}
                await quiet(bob)


async def test_since_older_than_history_is_not_recovered(running: Running) -> None:
    channel = "news:front"  # the news:* rule keeps 5
    with trio.fail_after(10):
        async with connect(running, "alice", "news:write") as editor:
            for seq in range(1, 13):
                assert await call(editor, type="publish", id=seq, channel=channel, data=seq) == {
                    "type": "ack", "id": seq, "seq": seq}
            async with connect(running, "bob", "news:read") as reader:
                await send(reader, type="subscribe", id="s", channel=channel, since=2)
                assert await recv(reader) == {"type": "ack", "id": "s", "recovered": False}
                # What is kept (8..12) is still replayed, in order, then live.
                for seq in range(8, 13):
                    assert await recv(reader) == {"type": "message", "channel": channel, "seq": seq,
                                                  "from": "alice", "data": seq}
                await call(editor, type="publish", id=13, channel=channel, data=13)
                assert (await recv(reader))["seq"] == 13
                await quiet(reader)
            # Exactly at the edge of what is kept: since = oldest kept - 1 is recovered.
            async with connect(running, "bob", "news:read") as reader:
                await send(reader, type="subscribe", id="edge", channel=channel, since=8)
                assert await recv(reader) == {"type": "ack", "id": "edge", "recovered": True}
                assert [(await recv(reader))["seq"] for _ in range(5)] == [9, 10, 11, 12, 13]
                await quiet(reader)


# ---------------------------------------------------------------------------
# 4. scopes, WebSocket and /api/publish


async def test_websocket_scope_checks(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running, "bob", "chat:read") as bob:
            forbidden = await call(bob, type="subscribe", id=1, channel="news:x")
            assert forbidden["type"] == "error" and forbidden["code"] == "forbidden" and forbidden["message"]
            assert await call(bob, type="subscribe", id=2, channel="chat:x") == {"type": "ack", "id": 2}

            denied = await call(bob, type="publish", id=3, channel="chat:x", data="hi")
            assert denied["type"] == "error" and denied["code"] == "forbidden"

            for kind in ("subscribe", "publish"):
                extra = {"data": 1} if kind == "publish" else {}
                unknown = await call(bob, type=kind, id=kind, channel="nowhere:1", **extra)
                assert unknown["type"] == "error" and unknown["code"] == "unknown_channel", unknown

            # Own user channel: no scope needed.  Somebody else's: never.
            assert await call(bob, type="subscribe", id=4, channel="user:bob") == {"type": "ack", "id": 4}
            other = await call(bob, type="subscribe", id=5, channel="user:alice")
            assert other["type"] == "error" and other["code"] == "forbidden"
            # Nobody may publish into a user channel without "notify".
            note = await call(bob, type="publish", id=6, channel="user:bob", data=1)
            assert note["type"] == "error" and note["code"] == "forbidden"

            # After all those refusals the subscriptions that worked still deliver.
            async with connect(running) as alice:
                assert await call(alice, type="publish", id=1, channel="chat:x", data="still") == {
                    "type": "ack", "id": 1, "seq": 1}
            assert await recv(bob) == {"type": "message", "channel": "chat:x", "seq": 1, "from": "alice",
                                       "data": "still"}
            await quiet(bob)


async def test_own_user_channel_needs_no_scope_even_when_the_rule_asks(start_server, make_settings) -> None:
    rules = (ChannelRule("user:*", subscribe_scope="secret", publish_scope="notify", history=10),
             *[r for r in CHANNELS if not r.pattern.startswith("user:")])
    running = await start_server(make_settings(channels=rules))
    with trio.fail_after(10):
        async with connect(running, "bob", "chat:read") as bob:
            assert await call(bob, type="subscribe", id=1, channel="user:bob") == {"type": "ack", "id": 1}
            async with connect(running, "alice", "secret chat:read") as alice:
                refused = await call(alice, type="subscribe", id=1, channel="user:bob")
                assert refused["code"] == "forbidden"


async def test_api_publish_auth_and_scopes(running: Running) -> None:
    channel = "chat:api"
    with trio.fail_after(10):
        async with connect(running, "bob", "chat:read") as bob:
            assert await call(bob, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}

            for token in (None, "garbage", running.mint(ttl=-60)):
                answer = await api_publish(running, channel, "x", token)
                assert answer.status_code == 401, (token, answer.text)
                challenge = answer.headers["www-authenticate"]
                assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge

            answer = await api_publish(running, channel, "x", running.mint("bob", "chat:read"))
            assert answer.status_code == 403
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith("Bearer") and 'error="insufficient_scope"' in challenge
            assert 'scope="chat:write"' in challenge

            answer = await api_publish(running, "nowhere:1", "x", running.mint())
            assert answer.status_code == 404 and answer.json()["error"] == "unknown_channel"

            answer = await api_publish(running, channel, {"via": "api"}, running.mint())
            assert answer.status_code == 200
            assert answer.json() == {"delivered": 1, "seq": 1}
            assert await recv(bob) == {"type": "message", "channel": channel, "seq": 1, "from": "alice",
                                       "data": {"via": "api"}}
            # Nobody subscribed: delivered 0, seq still rises.
            answer = await api_publish(running, "chat:nobody", None, running.mint())
            assert answer.json() == {"delivered": 0, "seq": 1}
            await quiet(bob)


async def test_notification_via_api_publish_reaches_the_user(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running, "alice", "chat:read") as alice, connect(running, "bob", "chat:read") as bob:
            assert await call(alice, type="subscribe", id=1, channel="user:alice") == {"type": "ack", "id": 1}
            assert await call(bob, type="subscribe", id=1, channel="user:bob") == {"type": "ack", "id": 1}

            # Without "notify": refused.
            answer = await api_publish(running, "user:alice", "x", running.mint("bob", "chat:write"))
            assert answer.status_code == 403

            # The app itself (client_credentials: sub == client_id) holding "notify".
            app_token = running.mint(sub="chat-app", client_id="chat-app", scope="notify")
            answer = await api_publish(running, "user:alice", {"note": "you have mail"}, app_token)
            assert answer.status_code == 200 and answer.json() == {"delivered": 1, "seq": 1}
            assert await recv(alice) == {"type": "message", "channel": "user:alice", "seq": 1,
                                         "from": "chat-app", "data": {"note": "you have mail"}}
            # A user's token with "notify" works too.
            answer = await api_publish(running, "user:alice", 2, running.mint("bob", "notify"))
            assert answer.json() == {"delivered": 1, "seq": 2}
            assert (await recv(alice))["from"] == "bob"
            await quiet(alice)
            await quiet(bob)  # bob's own channel saw nothing


# ---------------------------------------------------------------------------
# 5. a subscriber that never reads


async def _close_at_exit(slow: RawClient) -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(slow.stream)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_slow_consumer_closed_4009_while_fast_one_gets_everything(
        start_server, make_settings, client_ssl, tls) -> None:
    running = await start_server(make_settings(
        websocket={"max_backlog_bytes": 64 * 1024, "ping_interval": 0, "publish_rate": "100000/s",
                   "message_rate": "100000/s"}))
    channel = "chat:firehose"
    payload = "x" * 8192
    sessions = running.server.sessions
    slow_result: list[Any] = []

    async def drain_slow(slow: RawClient) -> None:
        slow_result.extend(await slow.read_to_close())
        # The server closes the socket after our close reply, and counts the
        # close in the same step: after EOF the counter must show it.
        while await slow.stream.receive_some(65536):
            pass
        slow_result.append(running.state.metrics.closes[4009])

    with trio.fail_after(30):
        slow = await RawClient.open(running, running.mint("bob", "chat:read"), client_ssl if tls else None)
        running.nursery.start_soon(_close_at_exit, slow)  # never leak the socket, even on failure
        await slow.send(type="subscribe", id="slow", channel=channel)
        assert await slow.until_id("slow") == {"type": "ack", "id": "slow"}
        slow_session = next(s for s in sessions if s.sub == "bob")
        # From here on the slow client reads nothing, until the server gives up on it.

        async with trio.open_nursery() as nursery:
            async with connect(running, "carol", "chat:read") as fast, connect(running) as publisher:
                assert await call(fast, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                seq = 0
                overflowed_at = None
                while overflowed_at is None or seq < overflowed_at + 20:
                    seq += 1
                    assert seq <= 5000, "the slow consumer was never closed"
                    assert await call(publisher, type="publish", id=seq, channel=channel,
                                      data={"seq": seq, "pad": payload}) == {"type": "ack", "id": seq, "seq": seq}
                    # The fast subscriber gets every message, in order, at once.
                    m = await recv(fast)
                    assert (m["type"], m["seq"], m["data"]["seq"]) == ("message", seq, seq)
                    if overflowed_at is None and slow_session.close_code is not None:
                        # The fan-out is synchronous: the publish that overflowed
                        # the backlog has closed the session before its ack.
                        assert slow_session.close_code == 4009
                        overflowed_at = seq
                        nursery.start_soon(drain_slow, slow)
                await quiet(fast)
                assert running.state.hub.subscriber_count(channel) == 1  # only the fast one is left

    seqs, close = slow_result[0], slow_result[1]
    # What the slow client got is whole and in order, and ends with 4009.
    assert close.code == 4009, (close.code, close.reason)
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) <= overflowed_at
    assert slow_result[2] == 1  # metrics: closes{code="4009"}


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_paused_reader_catches_up_and_its_half_sent_message_survives(
        start_server, make_settings, client_ssl, tls) -> None:
    """A backlog below the limit is drained by a writer task that the session
    starts only then (its nursery opens lazily, to save memory on idle
    sockets): the reader steps out and back in, and neither the backlog nor
    a message the client had half sent at that moment is lost."""
    running = await start_server(make_settings(
        websocket={"max_backlog_bytes": 8 << 20, "ping_interval": 0, "publish_rate": "100000/s",
                   "message_rate": "100000/s"}))
    channel = "chat:burst"
    payload = "y" * 8192
    sessions = running.server.sessions
    with trio.fail_after(30):
        slow = await RawClient.open(running, running.mint("bob", "chat:read"), client_ssl if tls else None)
        running.nursery.start_soon(_close_at_exit, slow)
        await slow.send(type="subscribe", id="s", channel=channel)
        assert await slow.until_id("s") == {"type": "ack", "id": "s"}
        session = next(s for s in sessions if s.sub == "bob")
        assert session._nursery is None  # no writer task, no nursery while nothing is queued
        # The first half of a fragmented message: the server holds it in its reader.
        whole = json.dumps({"type": "ping", "id": "cut"})
        await slow.stream.send_all(slow.ws.send(TextMessage(whole[:9], message_finished=False)))
        async with connect(running) as publisher:
            seq = 0
            while session.transport.backlog_bytes == 0:
                seq += 1
                assert seq <= 2000, "no backlog ever built up"
                assert (await call(publisher, type="publish", id=seq, channel=channel,
                                   data={"pad": payload}))["seq"] == seq
            for _ in range(10):  # keep it growing while the writer is starting
                seq += 1
                assert (await call(publisher, type="publish", id=seq, channel=channel,
                                   data={"pad": payload}))["seq"] == seq
            await quiet(publisher)
        assert session.close_code is None
        # Now read: everything arrives, whole and in order.
        got: list[int] = []
        while len(got) < seq:
            for event in await slow.events():
                assert isinstance(event, TextMessage), event
                got.append(loads(event.data)["seq"])
        assert got == list(range(1, seq + 1))
        assert session._nursery is not None  # the writer's nursery opened when the backlog did
        # The rest of the fragmented message: the reader kept the first half.
        await slow.stream.send_all(slow.ws.send(TextMessage(whole[9:], message_finished=True)))
        assert await slow.until_id("cut") == {"type": "pong", "id": "cut"}
        assert session.transport.backlog_bytes == 0 and session.close_code is None


# ---------------------------------------------------------------------------
# 6. publish rate limit


async def test_publish_flood_closes_4008_others_unaffected(start_server, make_settings) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0, "publish_rate": "5/s"}))
    channel = "chat:flood"
    with trio.fail_after(10):
        async with connect(running, "bob", "chat:read") as watcher, connect(running) as calm:
            assert await call(watcher, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
            async with connect(running) as flooder:
                try:
                    for i in range(50):
                        await send(flooder, type="publish", id=i, channel=channel, data=i)
                except ConnectionClosed:
                    pass
                acks = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        m = await recv(flooder)
                        assert m["type"] == "ack", m
                        acks.append(m["seq"])
                assert closed.value.reason.code == 4008
                # The burst (5) went through; not much more in so short a time.
                assert 5 <= len(acks) < 50 and acks == list(range(1, len(acks) + 1))
            for seq in acks:
                assert (await recv(watcher))["seq"] == seq
            await quiet(watcher)
            # Another connection (same user!) has its own bucket.
            assert await call(calm, type="publish", id="c", channel=channel, data="calm") == {
                "type": "ack", "id": "c", "seq": len(acks) + 1}
            assert (await recv(watcher))["data"] == "calm"
            await quiet(calm)
    assert running.state.metrics.closes[4008] == 1


# ---------------------------------------------------------------------------
# 7. bad input


@pytest.mark.parametrize("message, code", [
    ({"type": "nope"}, "bad_message"),
    ({}, "bad_message"),
    ({"type": 5}, "bad_message"),
    ({"type": "subscribe"}, "bad_channel"),
    ({"type": "publish", "data": 1}, "bad_channel"),
    ({"type": "publish", "channel": "chat:x"}, "bad_message"),
    ({"type": "subscribe", "channel": ""}, "bad_channel"),
    ({"type": "subscribe", "channel": 7}, "bad_channel"),
    ({"type": "subscribe", "channel": "chat:\x00"}, "bad_channel"),
    ({"type": "subscribe", "channel": "chat:" + "x" * 10240}, "bad_channel"),
    ({"type": "publish", "channel": "chat:" + "x" * 10240, "data": 1}, "bad_channel"),
    ({"type": "subscribe", "channel": "chat:x", "since": -1}, "bad_since"),
    ({"type": "subscribe", "channel": "chat:x", "since": "5"}, "bad_since"),
    ({"type": "subscribe", "channel": "chat:x", "since": 1.5}, "bad_since"),
    ({"type": "subscribe", "channel": "chat:x", "since": True}, "bad_since"),
    ({"type": "subscribe", "channel": "chat:x", "since": 2**64}, "bad_since"),
    ({"type": "subscribe", "channel": "chat:x", "snice": 1}, "bad_message"),
    ({"type": "refresh"}, "bad_token"),
])
async def test_bad_input_gets_an_error_and_the_connection_stays(running: Running, message, code) -> None:
    with trio.fail_after(10):
        async with connect(running) as ws, connect(running, "bob", "chat:read") as other:
            assert await call(other, type="subscribe", id=0, channel="chat:x") == {"type": "ack", "id": 0}
            answer = await call(ws, **message, id="bad")
            assert answer["type"] == "error" and answer["code"] == code and answer["message"], answer
            # Still usable, and nobody else noticed.
            assert await call(ws, type="publish", id="ok", channel="chat:x", data=1) == {
                "type": "ack", "id": "ok", "seq": 1}
            assert (await recv(other))["seq"] == 1
            await quiet(other)


async def test_deeply_nested_data_is_refused_and_the_connection_stays(running: Running) -> None:
    async def publish(depth: int) -> dict[str, Any]:
        await ws.send_message('{"type":"publish","id":%d,"channel":"chat:deep","data":%s%s}'
                              % (depth, "[" * depth, "]" * depth))
        answer = await recv(ws)
        # Too deep to parse means the id could not be read either.
        assert answer.get("id", depth) == depth, answer
        return answer

    with trio.fail_after(10):
        async with connect(running) as ws:
            assert (await publish(100))["type"] == "ack"
            for depth in (5000, 20000):
                answer = await publish(depth)
                assert answer["type"] == "error" and answer["code"] == "bad_message", answer
            # Around the recursion limit: parsed and encoded, or refused as
            # bad_message / bad_data; never a crash or a dropped connection.
            for depth in range(900, 1000, 4):
                answer = await publish(depth)
                assert answer["type"] == "ack" or answer["code"] in ("bad_message", "bad_data"), answer
            assert (await call(ws, type="ping", id="p"))["type"] == "pong"


async def test_api_publish_bad_input(running: Running) -> None:
    token = running.mint()
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            url = running.url("/api/publish")
            auth = {"authorization": f"Bearer {token}"}
            for body, code in (
                ({"channel": "chat:" + "x" * 10240, "data": 1}, "bad_channel"),
                ({"channel": 5, "data": 1}, "bad_channel"),
                ({"data": 1}, "invalid_request"),
                ([1, 2], "invalid_request"),
                ({"channel": "chat:x", "data": 1, "extra": 2}, "invalid_request"),
            ):
                answer = await client.post(url, json=body, headers=auth)
                assert answer.status_code == 400, (body, answer.text)
                assert answer.json()["error"] == code
            answer = await client.post(url, content=b"{nope", headers={**auth, "content-type": "application/json"})
            assert answer.status_code == 400
            answer = await client.post(url, json={"channel": "chat:x", "data": 1}, headers=auth)
            assert answer.status_code == 200 and answer.json() == {"delivered": 0, "seq": 1}


async def test_ten_thousand_subscribes_from_one_connection(start_server, make_settings) -> None:
    # The message rate limit would end this flood; here it is the subscription cap under test.
    running = await start_server(make_settings(websocket={"message_rate": "100000/s"}))
    limit = running.state.settings.websocket.max_subscriptions
    total = 10_000
    answers: dict[str, int] = {}
    with trio.fail_after(20):
        async with connect(running) as greedy, connect(running, "bob", "chat:read") as bystander:
            async def flood() -> None:
                for i in range(total):
                    await send(greedy, type="subscribe", id=i, channel=f"chat:{i}")

            async def collect() -> None:
                for i in range(total):
                    m = await recv(greedy)
                    assert m["id"] == i, m
                    key = "ack" if m["type"] == "ack" else m["code"]
                    answers[key] = answers.get(key, 0) + 1

            async def others() -> None:
                # While the flood runs another connection is answered at once.
                for i in range(20):
                    with trio.fail_after(2):
                        assert (await call(bystander, type="ping", id=i))["type"] == "pong"
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                nursery.start_soon(collect)
                nursery.start_soon(others)

            assert answers == {"ack": limit, "too_many_subscriptions": total - limit}
            # The connection stays, and its first subscriptions still work.
            await quiet(greedy)
            assert await call(greedy, type="unsubscribe", id="u", channel="chat:0") == {"type": "ack", "id": "u"}
            assert await call(greedy, type="subscribe", id="s", channel="chat:fresh") == {"type": "ack", "id": "s"}
            await send(greedy, type="publish", id="p", channel=f"chat:{limit - 1}", data=1)
            assert (await recv(greedy))["channel"] == f"chat:{limit - 1}"
            assert await recv(greedy) == {"type": "ack", "id": "p", "seq": 1}
    assert running.state.hub.subscription_count == 0


# ---------------------------------------------------------------------------
# 8. refresh to fewer scopes


async def test_refresh_to_fewer_scopes_drops_the_subscription(running: Running) -> None:
    with trio.fail_after(10):
        async with connect(running, "alice", "chat:read news:read") as alice:
            assert await call(alice, type="subscribe", id=1, channel="chat:keep") == {"type": "ack", "id": 1}
            assert await call(alice, type="subscribe", id=2, channel="news:drop") == {"type": "ack", "id": 2}

            fewer = running.mint("alice", "chat:read")
            await send(alice, type="refresh", id=3, token=fewer)
            refreshed = await recv(alice)
            assert refreshed["type"] == "refreshed" and refreshed["id"] == 3
            revoked = await recv(alice)
            assert revoked["type"] == "error" and revoked["code"] == "subscription_revoked"
            assert "id" not in revoked and "news:drop" in revoked["message"]
            await quiet(alice)

            news = await api_publish(running, "news:drop", "gone", running.mint("alice", "news:write"))
            assert news.json() == {"delivered": 0, "seq": 1}
            chat = await api_publish(running, "chat:keep", "kept", running.mint("alice", "chat:write"))
            assert chat.json() == {"delivered": 1, "seq": 1}
            assert (await recv(alice))["data"] == "kept"
            await quiet(alice)

            # And the old scope is really gone: subscribing again is refused.
            again = await call(alice, type="subscribe", id=4, channel="news:drop")
            assert again["code"] == "forbidden"
