"""CPU per publish through the Redis broker, by how many publishes are in flight.

    python tools/bench/publish_cpu.py [--count 3000] [--concurrency 1,4,10,50]

Starts a private ``redis-server`` (``run.start_redis``: free loopback port,
temp dir, no persistence) and one :class:`realtime.net.redis.broker.RedisBroker` in
this process, then, for each concurrency C, runs ``--count`` publishes
from C tasks at once and prints this process's CPU time per publish and
publishes/s.  CPU time, not wall time, is the figure to compare: it
counts what the node spends (coredis included), whatever else the
machine does.  Bounded: about ten seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run  # noqa: E402  (for start_redis; it puts the project root on sys.path)
import trio  # noqa: E402

from realtime.net.redis.broker import RedisBroker  # noqa: E402


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
    with tempfile.TemporaryDirectory() as work:
        try:
            redis, url = run.start_redis(Path(work))
        except RuntimeError as exc:
            print(f"publish_cpu: {exc}", file=sys.stderr)
            return 2
        try:
            trio.run(measure, url, args.count, [int(x) for x in args.concurrency.split(",")])
        finally:
            redis.terminate()
            redis.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
