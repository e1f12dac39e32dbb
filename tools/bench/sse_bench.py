"""SSE fan-out beside WebSocket fan-out, in one run against one server (issue 21).

    python tools/bench/sse_bench.py              # 1000 subscribers, 8 s windows
    python tools/bench/sse_bench.py --n 100 --seconds 2 --messages 50   # a quick look

Starts ``realtime serve`` (run.py's config, keys and tokens; core 0 with
``taskset`` where it exists), then for each transport in turn:

- N subscribers of one channel: ``/ws`` (subscribe message) or ``GET /sse``;
- **deliveries/s**: a WebSocket publisher keeps 8 publishes (~100-byte
  ``data``) in flight for the window; deliveries = messages read by all
  subscribers / seconds;
- **latency**: one message in flight, publish time inside it, measured at
  each subscriber when it is read; p50/p99 over every (message, subscriber).

The generator is this process (asyncio, raw sockets, counting events
without decoding JSON in the throughput window) on core 1.  Beside each
figure: the server's and the generator's CPU over the window; a figure is
a lower bound when the generator was above 90% of its core.  The last
line is ``sse-bench: ws_dps=.. sse_dps=.. ws_p99_ms=.. sse_p99_ms=..``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run  # noqa: E402  (run.py re-executes under the project venv when needed)

CHANNEL = "chat:bench"
PAD = "x" * 60


def now_ms() -> float:
    return time.perf_counter() * 1000


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ws_frame(payload: bytes) -> bytes:
    """A masked client text frame (RFC 6455 §5.3; a zero mask is still a mask)."""
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


class Subscriber:
    """One raw connection; counts messages, or records latencies when asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str) -> None:
        self.reader, self.writer, self.kind = reader, writer, kind
        self.count = 0
        self.latencies: list[float] | None = None
        self.buf = b""
        self.got = asyncio.Event()

    async def pump(self) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.buf += data
            if self.kind == "sse":
                self._sse()
            else:
                self._ws()

    def _sse(self) -> None:
        *events, self.buf = self.buf.split(b"\n\n")
        for event in events:
            if event.startswith(b"event: message"):
                self._message(event)

    def _ws(self) -> None:
        buf, i = self.buf, 0
        while len(buf) - i >= 2:
            n, start = buf[i + 1] & 0x7F, i + 2
            if n == 126:
                if len(buf) - i < 4:
                    break
                n, start = int.from_bytes(buf[i + 2:i + 4], "big"), i + 4
            elif n == 127:
                if len(buf) - i < 10:
                    break
                n, start = int.from_bytes(buf[i + 2:i + 10], "big"), i + 10
            if len(buf) < start + n:
                break
            payload = buf[start:start + n]
            if payload.startswith(b'{"type":"message"'):
                self._message(payload)
            i = start + n
        self.buf = buf[i:]

    def _message(self, raw: bytes) -> None:
        self.count += 1
        if self.latencies is not None:
            at = raw.index(b'"t":') + 4
            self.latencies.append(now_ms() - float(raw[at:raw.index(b",", at)]))
        self.got.set()


async def open_raw(host: str, port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0] and b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"refused: {head[:200]!r}")
    return reader, writer, head


def ws_request(token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /ws HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n"
            f"authorization: Bearer {token}\r\n\r\n").encode()


async def subscriber(kind: str, host: str, port: int, token: str) -> Subscriber:
    if kind == "sse":
        request = (f"GET /sse?channel={CHANNEL} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n"
                   f"authorization: Bearer {token}\r\n\r\n").encode()
        reader, writer, _ = await open_raw(host, port, request)
        sub = Subscriber(reader, writer, kind)
        while b"event: welcome" not in sub.buf:
            sub.buf += await reader.read(65536)
        sub.buf = sub.buf.split(b"\n\n", 1)[1]
        return sub
    reader, writer, _ = await open_raw(host, port, ws_request(token))
    writer.write(ws_frame(json.dumps({"type": "subscribe", "channel": CHANNEL, "id": "s"}).encode()))
    sub = Subscriber(reader, writer, kind)
    while b'"type":"ack"' not in sub.buf:
        sub.buf += await reader.read(65536)
    sub.buf = b""
    return sub


class Publisher:
    """A WebSocket publisher that counts acks."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.acked = 0
        self.sent = 0
        self.ack = asyncio.Event()

    async def pump(self) -> None:
        buf = b""
        while True:
            data = await self.sub.reader.read(65536)
            if not data:
                return
            buf += data
            self.acked += buf.count(b'"type":"ack"')
            buf = buf[buf.rfind(b"}") + 1:] if b"}" in buf else buf
            self.ack.set()

    def publish(self) -> None:
        self.sent += 1
        body = json.dumps({"type": "publish", "channel": CHANNEL, "id": self.sent,
                           "data": {"t": round(now_ms(), 3), "pad": PAD}}).encode()
        self.sub.writer.write(ws_frame(body))


async def measure(kind: str, server: run.Server, token: str, n: int, seconds: float, messages: int) -> dict[str, Any]:
    host, port = server.bound["http"].rsplit(":", 1)
    subs: list[Subscriber] = []
    for start in range(0, n, 100):
        subs.extend(await asyncio.gather(*(subscriber(kind, host, int(port), token)
                                           for _ in range(start, min(n, start + 100)))))
    reader, writer, _ = await open_raw(host, int(port), ws_request(token))
    publisher = Publisher(Subscriber(reader, writer, "ws"))
    tasks = [asyncio.create_task(s.pump()) for s in subs] + [asyncio.create_task(publisher.pump())]
    await asyncio.sleep(0.5)  # let the subscriptions settle (the bench's own pacing)

    # Throughput: 8 publishes in flight for `seconds`.
    before = [s.count for s in subs]
    cpu_server, cpu_gen, t0 = run.cpu_seconds(server.pid), own_cpu(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        while publisher.sent - publisher.acked < 8:
            publisher.publish()
        publisher.ack.clear()
        await publisher.ack.wait()
    elapsed = time.perf_counter() - t0
    delivered = sum(s.count - b for s, b in zip(subs, before))
    server_cpu = 100 * (run.cpu_seconds(server.pid) - cpu_server) / elapsed
    gen_cpu = 100 * (own_cpu() - cpu_gen) / elapsed
    await asyncio.sleep(1.0)  # drain what is in flight before the latency phase

    # Latency: one message in flight, every subscriber must read it.
    for s in subs:
        s.latencies = []
    for _ in range(messages):
        target = [s.count + 1 for s in subs]
        publisher.publish()
        for s, want in zip(subs, target):
            while s.count < want:
                s.got.clear()
                await asyncio.wait_for(s.got.wait(), 30)
    lat = sorted(x for s in subs for x in (s.latencies or []))
    for task in tasks:
        task.cancel()
    for s in [*subs, publisher.sub]:
        s.writer.close()
    return {
        "transport": kind, "subscribers": n, "deliveries_per_s": delivered / elapsed,
        "server_cpu_pct": server_cpu, "gen_cpu_pct": gen_cpu,
        "p50_ms": lat[len(lat) // 2] if lat else None, "p99_ms": lat[int(len(lat) * 0.99)] if lat else None,
        "latency_samples": len(lat),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="subscribers per transport")
    parser.add_argument("--seconds", type=float, default=8.0, help="throughput window per transport")
    parser.add_argument("--messages", type=int, default=200, help="latency samples (messages) per transport")
    args = parser.parse_args(argv)
    run.raise_nofile(args.n * 2 + 100)
    core = run.pin(1)
    if core:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        setup = run.Setup(Path(tmp))
        server = setup.server("realtime").start()
        try:
            token = setup.tokens(1)[0]
            results = [asyncio.run(measure(kind, server, token, args.n, args.seconds, args.messages))
                       for kind in ("ws", "sse")]
        finally:
            server.stop()
    print("| transport | subscribers | deliveries/s | server CPU | generator CPU | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        bound = "≥ " if r["gen_cpu_pct"] > run.GEN_BUSY else ""
        print(f"| {r['transport']} | {r['subscribers']} | {bound}{r['deliveries_per_s']:,.0f} | "
              f"{r['server_cpu_pct']:.0f}% | {r['gen_cpu_pct']:.0f}% | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    ws, sse = results
    print(f"sse-bench: ws_dps={ws['deliveries_per_s']:.0f} sse_dps={sse['deliveries_per_s']:.0f} "
          f"ws_p99_ms={ws['p99_ms']:.2f} sse_p99_ms={sse['p99_ms']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
