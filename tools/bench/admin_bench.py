"""Figures for issue 20: webhook throughput, and the time from
``POST /api/revoke`` on one node to the last 4003 on another.

Usage (from the repo root; needs ``redis-server`` for ``revoke``):

    .venv/bin/python tools/bench/admin_bench.py webhooks [--events 5000] [--channels 1|16]
    .venv/bin/python tools/bench/admin_bench.py revoke [--connections 200]

Everything runs in this process on 127.0.0.1: real servers (the test
harness), a real webhook receiver (trio + h11) that answers 200 at once
and checks every signature, a real redis-server in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trio
import trustme
from trio_websocket import ConnectionClosed, open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from realtime.config.settings import (  # noqa: E402
    Addr, BrokerSettings, ServerSettings, Settings, WebSocketSettings, WebhookSettings,
)
from tests.helpers.redis import RedisServer  # noqa: E402
from tests.helpers.server import Running  # noqa: E402
from tests.helpers.settings import APPS, CHANNELS, USERS  # noqa: E402
from tests.helpers.webhooks import Receiver  # noqa: E402

SECRET = b"bench-secret"


def settings(root: Path, **top: object) -> Settings:
    pem = root / "server.pem"
    if not pem.exists():
        trustme.CA().issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    server = ServerSettings(http=Addr("127.0.0.1", 0), https=None, tls_cert=pem, tls_key=pem,
                            state_dir=root / "state", public_url="https://localhost", shutdown_grace=1.0)
    ws = WebSocketSettings(ping_interval=0, publish_rate="100000/s", message_rate="100000/s")
    return Settings(server=server, websocket=ws, channels=CHANNELS, apps=dict(APPS), users=dict(USERS), **top)


async def webhooks(events: int, channels: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            receiver = Receiver(SECRET)
            await receiver.start(nursery)
            hook = WebhookSettings(url=receiver.url, secret=SECRET, events=("publish",), queue_size=events + 10)
            running = await Running.start(nursery, settings(Path(tmp), webhooks=(hook,)))
            token = running.mint()
            async with open_websocket_url(running.url("/ws", "ws"),
                                          extra_headers=[(b"authorization", f"Bearer {token}".encode())]) as ws:
                await ws.get_message()

                async def drain() -> None:  # read the acks, so the server never waits on us
                    try:
                        while True:
                            await ws.get_message()
                    except ConnectionClosed:
                        pass

                nursery.start_soon(drain)
                started = time.perf_counter()
                for i in range(events):
                    await ws.send_message(json.dumps({"type": "publish", "channel": f"chat:{i % channels}",
                                                      "data": i}))
                published = time.perf_counter() - started
                await receiver.wait_for(events, timeout=600)
                took = time.perf_counter() - started
            assert receiver.bad_signatures == 0
            print(f"webhooks: {events} publish events over {channels} channel(s): published in {published:.2f}s, "
                  f"all delivered and verified in {took:.2f}s = {events / took:.0f} events/s")
            running.stop()
            receiver.stop()


async def revoke(connections: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis")
        redis.start()
        try:
            async with trio.open_nursery() as nursery:
                conf = settings(Path(tmp), broker=BrokerSettings(url=redis.url, node_ttl=2.0))
                a = await Running.start(nursery, conf)
                b = await Running.start(nursery, conf)
                token = b.mint()
                closed_at: list[float] = []
                ready = trio.Semaphore(0)

                async def client() -> None:
                    async with open_websocket_url(b.url("/ws", "ws"), extra_headers=[
                            (b"authorization", f"Bearer {token}".encode())]) as ws:
                        await ws.get_message()
                        ready.release()
                        try:
                            await ws.get_message()
                        except ConnectionClosed as exc:
                            assert exc.reason.code == 4003
                            closed_at.append(time.perf_counter())

                async with trio.open_nursery() as clients:
                    for _ in range(connections):
                        clients.start_soon(client)
                    for _ in range(connections):
                        await ready.acquire()
                    import httpx
                    admin = a.mint(sub="chat-app", client_id="chat-app", scope="realtime:admin")
                    async with httpx.AsyncClient() as http:
                        started = time.perf_counter()
                        answer = await http.post(a.url("/api/revoke"), json={"sub": "alice"},
                                                 headers={"authorization": f"Bearer {admin}"})
                        answered = time.perf_counter() - started
                assert answer.json()["closed"] == connections, answer.text
                print(f"revoke: POST /api/revoke on node A answered in {answered * 1000:.1f} ms; "
                      f"last of {connections} 4003 on node B after {(max(closed_at) - started) * 1000:.1f} ms")
                a.stop()
                b.stop()
        finally:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("webhooks")
    w.add_argument("--events", type=int, default=5000)
    w.add_argument("--channels", type=int, default=1)
    r = sub.add_parser("revoke")
    r.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    if args.what == "webhooks":
        trio.run(webhooks, args.events, args.channels)
    else:
        trio.run(revoke, args.connections)


if __name__ == "__main__":
    main()
