#!/usr/bin/env python3
"""Soak: many authenticated WebSocket connections, a steady publisher and
short-lived tokens refreshed in-band, for minutes; a table each minute.

    .venv/bin/python tools/soak/run.py                       # 5,000 connections, 10 minutes
    .venv/bin/python tools/soak/run.py -n 2000 -d 3          # shorter
    .venv/bin/python tools/soak/run.py --rate 20 --channels 20 --token-ttl 60

What it proves: flat server memory, no fd leak, no lost message, and
token refresh all along (issue 13 §6).  Not run in CI.

How: the server runs as a subprocess (``python -m realtime serve``) on a
generated config in a temp dir (HTTP on 127.0.0.1:0, ES256 tokens,
``expiry_warning`` shorter than the token lifetime).  This process reads
the server's signing key from its state dir to mint tokens (as the
authorization server would), opens N connections with a lean wsproto
client, subscribes each to one of ``--channels`` channels, and then a
publisher connection publishes ``--rate`` messages per second round-robin
over the channels.  Every connection answers ``token_expiring`` with a
``refresh`` carrying a fresh token, so each connection refreshes about
every ``token_ttl - expiry_warning`` seconds.

Each minute: server RSS and open fds (``/proc/PID``), open connections,
messages delivered vs expected (expected = publishes acked on a
connection's channel since the publisher started, all connections being
subscribed before it starts), messages lost (gaps in ``seq``), refreshes,
closes by code.  At the end the publisher stops, deliveries drain, and the
last line compares the exact totals.  Exit 1 if anything was lost or a
connection closed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / ".venv" / "bin" / "python"
if Path(sys.executable).resolve() != VENV_PY.resolve() and VENV_PY.exists() and "REALTIME_SOAK_REEXEC" not in os.environ:
    os.environ["REALTIME_SOAK_REEXEC"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import (  # noqa: E402
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from realtime.tokens.keyring import KeyRing, issue_access_token  # noqa: E402

ISSUER = "https://soak.localhost"
APP, USER = "soak-app", "soak"


def write_config(tmp: Path, args: argparse.Namespace) -> Path:
    (tmp / "apps.toml").write_text(
        f'[[app]]\nname = "Soak"\nclient_id = "{APP}"\npublic = true\n'
        'redirect_uris = ["http://127.0.0.1/cb"]\ngrant_types = ["authorization_code", "refresh_token"]\n'
        'scopes = ["chat:read", "chat:write"]\n'
    )
    (tmp / "users.json").write_text(json.dumps({"users": [{"name": USER, "scopes": ["chat:read", "chat:write"]}]}))
    conf = tmp / "realtime.toml"
    conf.write_text(f"""
[server]
http = "127.0.0.1:0"
https = ""
state_dir = "state"
public_url = "{ISSUER}"
max_connections = {args.connections * 2 + 100}
max_connections_per_ip = {args.connections * 2 + 100}
log_level = "info"

[oauth]
apps = "apps.toml"
users = "users.json"
signing_alg = "ES256"
access_token_ttl = "{int(args.token_ttl)}s"

[websocket]
path = "/ws"
expiry_warning = "{int(args.warning)}s"
ping_interval = "25s"
pong_timeout = "10s"
publish_rate = "{max(50, int(args.rate * 2))}/s"
message_rate = "{max(100, int(args.rate * 4))}/s"

[[channel]]
pattern = "soak:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
history = 10
""")
    return conf


class Server:
    def __init__(self, conf: Path) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_PY), "-m", "realtime", "serve", "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=conf.parent,
        )
        self.port = 0
        self.log: list[str] = []
        deadline = time.monotonic() + 60
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise SystemExit(f"soak: server exited: {''.join(self.log)}")
            self.log.append(line)
            m = re.search(r"listening http=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            raise SystemExit("soak: server did not start")
        # Keep reading its log so a full pipe never blocks the server.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            del self.log[:-200]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


class Stats:
    def __init__(self) -> None:
        self.open = 0
        self.delivered = 0
        self.lost = 0
        self.dupes = 0
        self.refreshed = 0
        self.refresh_errors = 0
        self.errors = 0
        self.closes: Counter[int] = Counter()
        self.published: Counter[str] = Counter()  # acked publishes per channel
        self.subscribers: Counter[str] = Counter()

    def expected(self) -> int:
        return sum(self.published[c] * n for c, n in self.subscribers.items())


class Minter:
    def __init__(self, state_dir: Path, ttl: float) -> None:
        self.ring = KeyRing.load(state_dir / "keys")
        self.ttl = ttl

    def token(self, ttl: float | None = None) -> str:
        token, _ = issue_access_token(self.ring, issuer=ISSUER, audience=ISSUER, sub=USER, client_id=APP,
                                      scope=["chat:read", "chat:write"], ttl=ttl or self.ttl)
        return token


class Client:
    """One lean WebSocket client: wsproto over a trio stream."""

    def __init__(self, port: int, minter: Minter, stats: Stats, channel: str) -> None:
        self.port = port
        self.minter = minter
        self.stats = stats
        self.channel = channel
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.stream: trio.SocketStream | None = None
        self.last_seq: int | None = None
        self.subscribed = trio.Event()
        self.acks: dict[int, trio.Event] = {}
        self.ack_seq: dict[int, int] = {}
        self.send_lock = trio.Lock()

    async def connect(self, first_ttl: float) -> None:
        self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        token = self.minter.token(first_ttl)
        await self.stream.send_all(self.ws.send(Request(
            host=f"127.0.0.1:{self.port}", target="/ws", extra_headers=[(b"authorization", f"Bearer {token}".encode())])))
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during handshake")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"rejected {event.status_code}")

    async def send(self, obj: dict) -> None:
        await self._send_raw(self.ws.send(TextMessage(json.dumps(obj, separators=(",", ":")))))

    async def _send_raw(self, data: bytes) -> None:
        assert self.stream is not None
        async with self.send_lock:
            await self.stream.send_all(data)

    async def run(self, subscribe: bool = True) -> None:
        assert self.stream is not None
        stats = self.stats
        counted = subscribe  # the publisher is not one of the N
        stats.open += counted
        try:
            if subscribe:
                await self.send({"type": "subscribe", "channel": self.channel, "id": 0})
            while True:
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    if isinstance(event, TextMessage):
                        await self._on_text(event.data)
                    elif isinstance(event, Ping):
                        await self._send_raw(self.ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        stats.closes[event.code] += 1
                        try:
                            await self._send_raw(self.ws.send(event.response()))
                        except Exception:  # noqa: BLE001 - best effort
                            pass
                        return
                if not data:
                    stats.closes[1006] += 1
                    return
        finally:
            stats.open -= counted
            await self.stream.aclose()

    async def _on_text(self, text: str) -> None:
        stats = self.stats
        msg = json.loads(text)
        kind = msg.get("type")
        if kind == "message":
            seq = msg["seq"]
            if self.last_seq is not None:
                if seq <= self.last_seq:
                    stats.dupes += 1
                    return
                stats.lost += seq - self.last_seq - 1
            self.last_seq = seq
            stats.delivered += 1
        elif kind == "token_expiring":
            await self.send({"type": "refresh", "token": self.minter.token(), "id": "r"})
        elif kind == "refreshed":
            stats.refreshed += 1
        elif kind == "ack":
            mid = msg.get("id")
            if mid == 0:
                stats.subscribers[self.channel] += 1
                self.subscribed.set()
            elif isinstance(mid, int) and mid in self.acks:
                self.ack_seq[mid] = msg.get("seq", 0)
                self.acks.pop(mid).set()
        elif kind == "error":
            if msg.get("id") == "r":
                stats.refresh_errors += 1
            else:
                stats.errors += 1


async def soak(args: argparse.Namespace, server: Server, minter: Minter) -> int:
    stats = Stats()
    channels = [f"soak:{i}" for i in range(args.channels)]
    print(f"soak: server pid {server.pid} port {server.port}; opening {args.connections} connections", flush=True)
    t0 = time.monotonic()
    clients: list[Client] = []
    async with trio.open_nursery() as nursery:
        limit = trio.CapacityLimiter(200)

        async def open_one(i: int) -> None:
            async with limit:
                client = Client(server.port, minter, stats, channels[i % len(channels)])
                # Spread first expiries so refreshes do not come in waves.
                await client.connect(first_ttl=args.warning + 5 + random.uniform(0, args.token_ttl))
                clients.append(client)
                nursery.start_soon(client.run)
                await client.subscribed.wait()

        async with trio.open_nursery() as opening:
            for i in range(args.connections):
                opening.start_soon(open_one, i)
        print(f"soak: {len(clients)} connected and subscribed in {time.monotonic() - t0:.1f}s; "
              f"rss={server.rss_mib():.1f} MiB fds={server.fds()}", flush=True)

        publisher = Client(server.port, minter, stats, "")
        await publisher.connect(first_ttl=args.token_ttl)
        nursery.start_soon(publisher.run, False)

        header = ("| minute | server RSS MiB | server fds | open conns | published | delivered | expected "
                  "| lost | refreshed | refresh errors | closes |")
        print(header + "\n|" + "---|" * 11, flush=True)
        rows = [header, "|" + "---|" * 11]

        def row(label: str) -> None:
            line = (f"| {label} | {server.rss_mib():.1f} | {server.fds()} | {stats.open} | {sum(stats.published.values())} "
                    f"| {stats.delivered} | {stats.expected()} | {stats.lost} | {stats.refreshed} | {stats.refresh_errors} "
                    f"| {dict(stats.closes) or '-'} |")
            rows.append(line)
            print(line, flush=True)

        row("0")
        start = trio.current_time()
        end = start + args.duration * 60
        interval = 1.0 / args.rate
        mid = 0
        next_row = start + 60
        next_pub = start
        while trio.current_time() < end:
            await trio.sleep_until(next_pub)
            next_pub += interval
            mid += 1
            channel = channels[mid % len(channels)]
            done = trio.Event()
            publisher.acks[mid] = done
            await publisher.send({"type": "publish", "channel": channel, "data": {"n": mid, "pad": "x" * 64}, "id": mid})
            with trio.move_on_after(10):
                await done.wait()
            if done.is_set():
                stats.published[channel] += 1
            else:
                stats.errors += 1
            if trio.current_time() >= next_row:
                row(str(round((trio.current_time() - start) / 60)))
                next_row += 60
        # Drain: wait until every expected delivery arrived (bounded).
        with trio.move_on_after(30):
            while stats.delivered < stats.expected():
                await trio.sleep(0.2)
        row("end")
        nursery.cancel_scope.cancel()

    ok = stats.lost == 0 and stats.delivered == stats.expected() and not stats.closes and stats.refresh_errors == 0
    print(f"soak: connections={args.connections} minutes={args.duration} delivered={stats.delivered} "
          f"expected={stats.expected()} lost={stats.lost} dupes={stats.dupes} refreshed={stats.refreshed} "
          f"refresh_errors={stats.refresh_errors} errors={stats.errors} closes={dict(stats.closes)} "
          f"{'OK' if ok else 'FAILED'}", flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=5000)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="minutes")
    parser.add_argument("--rate", type=float, default=10.0, help="publishes per second (total)")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--token-ttl", type=float, default=60.0, help="seconds; refresh tokens live this long")
    parser.add_argument("--warning", type=float, default=20.0, help="expiry_warning seconds")
    parser.add_argument("--out", help="also write the table here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections * 2 + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))  # the server inherits it
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < args.connections + 200:
        raise SystemExit(f"soak: RLIMIT_NOFILE hard limit {hard} is too low for {args.connections} connections")

    tmp = Path(tempfile.mkdtemp(prefix="realtime-soak-"))
    server = Server(write_config(tmp, args))
    try:
        minter = Minter(tmp / "state", args.token_ttl)
        return trio.run(soak, args, server, minter)
    finally:
        rc = server.stop()
        print(f"soak: server exit {rc}", flush=True)
        if args.keep:
            print(f"soak: files in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
