"""SIGTERM with a ``[broker] url``: every stop is clean.

Before the fix about one SIGTERM in three ended with exit 1: the server
cancelled its whole nursery at once, so coredis' pub/sub cleanup and its
connection pool were cancelled together, the pool closed the connection
first, and the pub/sub's UNSUBSCRIBE raised ``anyio.ClosedResourceError``
out of the nursery after "stopped".  Here a real server process on a real
redis-server is started and stopped 20 times while one WebSocket client
publishes and another receives through Redis; every stop must close both
sockets with 1001 and exit 0 with no traceback.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from realtime.tokens.keyring import KeyRing, issue_access_token
from tests.helpers.redis import RedisServer
from tests.helpers.server import ServerProcess, write_conf

CYCLES = 20


def token_for(state_dir: Path, scope: str) -> str:
    ring = KeyRing.load(state_dir / "keys")
    token, _ = issue_access_token(ring, issuer="https://localhost", audience="https://localhost", sub="alice",
                                  client_id="chat-app", scope=scope.split(), ttl=60)
    return token


async def close_code(ws: Any) -> int:
    """Read (and drop) messages until the socket closes; its close code."""
    while True:
        try:
            await ws.get_message()
        except ConnectionClosed as closed:
            return int(closed.reason.code)


async def one_cycle(root: Path, config: Path) -> tuple[int, int, int, list[str]]:
    """Start, publish through Redis, SIGTERM: (exit code, subscriber's and
    publisher's close codes, the log)."""
    async with trio.open_nursery() as nursery:
        server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], root)
        await server.wait_for_line("broker: connected")
        state_dir = config.parent / "var"
        url = f"ws://{bound['http']}/ws"
        auth = [(b"authorization", f"Bearer {token_for(state_dir, 'chat:read chat:write')}".encode())]
        async with open_websocket_url(url, extra_headers=auth) as sub, \
                open_websocket_url(url, extra_headers=auth) as pub:
            for ws in (sub, pub):
                assert json.loads(await ws.get_message())["type"] == "welcome"
            await sub.send_message(json.dumps({"type": "subscribe", "id": 1, "channel": "chat:room"}))
            assert json.loads(await sub.get_message()) == {"type": "ack", "id": 1}
            publisher_closed: list[int] = []
            publisher_done = trio.Event()

            async def publish_until_closed() -> None:
                n = 0
                try:
                    while True:
                        n += 1
                        await pub.send_message(json.dumps(
                            {"type": "publish", "id": n, "channel": "chat:room", "data": {"n": n}}))
                        await pub.get_message()  # its ack (or an error): read, so the close frame is too
                except ConnectionClosed as closed:
                    publisher_closed.append(int(closed.reason.code))
                    publisher_done.set()

            nursery.start_soon(publish_until_closed)
            # Messages flow through Redis pub/sub to the subscriber: stop mid-stream.
            for _ in range(3):
                message = json.loads(await sub.get_message())
                assert message["type"] == "message" and message["channel"] == "chat:room", message
            server.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                sub_code = await close_code(sub)
                rc = await server.proc.wait()
            with trio.fail_after(5):
                await publisher_done.wait()
        return rc, sub_code, publisher_closed[0], server.lines


async def test_twenty_sigterms_with_a_broker_all_exit_0_with_1001(tmp_path: Path, redis: RedisServer) -> None:
    config = write_conf(tmp_path)
    config.write_text(config.read_text() + f'\n[broker]\nurl = "{redis.url}"\n')
    failures: list[str] = []
    for cycle in range(CYCLES):
        rc, sub_code, pub_code, lines = await one_cycle(tmp_path, config)
        log = "\n".join(lines)
        if rc != 0 or sub_code != 1001 or pub_code != 1001 or "Traceback" in log:
            failures.append(f"cycle {cycle}: exit {rc}, closes {sub_code}/{pub_code}\n{log[-3000:]}")
    assert not failures, f"{len(failures)} of {CYCLES} stops were not clean:\n" + "\n".join(failures)
