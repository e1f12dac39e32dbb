"""realtime against its peers, side by side, on 127.0.0.1 (DESIGN.md §3, §9).

    python tools/bench/run.py            # the standard run (~8-10 minutes)
    python tools/bench/run.py --quick    # about 5 minutes
    python tools/bench/run.py --full     # longer windows, idle RSS at 5,000 and 10,000
    python tools/bench/run.py --smoke    # seconds, tiny N, no thresholds (CI)
    python tools/bench/run.py --quick --only multipub,handshake --pubs 10

Servers under test (each on core 0 with ``taskset`` where it exists):

- ``realtime``   ``python -m realtime serve`` on a temporary config;
- ``websockets`` tools/bench/peer_websockets.py (asyncio, uvloop when
  importable; ``websockets.broadcast()`` fan-out, the same JWT check);
- ``node-ws``    tools/bench/peer_ws.js (Node ``ws``), when ``node`` exists.

The load generator (on core 1) is, with ``--gen``:

- ``c`` (the default when ``cc`` exists): tools/bench/cgen.c, one thread,
  epoll, non-blocking sockets, OpenSSL for wss:// when its headers exist;
  compiled here with ``cc -O2`` into tools/bench/build/ when missing or
  older than its source. It is far cheaper per delivery than the servers,
  so the figures are the servers'. The never-reading-subscriber scenario
  (``slow``) is not in it and runs on the node generator (py with ``--smoke``);
- ``node``: tools/bench/loadgen.js (Node ``ws``; ``npm ci`` runs here when
  tools/bench/node_modules is missing);
- ``py`` (``--smoke`` without ``cc``): tools/bench/loadgen_py.py, a small
  asyncio ``websockets`` client that needs nothing beyond the test install.

Measured per server: authenticated handshakes/s (50 loops of connect, JWT
check, welcome, close); deliveries/s at 100 and 1000 subscribers of one
channel (~100-byte frames, one publisher with a few messages in flight);
``multipub``: ``--pubs`` publishers on their own sockets, one message in
flight each (until every subscriber has it), 1000 subscribers: deliveries/s,
then p50/p99 with one message in flight in all; p50/p99 fan-out latency
(publish time in the message, measured at each receiver); the same over TLS;
the same with one extra subscriber that never reads (after a prefill that
fills its buffers); RSS per idle authenticated connection on a fresh server.
Then ``broker`` (realtime only): the multipub load on one node with the
in-process broker, then on two nodes sharing a throwaway ``redis-server``
(publishers on node A, every subscriber on node B, so each delivery crosses
Redis; node B on core 0 like the single node, node A and Redis beside the
generator on core 1). Beside each figure: the server's and the generator's
CPU over the same window; a figure is marked ``≥`` (a lower bound) when the
generator was above 90% of its core.

Output: a markdown table on stdout, JSON in tools/bench/results/, and as the
last line ``bench: handshake_ratio=X delivery_ratio=Y p99_ms=Z kb_per_conn=W
tls_ratio=T multipub_ratio_node=A multipub_ratio_websockets=B broker_ratio=C``
(ratios realtime / websockets at N=1000; tls_ratio is realtime TLS
deliveries / realtime plain deliveries; multipub_ratio_* are realtime's
multipub deliveries/s over node-ws's and websockets'; broker_ratio is
two-node deliveries/s over one-node deliveries/s).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent.parent
RESULTS = BENCH / "results"

if __name__ == "__main__":
    # Run from the project venv when invoked with another interpreter.
    try:
        import realtime  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable).resolve() != venv_python.resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        raise

sys.path.insert(0, str(ROOT))
from realtime.net.tls import generate_self_signed  # noqa: E402
from realtime.tokens.keyring import KeyRing, issue_access_token  # noqa: E402

PUBLIC_URL = "https://localhost"
CHANNEL = "chat:bench"
GEN_BUSY = 90.0  # generator CPU% above which a figure is a lower bound
PUBS = 10  # multipub publishers (--pubs)

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(ns=[5, 20], hs_seconds=0.7, hs_loops=5, sat=0.7, lat=0.7, idle=[100], slow_n=20,
                  tls_n=20, prefill=256 * 1024, inflight=8, settle_ms=300, multipub_n=20),
    "quick": dict(ns=[100, 1000], hs_seconds=5, hs_loops=50, sat=5, lat=5, idle=[5000], slow_n=1000,
                  tls_n=1000, prefill=16 << 20, inflight=8, settle_ms=1000, multipub_n=1000),
    "standard": dict(ns=[100, 1000], hs_seconds=8, hs_loops=50, sat=8, lat=8, idle=[5000], slow_n=1000,
                     tls_n=1000, prefill=16 << 20, inflight=8, settle_ms=1500, multipub_n=1000),
    "full": dict(ns=[100, 1000], hs_seconds=10, hs_loops=50, sat=10, lat=10, idle=[5000, 10000], slow_n=1000,
                 tls_n=1000, prefill=16 << 20, inflight=8, settle_ms=2000, multipub_n=1000),
}

REALTIME_TOML = """
[server]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
state_dir = "var"
public_url = "{public_url}"
tls_cert = "cert.pem"
tls_key = "cert.pem"
shutdown_grace = "1s"
max_connections = 50000
max_connections_per_ip = 50000
log_level = "info"

[oauth]
apps = "apps.toml"
users = "users.json"

[websocket]
ping_interval = 0
publish_rate = "100000/s"
message_rate = "100000/s"

[[channel]]
pattern = "chat:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
"""

APPS_TOML = """
[[app]]
name = "Bench"
client_id = "chat-app"
public = true
redirect_uris = ["http://127.0.0.1/cb"]
scopes = ["chat:read", "chat:write"]
"""


def log(*parts: object) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


# -- /proc ---------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return float("nan")


def core_times() -> dict[str, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat; busy includes irq/softirq,
    which is where loopback TCP receive work lands (not charged to a process).
    The key "procs" holds (user+nice+system of all CPUs, total of all CPUs)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu"):
                    name, *vals = line.split()
                    nums = [int(v) for v in vals[:8]]
                    if name == "cpu":
                        out["procs"] = (nums[0] + nums[1] + nums[2], sum(nums))
                    else:
                        out[name] = (sum(nums) - nums[3] - nums[4], sum(nums))
                        out[name + "_irq"] = (nums[5] + nums[6], sum(nums))
    except OSError:
        pass
    return out


def foreign_cpu_pct(seconds: float = 1.0, ours: tuple[int, ...] = ()) -> float:
    """CPU used by processes other than ``ours`` over ``seconds``, in % of one core."""
    a = core_times().get("procs")
    mine = sum(cpu_seconds(pid) for pid in (os.getpid(), *ours))
    time.sleep(seconds)
    b = core_times().get("procs")
    mine = sum(cpu_seconds(pid) for pid in (os.getpid(), *ours)) - mine
    if not a or not b:
        return 0.0
    return max(0.0, 100 * ((b[0] - a[0]) / CLK_TCK - mine) / seconds)


QUIET = {"max_wait": 0.0, "worst": 0.0}


def wait_quiet(label: str) -> None:
    """Wait (bounded) until other processes use < 10% of a core: the servers and
    the generator are pinned to the two cores, anything else skews the figures."""
    deadline = time.monotonic() + QUIET["max_wait"]
    while True:
        busy = foreign_cpu_pct(1.0)
        if busy < 10 or time.monotonic() >= deadline:
            break
        log(f"{label}: other processes use {busy:.0f}% CPU; waiting for a quiet machine")
    if busy >= 10:
        log(f"{label}: measuring anyway with {busy:.0f}% CPU used by other processes")
    QUIET["worst"] = max(QUIET["worst"], busy)


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pin(core: int | None) -> list[str]:
    """``taskset -c CORE`` when taskset exists and cores 0 and 1 are both ours."""
    try:
        usable = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        usable = set()
    if core is None or not shutil.which("taskset") or not {0, 1} <= usable:
        return []
    return ["taskset", "-c", str(core)]


def raise_nofile(want: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, want)
    if hard != resource.RLIM_INFINITY and target > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            target = hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- servers -------------------------------------------------------------------


class Server:
    """One server under test: a child process that prints ``listening http=.. https=..``."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, log_path: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.bound: dict[str, str] = {}
        self.detail = ""

    def start(self, timeout: float = 30.0) -> "Server":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=self._log,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            match = re.search(r"^(.*)listening (http=\S+.*)$", self.log_path.read_text(errors="replace"), re.M)
            if match:
                self.bound = dict(part.split("=", 1) for part in match.group(2).split())
                self.detail = match.group(1) if "peer" in match.group(1) else ""
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not report its address in {timeout}s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, tls: bool = False) -> str:
        return ("wss://" + self.bound["https"] if tls else "ws://" + self.bound["http"]) + "/ws"

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


class Setup:
    """Temporary config, keys, certificate and tokens shared by every server."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.starts = 0
        conf = work / "realtime"
        conf.mkdir()
        (conf / "realtime.toml").write_text(REALTIME_TOML.format(public_url=PUBLIC_URL))
        (conf / "apps.toml").write_text(APPS_TOML)
        (conf / "users.json").write_text(json.dumps({"users": [{"name": "alice",
                                                                "scopes": ["chat:read", "chat:write"]}]}))
        self.cert = conf / "cert.pem"
        self.cert.write_bytes(generate_self_signed(days=2))
        os.chmod(self.cert, 0o600)
        self.conf = conf
        # The same RS256 key for every server: realtime reads it from its state dir.
        self.ring = KeyRing.load_or_create(conf / "var" / "keys", "RS256")
        from cryptography.hazmat.primitives import serialization

        self.pubkey = work / "public.pem"
        self.pubkey.write_bytes(self.ring.active.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def tokens(self, count: int) -> list[str]:
        return [issue_access_token(self.ring, issuer=PUBLIC_URL, audience=PUBLIC_URL, sub="alice",
                                   client_id="chat-app", scope=["chat:read", "chat:write"], ttl=3600)[0]
                for _ in range(count)]

    def broker_config(self, redis_url: str) -> Path:
        """A second config on the same state dir (keys, tokens) with ``[broker] url``."""
        path = self.conf / "realtime-broker.toml"
        path.write_text(REALTIME_TOML.format(public_url=PUBLIC_URL) + f'\n[broker]\nurl = "{redis_url}"\n')
        return path

    def server(self, name: str, config: Path | None = None, core_index: int = 0) -> Server:
        self.starts += 1
        logs = self.work / f"{name}-{self.starts}.log"
        core = pin(core_index)
        if name == "realtime":
            cmd = [*core, sys.executable, "-m", "realtime", "serve", "-c",
                   str(config or self.conf / "realtime.toml"), "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"]
            return Server(name, cmd, ROOT, logs)
        if name == "websockets":
            cmd = [*core, sys.executable, str(BENCH / "peer_websockets.py"), "--pubkey", str(self.pubkey),
                   "--issuer", PUBLIC_URL, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
                   "--cert", str(self.cert)]
            return Server(name, cmd, ROOT, logs)
        if name == "node-ws":
            spec = {"pubkey": str(self.pubkey), "issuer": PUBLIC_URL, "http": "127.0.0.1:0",
                    "https": "127.0.0.1:0", "cert": str(self.cert)}
            return Server(name, [*core, "node", str(BENCH / "peer_ws.js"), json.dumps(spec)], BENCH, logs)
        raise ValueError(name)


# -- the load generator --------------------------------------------------------


def ensure_node_modules() -> None:
    if (BENCH / "node_modules" / "ws" / "package.json").exists():
        return
    log("tools/bench/node_modules missing: npm ci")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True,
                   stdout=sys.stderr, stderr=sys.stderr)


CGEN_SOURCE = BENCH / "cgen.c"
CGEN_BINARY = BENCH / "build" / "cgen"


class BuildError(RuntimeError):
    pass


def build_cgen() -> tuple[Path, bool]:
    """Compile tools/bench/cgen.c with the system ``cc -O2`` when the binary is
    missing or older than its source; with OpenSSL (wss://) when its headers
    exist. Returns (binary, has_tls)."""
    cc = shutil.which("cc")
    tls_marker = CGEN_BINARY.with_name("cgen.tls")
    fresh = CGEN_BINARY.exists() and CGEN_BINARY.stat().st_mtime >= CGEN_SOURCE.stat().st_mtime
    if fresh:
        return CGEN_BINARY, tls_marker.exists()
    if cc is None:
        raise BuildError("the C load generator needs a C compiler: `cc` was not found on PATH "
                         "(Debian: apt-get install gcc), or pass --gen node / --gen py")
    CGEN_BINARY.parent.mkdir(parents=True, exist_ok=True)
    tmp = CGEN_BINARY.with_name("cgen.tmp")
    base = [cc, "-O2", "-Wall", "-o", str(tmp), str(CGEN_SOURCE)]
    attempts = [(True, [*base[:2], "-DCGEN_TLS", *base[2:], "-lssl", "-lcrypto"]), (False, base)]
    if not Path("/usr/include/openssl/ssl.h").exists():
        attempts = attempts[1:]
    errors = []
    for has_tls, cmd in attempts:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            tmp.replace(CGEN_BINARY)
            tls_marker.unlink(missing_ok=True)
            if has_tls:
                tls_marker.touch()
            log(f"built {CGEN_BINARY.relative_to(ROOT)} ({'with' if has_tls else 'without'} TLS): {' '.join(cmd)}")
            return CGEN_BINARY, has_tls
        errors.append(f"$ {' '.join(cmd)}\n{done.stderr.strip()}")
    raise BuildError("could not compile tools/bench/cgen.c:\n" + "\n".join(errors))


def c_args(spec: dict[str, Any], tokens_file: Path) -> list[str]:
    """The C generator's argv for a spec in loadgen.js's JSON shape."""
    urls = [spec["url"]] if "url" in spec else []
    args = [spec["mode"]]
    sub_urls = spec.get("sub_urls") or urls
    pub_urls = spec.get("pub_urls") or urls
    every = list(dict.fromkeys([*sub_urls, *pub_urls]))
    for url in every:
        args += ["--url", url]
    args += ["--sub-urls", ",".join(str(every.index(u)) for u in sub_urls),
             "--pub-urls", ",".join(str(every.index(u)) for u in pub_urls), "--tokens", str(tokens_file)]
    if spec["mode"] == "handshake":
        args += ["--concurrency", spec["concurrency"], "--duration", spec["duration"]]
    elif spec["mode"] == "fanout":
        args += ["--n", spec["n"], "--pubs", spec.get("pubs", 1), "--inflight", spec.get("inflight", 4),
                 "--sat", spec.get("sat_duration", 0), "--lat", spec.get("lat_duration", 0),
                 "--channel", spec.get("channel", CHANNEL), "--pad", spec.get("pad", 4),
                 "--settle-ms", spec.get("settle_ms", 0)]
    elif spec["mode"] == "idle":
        args += ["--n", spec["n"], "--settle-ms", spec.get("settle_ms", 1000),
                 "--connect-concurrency", spec.get("connect_concurrency", 100)]
    return [str(a) for a in args]


class Generator:
    """The load generator: ``c``, ``node`` or ``py``; ``fallback`` runs what ``c`` lacks."""

    def __init__(self, kind: str, work: Path, fallback: str = "py") -> None:
        self.kind = kind
        self.work = work
        self.fallback = fallback
        self.cgen: Path | None = None
        self.cgen_tls = False
        if kind == "c":
            self.cgen, self.cgen_tls = build_cgen()

    def kind_for(self, spec: dict[str, Any]) -> str:
        if self.kind != "c":
            return self.kind
        tls = any(u.startswith("wss:") for u in [spec.get("url", ""), *spec.get("sub_urls", [])])
        if spec.get("stalled") or spec.get("prefill_bytes") or (tls and not self.cgen_tls):
            return self.fallback
        return "c"

    def command(self, spec: dict[str, Any]) -> list[str]:
        core = pin(1)
        kind = self.kind_for(spec)
        if kind == "c":
            assert self.cgen is not None
            tokens_file = self.work / "cgen-tokens.txt"
            tokens_file.write_text("\n".join(spec.get("tokens") or [spec["token"]]) + "\n")
            return [*core, str(self.cgen), *c_args(spec, tokens_file)]
        if kind == "node":
            return [*core, "node", str(BENCH / "loadgen.js"), json.dumps(spec)]
        return [*core, sys.executable, str(BENCH / "loadgen_py.py"), json.dumps(spec)]

    def run(self, server: Server, spec: dict[str, Any], timeout: float,
            also: dict[str, int] | None = None) -> dict[str, Any]:
        """Run one scenario; sample CPU and RSS at each MARK (and the CPU of the
        processes in ``also``, by name); return the result with ``marks``."""
        if QUIET["max_wait"] > 0 and spec.get("n", 0) != 50:
            wait_quiet(f"{server.name} {spec['mode']}")
        proc = subprocess.Popen(self.command(spec), cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=sys.stderr, text=True, bufsize=1)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        marks: dict[str, dict[str, float]] = {}
        result: dict[str, Any] = {"error": "generator ended without a result"}
        try:
            assert proc.stdout is not None and proc.stdin is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line.startswith(("MARK ", "MARKWAIT ")):
                    kind, name = line.split(" ", 1)
                    if kind == "MARKWAIT":
                        time.sleep(0.5)  # let the server settle before RSS is read
                    marks[name] = {"t": time.monotonic(), "server_cpu": cpu_seconds(server.pid),
                                   "gen_cpu": cpu_seconds(proc.pid), "server_rss_kb": rss_kb(server.pid),
                                   "cores": core_times(),
                                   "also": {k: cpu_seconds(pid) for k, pid in (also or {}).items()}}
                    if kind == "MARKWAIT":
                        proc.stdin.write("go\n")
                        proc.stdin.flush()
                elif line.startswith("RESULT "):
                    result = json.loads(line[7:])
                else:
                    print(line, file=sys.stderr)
            proc.wait(10)
        finally:
            killer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, None) and "error" not in result:
            result["error"] = f"generator exit {proc.returncode}"
        if killer.finished.is_set() and proc.returncode == -signal.SIGKILL:
            result.setdefault("error", f"generator timed out after {timeout}s")
        result["marks"] = marks
        result.setdefault("generator", self.kind_for(spec))
        return result


def window(result: dict[str, Any], start: str, end: str) -> dict[str, float] | None:
    marks = result.get("marks", {})
    if start not in marks or end not in marks:
        return None
    a, b = marks[start], marks[end]
    dt = b["t"] - a["t"]
    if dt <= 0:
        return None
    out = {"server_cpu_pct": 100 * (b["server_cpu"] - a["server_cpu"]) / dt,
           "gen_cpu_pct": 100 * (b["gen_cpu"] - a["gen_cpu"]) / dt, "seconds": dt}
    for core, (busy, total) in b.get("cores", {}).items():
        busy0, total0 = a.get("cores", {}).get(core, (busy, total))
        if total > total0 and core != "procs":
            suffix = "_pct" if core.endswith("_irq") else "_busy_pct"
            out[f"{core}{suffix}"] = 100 * (busy - busy0) / (total - total0)
    also = 0.0
    for name, cpu in b.get("also", {}).items():
        out[f"{name}_cpu_pct"] = 100 * (cpu - a.get("also", {}).get(name, cpu)) / dt
        also += out[f"{name}_cpu_pct"]
    procs_b, procs_a = b.get("cores", {}).get("procs"), a.get("cores", {}).get("procs")
    if procs_a and procs_b:
        # user+system time of every process minus the server's and the generator's (and ``also``)
        other = 100 * (procs_b[0] - procs_a[0]) / CLK_TCK / dt - out["server_cpu_pct"] - out["gen_cpu_pct"] - also
        out["other_cpu_pct"] = max(0.0, other)
    return out


# -- scenarios -----------------------------------------------------------------


SCENARIOS = ("handshake", "fanout", "multipub", "tls", "slow", "idle", "broker")


def run_server(name: str, setup: Setup, gen: Generator, prof: dict[str, Any],
               only: tuple[str, ...] = SCENARIOS) -> dict[str, Any]:
    out: dict[str, Any] = {"server": name}
    tokens = setup.tokens(max(prof["hs_loops"], 100))
    one = tokens[0]
    server = setup.server(name).start()
    out["detail"] = server.detail.strip()
    log(f"{name}: pid {server.pid} {server.bound} {out['detail']}")
    try:
        if "handshake" in only:
            log(f"{name}: handshakes ({prof['hs_loops']} loops, {prof['hs_seconds']}s)")
            res = gen.run(server, {"mode": "handshake", "url": server.url(), "tokens": tokens[:prof["hs_loops"]],
                                   "concurrency": prof["hs_loops"], "duration": prof["hs_seconds"]},
                          timeout=prof["hs_seconds"] + 60)
            out["handshake"] = {**res, "cpu": window(res, "hs_start", "hs_end")}

        def fanout(key: str, n: int, tls: bool = False, stalled: bool = False, pubs: int | None = None) -> None:
            log(f"{name}: {key} (n={n}{', tls' if tls else ''}{', one never-reading subscriber' if stalled else ''}"
                f"{f', {pubs} publishers, one message in flight each' if pubs else ''})")
            spec = {"mode": "fanout", "url": server.url(tls), "token": one, "n": n, "channel": CHANNEL,
                    "inflight": prof["inflight"], "sat_duration": prof["sat"], "lat_duration": prof["lat"],
                    "stalled": stalled, "prefill_bytes": prof["prefill"] if stalled else 0}
            if pubs:
                spec.update(pubs=pubs, inflight=1)
            if stalled:  # lat before the stall, fill its buffers, lat again
                spec["sat_duration"] = 0
            res = gen.run(server, spec, timeout=prof["sat"] + 2 * prof["lat"] + 120)
            res["sat_cpu"] = window(res, "sat_start", "sat_end")
            res["lat_cpu"] = window(res, "lat_start", "lat_end")
            out[key] = res

        if "fanout" in only:
            for n in prof["ns"]:
                fanout(f"fanout_{n}", n)
        if "multipub" in only:
            fanout("multipub", prof["multipub_n"], pubs=prof["pubs"])
        if "tls" in only:
            fanout("fanout_tls", prof["tls_n"], tls=True)
        if "slow" in only:
            fanout("fanout_slow", prof["slow_n"], stalled=True)
    finally:
        server.stop()

    # RSS per idle authenticated connection: a fresh process, warmed up first.
    out["idle"] = {}
    for n in prof["idle"] if "idle" in only else []:
        server = setup.server(name).start()
        try:
            log(f"{name}: idle RSS at {n} connections")
            warm = gen.run(server, {"mode": "idle", "url": server.url(), "tokens": tokens, "n": 50,
                                    "settle_ms": 200}, timeout=60)
            time.sleep(0.5)
            base = rss_kb(server.pid)
            res = gen.run(server, {"mode": "idle", "url": server.url(), "tokens": tokens, "n": n,
                                   "settle_ms": prof["settle_ms"], "connect_concurrency": 100},
                          timeout=120 + n / 50)
            loaded = res.get("marks", {}).get("idle", {}).get("server_rss_kb", 0)
            opened = res.get("open") or 0
            res["rss_base_kb"] = base
            res["rss_loaded_kb"] = loaded
            res["kb_per_conn"] = (loaded - base) / opened if opened and loaded else None
            res["warmup_error"] = warm.get("error")
            out["idle"][str(n)] = res
        finally:
            server.stop()
    return out



def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server: a free loopback port, no persistence, on core 1."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("the broker scenario needs redis-server (Debian package redis-server); "
                           "or leave it out with --only")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (work / "redis").mkdir(exist_ok=True)
    proc = subprocess.Popen([*pin(1), exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work / "redis"), "--logfile", "",
                             "--daemonize", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # ends at EOF if the server dies
        seen.append(line.decode(errors="replace"))
        if b"Ready to accept connections" in line:
            break
    else:
        proc.wait()
        raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # never block on a full pipe
    return proc, f"redis://127.0.0.1:{port}/0"


def run_broker(setup: Setup, gen: Generator, prof: dict[str, Any]) -> dict[str, Any]:
    """The multipub load on one realtime node (in-process broker) and on two
    nodes sharing a throwaway redis-server: publishers on node A, every
    subscriber on node B, so every delivery crosses Redis. Node B (and the
    single node) on core 0; node A and Redis beside the generator on core 1:
    they carry one publish per message, the subscriber node carries N
    deliveries per message."""
    out: dict[str, Any] = {"pubs": prof["pubs"], "n": prof["multipub_n"]}
    one = setup.tokens(1)[0]
    spec = {"mode": "fanout", "token": one, "n": prof["multipub_n"], "channel": CHANNEL, "pubs": prof["pubs"],
            "inflight": 1, "sat_duration": prof["sat"], "lat_duration": prof["lat"]}
    server = setup.server("realtime").start()
    try:
        log(f"broker: one node, in-process broker (n={spec['n']}, {spec['pubs']} publishers)")
        res = gen.run(server, {**spec, "url": server.url()}, timeout=prof["sat"] + prof["lat"] + 120)
        res["sat_cpu"] = window(res, "sat_start", "sat_end")
        res["lat_cpu"] = window(res, "lat_start", "lat_end")
        out["one_node"] = res
    finally:
        server.stop()
    redis, redis_url = start_redis(setup.work)
    conf = setup.broker_config(redis_url)
    node_a = node_b = None
    try:
        node_a = setup.server("realtime", config=conf, core_index=1).start()
        node_b = setup.server("realtime", config=conf, core_index=0).start()
        log(f"broker: two nodes via Redis, publishers on A (pid {node_a.pid}), subscribers on B (pid {node_b.pid})")
        res = gen.run(node_b, {**spec, "sub_urls": [node_b.url()], "pub_urls": [node_a.url()],
                               "settle_ms": 500}, timeout=prof["sat"] + prof["lat"] + 120,
                      also={"node_a": node_a.pid, "redis": redis.pid})
        res["sat_cpu"] = window(res, "sat_start", "sat_end")
        res["lat_cpu"] = window(res, "lat_start", "lat_end")
        out["two_nodes"] = res
    finally:
        for node in (node_a, node_b):
            if node is not None:
                node.stop()
        redis.terminate()
        redis.wait(10)
    return out


# -- report --------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def cell(value: float | None, cpu: dict[str, float] | None, digits: int = 0, bound: bool = True) -> str:
    text = fmt(value, digits)
    if cpu is None:
        return text
    lower = bound and gen_busy(cpu) > GEN_BUSY and value is not None
    return f"{'≥' if lower else ''}{text} ({cpu['server_cpu_pct']:.0f}%/{cpu['gen_cpu_pct']:.0f}%)"


def gen_busy(cpu: dict[str, float]) -> float:
    """The generator's load: its process CPU plus, when pinned, its core's irq/softirq time."""
    # not the core's whole busy time: other processes may run there too
    return cpu.get("gen_cpu_pct", 0.0) + (cpu.get("cpu1_irq_pct", 0.0) if pin(1) else 0.0)


def get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def table(results: dict[str, dict[str, Any]], prof: dict[str, Any]) -> list[str]:
    names = list(results)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn) -> None:  # noqa: ANN001
        rows.append((label, [fn(results[name]) for name in names]))

    row(f"handshakes/s ({prof['hs_loops']} loops)", lambda r: cell(get(r, "handshake", "per_s"), get(r, "handshake", "cpu")))
    row("  server / generator CPU µs per handshake", lambda r: handshake_cost(get(r, "handshake")))
    for n in prof["ns"]:
        row(f"deliveries/s N={n}", lambda r, n=n: cell(get(r, f"fanout_{n}", "sat", "per_s"),
                                                       get(r, f"fanout_{n}", "sat_cpu")))
        row(f"  core0 / core1 busy, incl. softirq (N={n} saturated)", lambda r, n=n: cores_cell(get(r, f"fanout_{n}", "sat_cpu")))
        row(f"  server / generator CPU µs per delivery (N={n} saturated)", lambda r, n=n: cost_cell(get(r, f"fanout_{n}")))
        row(f"p50 / p99 ms N={n}", lambda r, n=n: lat_cell(r, f"fanout_{n}"))
    n, p = prof["multipub_n"], prof["pubs"]
    row(f"multipub deliveries/s N={n}, {p} publishers, one message in flight each",
        lambda r: cell(get(r, "multipub", "sat", "per_s"), get(r, "multipub", "sat_cpu")))
    row("  core0 / core1 busy, incl. softirq (multipub saturated)", lambda r: cores_cell(get(r, "multipub", "sat_cpu")))
    row("  server / generator CPU µs per delivery (multipub saturated)", lambda r: cost_cell(get(r, "multipub")))
    row(f"  p50 / p99 ms, one message in flight in all (N={n})", lambda r: lat_cell(r, "multipub"))
    n = prof["tls_n"]
    row(f"TLS deliveries/s N={n}", lambda r: cell(get(r, "fanout_tls", "sat", "per_s"), get(r, "fanout_tls", "sat_cpu")))
    row(f"TLS p50 / p99 ms N={n}", lambda r: lat_cell(r, "fanout_tls"))
    n = prof["slow_n"]
    row(f"one never-reading subscriber, N={n}: p50 / p99 ms before", lambda r: lat_cell(r, "fanout_slow", "lat_base"))
    row(f"  … after its buffers filled ({prof['prefill'] >> 20 or prof['prefill'] / 1048576:g} MiB sent to it)",
        lambda r: lat_cell(r, "fanout_slow"))
    row("  p99 change", lambda r: pct(slow_change(r)))
    row("  the never-reading one", lambda r: stalled_fate(r))
    for n in prof["idle"]:
        row(f"KB RSS per idle connection ({n:,})", lambda r, n=n: idle_cell(r, str(n)))
    header = "| figure (server CPU% / generator CPU%) | " + " | ".join(names) + " |"
    lines = [header, "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return lines


def broker_table(broker: dict[str, Any]) -> list[str]:
    """One node (in-process broker) vs two nodes via Redis, realtime only."""
    if not broker:
        return []
    if broker.get("error"):
        return [f"broker: error: {broker['error']}"]
    lines = [f"| broker: realtime, N={broker['n']}, {broker['pubs']} publishers, one message in flight each "
             "| deliveries/s (node B / node A / redis / generator CPU%) | p50 / p99 ms, one in flight "
             "| node B (+ node A + redis) / generator CPU µs per delivery |",
             "|---|---|---|---|"]
    for key, label in (("one_node", "one node, in-process broker"),
                       ("two_nodes", "two nodes via Redis: publishers on A, subscribers on B")):
        res = broker.get(key) or {}
        cpu = res.get("sat_cpu") or {}
        text = fmt(get(res, "sat", "per_s"))
        if cpu:
            lower = "≥" if gen_busy(cpu) > GEN_BUSY and get(res, "sat", "per_s") else ""
            parts = [cpu.get("server_cpu_pct"), cpu.get("node_a_cpu_pct"), cpu.get("redis_cpu_pct"),
                     cpu.get("gen_cpu_pct")]
            text = lower + text + " (" + " / ".join("–" if x is None else f"{x:.0f}%" for x in parts) + ")"
        server = cpu_us_per_delivery(res)
        if server is not None and cpu:
            extra = (cpu.get("node_a_cpu_pct", 0.0) + cpu.get("redis_cpu_pct", 0.0)) / 100 * cpu["seconds"]
            server_all = server + extra / res["sat"]["deliveries"] * 1e6
            cost = f"{server:.2f}{f' (+ {server_all - server:.2f})' if key == 'two_nodes' else ''} / " \
                   f"{cpu_us_per_delivery(res, 'gen'):.2f}"
        else:
            cost = "–"
        lines.append(f"| {label} | {text} | {lat_cell(broker, key)} | {cost} |")
    return lines


def cpu_us_per_delivery(res: dict[str, Any] | None, who: str = "server") -> float | None:
    """CPU time per delivery over the saturated window: steadier than
    deliveries/s when other processes share the cores."""
    cpu, sat = get(res or {}, "sat_cpu"), get(res or {}, "sat")
    if not cpu or not sat or not sat.get("deliveries"):
        return None
    return cpu[f"{who}_cpu_pct"] / 100 * cpu["seconds"] / sat["deliveries"] * 1e6


def handshake_cost(res: dict[str, Any] | None) -> str:
    cpu, ok = get(res or {}, "cpu"), get(res or {}, "ok")
    if not cpu or not ok:
        return "–"
    per = cpu["seconds"] / ok * 1e6 / 100
    return f"{cpu['server_cpu_pct'] * per:.0f} / {cpu['gen_cpu_pct'] * per:.0f}"


def cost_cell(res: dict[str, Any] | None) -> str:
    server, generator = cpu_us_per_delivery(res), cpu_us_per_delivery(res, "gen")
    return "–" if server is None or generator is None else f"{server:.2f} / {generator:.2f}"


def cores_cell(cpu: dict[str, float] | None) -> str:
    if not cpu or "cpu0_busy_pct" not in cpu or "cpu1_busy_pct" not in cpu:
        return "–"
    return f"{cpu['cpu0_busy_pct']:.0f}% / {cpu['cpu1_busy_pct']:.0f}%"


def lat_cell(r: dict[str, Any], key: str, phase: str = "lat") -> str:
    lat = get(r, key, phase)
    if not lat:
        return "–" if not get(r, key, "error") else "error"
    cpu = window(r[key], f"{phase}_start", f"{phase}_end")
    text = f"{fmt(lat.get('p50_ms'), 1)} / {fmt(lat.get('p99_ms'), 1)}"
    if cpu:
        text += f" ({cpu['server_cpu_pct']:.0f}%/{cpu['gen_cpu_pct']:.0f}%)"
    return text


def slow_change(r: dict[str, Any]) -> float | None:
    """p99 after the never-reading subscriber's buffers filled vs before, same connections."""
    base = get(r, "fanout_slow", "lat_base", "p99_ms")
    slow = get(r, "fanout_slow", "lat", "p99_ms")
    if not base or slow is None:
        return None
    return 100 * (slow - base) / base


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.0f}%"


def stalled_fate(r: dict[str, Any]) -> str:
    slow = r.get("fanout_slow") or {}
    code = slow.get("stalled_close_code") or get(slow, "prefill", "stalled_closed_by_then")
    if code:
        # realtime queues its 4009 behind the full backlog, so a client that
        # never reads sees the TCP close (1006), not the frame.
        return f"dropped by the server (client saw {code})"
    return "kept open (buffered)" if "lat" in slow else "–"


def idle_cell(r: dict[str, Any], n: str) -> str:
    idle = get(r, "idle", n) or {}
    kb = idle.get("kb_per_conn")
    if kb is None:
        return "error" if idle.get("error") else "–"
    opened = idle.get("open")
    extra = "" if opened == int(n) else f" ({opened} open)"
    return f"{kb:.1f}{extra}"


def summary(results: dict[str, dict[str, Any]], prof: dict[str, Any],
            broker: dict[str, Any] | None = None) -> tuple[dict[str, float | None], list[str]]:
    rt = results.get("realtime", {})
    ws = results.get("websockets", {})
    n = str(max(prof["ns"]))

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    figures = {
        "handshake_ratio": ratio(get(rt, "handshake", "per_s"), get(ws, "handshake", "per_s")),
        "delivery_ratio": ratio(get(rt, f"fanout_{n}", "sat", "per_s"), get(ws, f"fanout_{n}", "sat", "per_s")),
        "p99_ms": get(rt, f"fanout_{n}", "lat", "p99_ms"),
        "kb_per_conn": get(rt, "idle", str(prof["idle"][0]), "kb_per_conn"),
        "tls_ratio": ratio(get(rt, "fanout_tls", "sat", "per_s"), get(rt, f"fanout_{n}", "sat", "per_s")),
        "handshakes_per_s": get(rt, "handshake", "per_s"),
        "slow_p99_change_pct": slow_change(rt),
        "multipub_ratio_node": ratio(get(rt, "multipub", "sat", "per_s"),
                                     get(results, "node-ws", "multipub", "sat", "per_s")),
        "multipub_ratio_websockets": ratio(get(rt, "multipub", "sat", "per_s"), get(ws, "multipub", "sat", "per_s")),
        "multipub_p99_ms": get(rt, "multipub", "lat", "p99_ms"),
        "broker_ratio": ratio(get(broker, "two_nodes", "sat", "per_s"), get(broker, "one_node", "sat", "per_s")),
        # server CPU per delivery, peer's over realtime's: steadier than the
        # deliveries/s ratios when other processes share the cores
        "multipub_cpu_ratio_node": ratio(cpu_us_per_delivery(get(results, "node-ws", "multipub")),
                                         cpu_us_per_delivery(get(rt, "multipub"))),
        "multipub_cpu_ratio_websockets": ratio(cpu_us_per_delivery(get(ws, "multipub")),
                                               cpu_us_per_delivery(get(rt, "multipub"))),
        # one node's CPU per delivery over node B's (the subscribers' node)
        "broker_cpu_ratio": ratio(cpu_us_per_delivery(get(broker, "one_node")),
                                  cpu_us_per_delivery(get(broker, "two_nodes"))),
    }
    notes = []
    gen_bound = [
        key for key in ("handshake", f"fanout_{n}", "fanout_tls")
        if gen_busy(get(rt, key, "cpu") or get(rt, key, "sat_cpu") or {}) > GEN_BUSY
    ]

    def check(ok: bool | None, text: str) -> None:
        notes.append(f"- {'PASS' if ok else ('FAIL' if ok is False else 'n/a ')} {text}")

    f = figures
    check(None if f["handshake_ratio"] is None else f["handshake_ratio"] >= 1.0 and (f["handshakes_per_s"] or 0) >= 1500,
          f"handshakes ≥ 1.0x websockets and ≥ 1500/s: {fmt(f['handshake_ratio'], 2)}x, {fmt(f['handshakes_per_s'])}/s")
    check(None if f["delivery_ratio"] is None else f["delivery_ratio"] >= 1.5,
          f"deliveries/s N={n} ≥ 1.5x websockets: {fmt(f['delivery_ratio'], 2)}x"
          + (" (generator-bound: a lower bound)" if f"fanout_{n}" in gen_bound else ""))
    check(None if f["p99_ms"] is None else f["p99_ms"] < 15, f"p99 N={n} < 15 ms: {fmt(f['p99_ms'], 1)} ms")
    check(None if f["kb_per_conn"] is None else f["kb_per_conn"] <= 12,
          f"≤ 12 KB per idle connection: {fmt(f['kb_per_conn'], 1)} KB")
    check(None if f["tls_ratio"] is None else f["tls_ratio"] >= 0.6,
          f"TLS deliveries ≥ 0.6x plain: {fmt(f['tls_ratio'], 2)}"
          + (" (generator-bound)" if "fanout_tls" in gen_bound else ""))
    check(None if f["slow_p99_change_pct"] is None else f["slow_p99_change_pct"] < 10,
          f"a never-reading subscriber raises the others' p99 by < 10%: {pct(f['slow_p99_change_pct'])} "
          "(run-to-run noise of p99 on this box is about ±10%)")
    check(None if f["multipub_ratio_node"] is None else f["multipub_ratio_node"] >= 2.0,
          f"multipub deliveries/s ≥ 2x node-ws: {fmt(f['multipub_ratio_node'], 2)}x "
          f"(server CPU per delivery: node-ws {fmt(f['multipub_cpu_ratio_node'], 2)}x realtime's)")
    check(None if f["multipub_ratio_websockets"] is None else f["multipub_ratio_websockets"] >= 3.0,
          f"multipub deliveries/s ≥ 3x websockets: {fmt(f['multipub_ratio_websockets'], 2)}x "
          f"(server CPU per delivery: websockets {fmt(f['multipub_cpu_ratio_websockets'], 2)}x realtime's)")
    check(None if f["broker_ratio"] is None else f["broker_ratio"] >= 1.0,
          f"two nodes via Redis ≥ 1.0x one node in-process: {fmt(f['broker_ratio'], 2)}x "
          f"(CPU per delivery: one node {fmt(f['broker_cpu_ratio'], 2)}x the subscribers' node's)")
    return figures, notes


def bench_line(f: dict[str, float | None]) -> str:
    def v(x: float | None, d: int) -> str:
        return "nan" if x is None else f"{x:.{d}f}"

    return (f"bench: handshake_ratio={v(f['handshake_ratio'], 2)} delivery_ratio={v(f['delivery_ratio'], 2)} "
            f"p99_ms={v(f['p99_ms'], 1)} kb_per_conn={v(f['kb_per_conn'], 1)} tls_ratio={v(f['tls_ratio'], 2)} "
            f"multipub_ratio_node={v(f['multipub_ratio_node'], 2)} "
            f"multipub_ratio_websockets={v(f['multipub_ratio_websockets'], 2)} broker_ratio={v(f['broker_ratio'], 2)}")


# -- main ----------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 5 minutes")
    mode.add_argument("--full", action="store_true", help="longer windows; idle RSS at 5,000 and 10,000")
    mode.add_argument("--smoke", action="store_true", help="seconds; tiny N; no thresholds (CI); no node needed")
    parser.add_argument("--gen", choices=["c", "node", "py"],
                        help="load generator (default: c when `cc` exists, else node, or py for --smoke)")
    parser.add_argument("--pubs", type=int, default=PUBS,
                        help=f"publishers in the multipub and broker scenarios (default {PUBS})")
    parser.add_argument("--servers", help="comma list of realtime,websockets,node-ws (default: all available)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait, before each scenario, for other processes to use < 10%% CPU "
                             "(default 120; 0 with --smoke)")
    parser.add_argument("--only", help=f"comma list of scenarios to run (default: all of {','.join(SCENARIOS)})")
    parser.add_argument("--out", type=Path, help="JSON path (default: tools/bench/results/<time>-<profile>.json)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)

    profile = "smoke" if args.smoke else "quick" if args.quick else "full" if args.full else "standard"
    prof = {**PROFILES[profile], "pubs": args.pubs}
    if args.pubs < 1:
        parser.error("--pubs must be at least 1")
    only = tuple(args.only.split(",")) if args.only else SCENARIOS
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"--only: unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    gen_kind = args.gen or ("c" if shutil.which("cc") else "py" if args.smoke else "node")
    # what the C generator does not do (the never-reading subscriber) runs on this one
    fallback = "py" if args.smoke else "node"
    if "node" in (gen_kind, fallback if gen_kind == "c" else None):
        if not shutil.which("node"):
            log("node not found: using the Python generator (its figures are generator-bound)")
            gen_kind = "py" if gen_kind == "node" else gen_kind
            fallback = "py"
        else:
            ensure_node_modules()
    servers = args.servers.split(",") if args.servers else ["realtime", "websockets"] + (
        ["node-ws"] if shutil.which("node") and not args.smoke else [])
    if "node-ws" in servers:
        ensure_node_modules()
    limit = raise_nofile(max(prof["idle"]) * 2 + 1024)
    log(f"profile {profile}, generator {gen_kind}, servers {servers}, RLIMIT_NOFILE {limit}, "
        f"taskset {'yes' if pin(0) else 'no'}, cpus {os.cpu_count()}")

    QUIET["max_wait"] = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.smoke else 120.0)
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="realtime-bench-") as tmp:
        setup = Setup(Path(tmp))
        try:
            gen = Generator(gen_kind, Path(tmp), fallback)
        except BuildError as exc:
            log(str(exc))
            return 2
        for name in servers:
            try:
                results[name] = run_server(name, setup, gen, prof, only)
            except Exception as exc:  # one failing server must not hide the others
                log(f"{name} failed: {exc!r}")
                results[name] = {"server": name, "error": repr(exc)}
        broker: dict[str, Any] = {}
        if "broker" in only and "realtime" in servers:
            try:
                broker = run_broker(setup, gen, prof)
            except Exception as exc:
                log(f"broker failed: {exc!r}")
                broker = {"error": repr(exc)}
    elapsed = time.time() - started

    figures, notes = summary(results, prof, broker)
    lines = table(results, prof)
    errors = [f"- {name}/{key}: {val['error']}" for name, r in results.items()
              for key, val in r.items() if isinstance(val, dict) and val.get("error")]
    errors += [f"- {name}: {r['error']}" for name, r in results.items() if r.get("error")]
    errors += [f"- broker/{key}: {val['error']}" for key, val in broker.items() if isinstance(val, dict) and val.get("error")]
    errors += [f"- broker: {broker['error']}"] if broker.get("error") else []
    errors += [f"- {name}/{key}: publisher got {val['publisher_errors']} errors, e.g. {val.get('publisher_last_error')}"
               for name, r in results.items() for key, val in r.items()
               if isinstance(val, dict) and val.get("publisher_errors")]
    errors += [f"- {name}/{key}: {val['errors']} failed handshakes, e.g. {val.get('first_error')}"
               for name, r in results.items() for key, val in r.items()
               if isinstance(val, dict) and key == "handshake" and val.get("errors")]

    print(f"## realtime bench ({profile}, generator {gen_kind}{f' (slow: {fallback})' if gen_kind == 'c' else ''}, "
          f"{elapsed:.0f} s, "
          f"{platform.node() or 'host'} {os.cpu_count()} cpus, Python {platform.python_version()})\n")
    print("\n".join(lines))
    if broker:
        print("\n" + "\n".join(broker_table(broker)))
    print("\n`≥`: the generator (its process plus its core's softirq) was above 90% busy, so the figure is a lower bound. "
          "Cells: value (server process CPU% / generator process CPU% over the measured window); "
          "per-core busy time including softirq, where loopback TCP work lands, is in the JSON.")
    others = [(w.get("other_cpu_pct", 0.0), f"{name}/{key}") for name, r in results.items()
              for key, val in r.items() if isinstance(val, dict)
              for w in (val.get("cpu"), val.get("sat_cpu"), val.get("lat_cpu")) if w]
    others += [(w.get("other_cpu_pct", 0.0), f"broker/{key}") for key, val in broker.items() if isinstance(val, dict)
               for w in (val.get("sat_cpu"), val.get("lat_cpu")) if w]
    worst = max(others, default=(0.0, ""))
    if worst[0] >= 10:
        print(f"\n**Warning: the machine was not quiet**: other processes used up to {worst[0]:.0f}% of a core "
              f"during a measured window ({worst[1]}); figures from such windows are unreliable.")
    details = [f"- {name}: {r.get('detail')}" for name, r in results.items() if r.get("detail")]
    if details:
        print("\nServers:\n" + "\n".join(details))
    if profile != "smoke":
        print("\nTargets (DESIGN.md §9):\n" + "\n".join(notes))
    if errors:
        print("\nErrors:\n" + "\n".join(errors))

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}-{profile}.json"
    out.write_text(json.dumps({
        "profile": profile, "params": prof, "generator": gen_kind, "generator_fallback": fallback,
        "seconds": elapsed,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 "taskset": bool(pin(0))},
        "summary": figures, "targets": notes, "results": results, "broker": broker, "errors": errors,
        "other_cpu_worst_pct": worst[0], "other_cpu_worst_window": worst[1],
    }, indent=2, default=str))
    print(f"\nJSON: {out}")
    print(bench_line(figures))
    hard_failure = not results or bool(broker.get("error")) or any(r.get("error") for r in results.values()) or (
        "handshake" in only and "realtime" in results and get(results, "realtime", "handshake") is None)
    return 1 if hard_failure else 0


if __name__ == "__main__":
    sys.exit(main())
