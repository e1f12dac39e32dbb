"""Deliveries/s and fan-out latency: in-process broker vs Redis, one node vs two.

    python tools/bench/broker_bench.py [--n 200] [--sat 5] [--lat 3] [--pubs 4] [--inflight 2]

Loopback only, bounded (about a minute).  Starts a private ``redis-server``
(free port, temp dir, no persistence) and ``python -m realtime serve``
nodes on one temp config and state_dir, then runs
tools/bench/broker_loadgen.js (Node ``ws``) against them:

- ``inproc-1``: one node, no ``[broker]`` (the baseline);
- ``redis-1``:  one node with ``[broker] url``; every publish goes through Redis;
- ``redis-2``:  two nodes on the same Redis, subscribers split between them,
  the publisher on the first (the same load as ``redis-1``).

Each scenario: ``--n`` subscribers of one channel, ``--pubs`` publishers
each keeping ``--inflight`` publishes unacknowledged (a connection's
publishes are answered in order, so with a remote broker one connection
has one publish in Redis at a time) for ``--sat`` seconds (deliveries/s
counted at the subscribers), then one message in flight for ``--lat``
seconds (publish to receipt, p50/p99 over all receivers).  The broker hop is
the latency difference redis-1 minus inproc-1.  On a 2-core machine the
generator, Redis and the node(s) share the cores: read the figures as
relative, not as a capacity.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from realtime.tokens.keyring import KeyRing, issue_access_token  # noqa: E402
from tests.helpers.redis import RedisServer  # noqa: E402

CONFIG = """
[server]
http = "127.0.0.1:0"
https = ""
state_dir = "var"
public_url = "https://localhost"
shutdown_grace = "2s"
log_level = "warning"

[oauth]
apps = "apps.toml"
users = "users.json"

[websocket]
ping_interval = 0
publish_rate = "1000000/s"
message_rate = "1000000/s"
max_backlog_bytes = 67108864

[[channel]]
pattern = "bench:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
history = 100
"""

APPS = """
[[app]]
name = "Bench"
client_id = "bench"
public = true
redirect_uris = ["http://127.0.0.1/cb"]
scopes = ["chat:read", "chat:write"]
"""


def start_node(conf: Path, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "-c", str(conf), "--log-level", "info"],
                            cwd=cwd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        match = re.search(r"listening http=(\S+)", line)
        if match:
            subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("node did not start")


def scenario(name: str, root: Path, redis_url: str | None, nodes: int, args: argparse.Namespace) -> dict:
    work = root / name
    conf_dir = work / "conf"
    conf_dir.mkdir(parents=True)
    text = CONFIG + (f'\n[broker]\nurl = "{redis_url}"\n' if redis_url else "")
    (conf_dir / "realtime.toml").write_text(text)
    (conf_dir / "apps.toml").write_text(APPS)
    (conf_dir / "users.json").write_text(json.dumps({"users": [
        {"name": "pub", "scopes": ["chat:write"]}, {"name": "sub", "scopes": ["chat:read"]}]}))
    procs: list[subprocess.Popen[str]] = []
    try:
        urls = []
        for _ in range(nodes):
            proc, addr = start_node(conf_dir / "realtime.toml", work)
            procs.append(proc)
            urls.append(f"ws://{addr}/ws")
        ring = KeyRing.load(conf_dir / "var" / "keys")

        def mint(sub: str, scope: str) -> str:
            return issue_access_token(ring, issuer="https://localhost", audience="https://localhost", sub=sub,
                                      client_id="bench", scope=scope.split(), ttl=600)[0]

        cfg = {"urls": urls, "n": args.n, "channel": f"bench:{name}", "inflight": args.inflight, "pubs": args.pubs,
               "sat_duration": args.sat, "lat_duration": args.lat, "pad": 60,
               "sub_token": mint("sub", "chat:read"), "pub_token": mint("pub", "chat:write")}
        done = subprocess.run(["node", str(ROOT / "tools/bench/broker_loadgen.js"), json.dumps(cfg)],
                              capture_output=True, text=True, timeout=args.sat + args.lat + 120,
                              cwd=ROOT / "tools/bench")
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{name}: loadgen failed:\n{done.stderr[-2000:]}")
        return json.loads(line[len("RESULT "):])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sat", type=float, default=5.0)
    parser.add_argument("--lat", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=2, help="unacknowledged publishes per publisher")
    parser.add_argument("--pubs", type=int, default=4, help="publisher connections")
    args = parser.parse_args()
    if shutil.which("node") is None:
        print("broker_bench needs node (Debian package nodejs) and tools/bench/node_modules (npm ci)")
        return 1
    root = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    redis = RedisServer(root / "redis")
    redis.start()
    try:
        results = {
            "inproc-1": scenario("inproc-1", root, None, 1, args),
            "redis-1": scenario("redis-1", root, redis.url, 1, args),
            "redis-2": scenario("redis-2", root, redis.url, 2, args),
        }
    finally:
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'scenario':10} {'deliveries/s':>13} {'publishes/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:10} {r['deliveries_per_s']:13.0f} {r['publishes_per_s']:12.0f} "
              f"{r['lat_p50_ms']:8.2f} {r['lat_p99_ms']:8.2f}")
    hop = results["redis-1"]["lat_p50_ms"] - results["inproc-1"]["lat_p50_ms"]
    print(f"broker hop (p50 redis-1 - inproc-1): {hop:.2f} ms; subscribers={args.n} "
          f"publishers={args.pubs} inflight={args.inflight}")
    print("RESULT " + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
