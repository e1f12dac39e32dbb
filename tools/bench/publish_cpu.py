"""CPU per publish through the Redis broker, by how many publishes are in flight.

    python tools/bench/publish_cpu.py [--count 3000] [--concurrency 1,4,10,50]

Starts a private ``redis-server`` (free loopback port, temp dir, no
persistence) and one :class:`realtime.net.redis.broker.RedisBroker` in
this process, then, for each concurrency C, runs ``--count`` publishes
from C tasks at once and prints this process's CPU time per publish and
publishes/s.  CPU time, not wall time, is the figure to compare: it
counts what the node spends (coredis included), whatever else the
machine does.  Bounded: about ten seconds.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from realtime.net.redis.broker import RedisBroker  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(url: str, count: int, levels: list[int]) -> None:
    broker = RedisBroker(url)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        await broker.publish_async("bench:cpu", "bench", b"{}", 10)
        print(f"{'in flight':>9} {'CPU µs/publish':>15} {'publishes/s':>12}")
        for level in levels:
            each = max(1, count // level)

            async def publisher() -> None:
                for _ in range(each):
                    await broker.publish_async("bench:cpu", "bench", b'{"text":"hello"}', 10)

            cpu0, wall0 = time.process_time(), time.perf_counter()
            async with trio.open_nursery() as inner:
                for _ in range(level):
                    inner.start_soon(publisher)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            done = each * level
            print(f"{level:9d} {cpu / done * 1e6:15.0f} {done / wall:12.0f}")
        await broker.stop(2.0)
        nursery.cancel_scope.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,4,10,50")
    args = parser.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        print("publish_cpu needs redis-server (Debian package redis-server)", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        redis = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", work, "--daemonize", "no"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert redis.stdout is not None
            for line in redis.stdout:
                if "Ready to accept connections" in line:
                    break
            else:
                print("redis-server did not start", file=sys.stderr)
                return 2
            trio.run(measure, f"redis://127.0.0.1:{port}/0", args.count,
                     [int(x) for x in args.concurrency.split(",")])
        finally:
            redis.terminate()
            redis.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
