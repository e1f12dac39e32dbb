"""Issue 18, M5 over real sockets: every client message passes the
per-connection ``[websocket] message_rate`` bucket, and join/leave churn
is debounced, so a subscribe-only user looping subscribe/unsubscribe on a
``join_leave`` channel is closed 4008 and costs each listener a bounded
number of frames."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed
from wsproto.events import CloseConnection, TextMessage

from realtime.config.settings import ChannelRule
from tests.helpers.server import Running
from tests.helpers.settings import CHANNELS, USERS
from tests.helpers.ws import RawClient, call, connect, quiet, recv, send

ROOMS = (
    ChannelRule("room:*", subscribe_scope="chat:read", publish_scope="chat:write", presence=True, join_leave=True),
    *CHANNELS,
)


@pytest.fixture
async def churn_server(start_server, make_settings) -> Running:
    # carol, a user of no chat scope, gets chat:read here: a subscribe-only user.
    users = dict(USERS)
    users["carol"] = attrs.evolve(users["carol"], scopes=("chat:read",))
    return await start_server(make_settings(
        channels=ROOMS, users=users, websocket={"message_rate": "20/s", "join_leave_debounce": 0.2}))


async def test_subscribe_churn_is_closed_4008_and_listeners_get_few_events(churn_server: Running) -> None:
    running = churn_server
    channel = "room:lobby"
    with trio.fail_after(20):
        listeners = []
        async with connect(running, "bob", "chat:read") as bob, connect(running, "alice", "chat:read") as alice:
            for ws in (bob, alice):
                assert await call(ws, type="subscribe", id=1, channel=channel) == {"type": "ack", "id": 1}
                listeners.append(ws)
            assert await recv(bob) == {"type": "join", "channel": channel, "sub": "alice"}

            sent = 0
            async with connect(running, "carol", "chat:read") as mallory:
                with pytest.raises(ConnectionClosed) as closed:
                    for _ in range(1000):
                        await send(mallory, type="subscribe", channel=channel)
                        await send(mallory, type="unsubscribe", channel=channel)
                        sent += 2
                    while True:  # not closed by now: read until it is, or time out
                        await mallory.get_message()
                assert (closed.value.reason.code, closed.value.reason.reason) == (4008, "message rate limit")
            assert sent < 1000

            for ws in listeners:
                # The held leave goes out when the window ends; then nothing more.
                events = []
                while not events or events[-1]["type"] != "leave":
                    event = await recv(ws)
                    assert event["sub"] == "carol", event
                    events.append(event)
                await quiet(ws)
                assert [e["type"] for e in events] == ["join", "leave"]


async def write_at_once(client: RawClient, messages: list[dict[str, Any]]) -> None:
    """Every message in one write: the server gets them in the same instant."""
    await client.stream.send_all(b"".join(client.ws.send(TextMessage(json.dumps(m))) for m in messages))


async def test_a_full_resubscription_then_more_messages_is_served(running: Running) -> None:
    """With the defaults (``message_rate`` "100/s", ``max_subscriptions``
    100), a client that resubscribes to its 100 channels and sends a few
    more messages in one write is answered, not closed 4008 (and so does
    not loop reconnecting); a flood is still closed."""
    ws_settings = running.state.settings.websocket
    assert (ws_settings.message_rate, ws_settings.max_subscriptions) == ("100/s", 100)
    with trio.fail_after(20):
        client = await RawClient.open(running, running.mint())
        async with client.stream:
            await write_at_once(client, [{"type": "subscribe", "id": i, "channel": f"chat:{i}"} for i in range(100)]
                                + [{"type": "ping", "id": f"p{i}"} for i in range(5)])
            answers: list[Any] = []
            while len(answers) < 105:
                events = await client.events()
                assert all(isinstance(e, TextMessage) for e in events), events
                answers += [m for m in map(json.loads, (e.data for e in events)) if m["type"] != "welcome"]
            assert answers[:100] == [{"type": "ack", "id": i} for i in range(100)]
            assert answers[100:] == [{"type": "pong", "id": f"p{i}"} for i in range(5)]

        flood = await RawClient.open(running, running.mint(sub="bob"))
        async with flood.stream:
            await write_at_once(flood, [{"type": "ping"}] * 300)
            pongs = 0
            while True:
                events = await flood.events()
                assert events, "EOF without a close frame"
                pongs += sum(isinstance(e, TextMessage) and json.loads(e.data)["type"] == "pong" for e in events)
                closes = [e for e in events if isinstance(e, CloseConnection)]
                if closes:
                    break
            assert (closes[0].code, closes[0].reason) == (4008, "message rate limit")
            assert 200 <= pongs < 300
