"""Issue 18, M4 over a real server: large messages published to several
channels with no subscriber stay within ``[websocket] max_history_bytes``
(oldest evicted first) and a late ``since: 0`` says ``recovered: false``."""

from __future__ import annotations

import trio

from realtime.config.settings import ChannelRule
from tests.helpers.ws import api_publish, connect, recv, send

BIG = (ChannelRule("big:*", "chat:read", "chat:write", history=100, history_bytes=200_000),)
BLOB = "z" * 40_000


async def test_large_publishes_stay_within_the_history_budgets(start_server, make_settings) -> None:
    running = await start_server(make_settings(channels=BIG, websocket={"max_history_bytes": 300_000}))
    broker = running.state.hub.broker
    token = running.mint("alice", "chat:read chat:write")
    with trio.fail_after(30):
        for i in range(30):
            response = await api_publish(running, f"big:{i % 3}", {"n": i, "blob": BLOB}, token)
            assert response.status_code == 200, response.text
            assert broker.history_bytes <= 300_000
        async with connect(running, "alice", "chat:read") as ws:
            replayed = []
            for k in range(3):
                await send(ws, type="subscribe", id=k, channel=f"big:{k}", since=0)
                assert await recv(ws) == {"type": "ack", "id": k, "recovered": False}
                await send(ws, type="ping", id="end")
                while (message := await recv(ws))["type"] == "message":
                    replayed.append(message["data"]["n"])
                assert message == {"type": "pong", "id": "end"}
            # 7 frames of ~40 KB fit in 300 KB: the 7 newest, whatever their channel.
            assert sorted(replayed) == list(range(23, 30))
            assert broker.history_bytes <= 300_000
