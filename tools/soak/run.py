#!/usr/bin/env python3
"""Soak: up to 100,000 authenticated WebSocket connections on one server
process, held for minutes with in-band token refreshes and a steady
publisher, then a reconnect storm; a table each minute.  Not run in CI.

    .venv/bin/python tools/soak/run.py -n 200 -d 0.5          # self-check, < 1 minute
    .venv/bin/python tools/soak/run.py -n 20000 -d 2          # a short one
    .venv/bin/python tools/soak/run.py -n 100000 -d 10        # the full soak (as root: see below)

How: the server runs as a subprocess (``python -m realtime serve``) on a
generated config (HTTP on 127.0.0.1:0, ES256 tokens, the connection
limits raised to 2N, ``history`` long enough to recover a storm).  This
process reads the server's signing key from its state dir to mint tokens,
as the authorization server would.  ``--workers`` client processes
(``worker.py``, one epoll loop each, a hand-written WebSocket client:
``wire.py``) open the N connections from ``--sources`` (127.0.0.2-127.0.0.9:
~28,000 ephemeral ports each), each subscribed to one of N/100 channels
(~100 subscribers per channel), each with a token whose first expiry is
spread over ``--token-ttl`` and answered with an in-band ``refresh``.
Then one publisher connection publishes ``--rate`` messages per second
round-robin over the channels.

Each minute: server RSS, open fds and CPU, the clients' CPU, open
connections, messages published (acked), delivered, expected (publishes
times subscribers of their channel), lost (gaps in a connection's
``seq``), duplicated, refreshes, closes by code.  Then the storm: every
client socket is closed at once (FIN, or RST with ``--storm-drop rst``)
and all reconnect at once, at most ``--window`` handshakes in flight per
worker (0: no bound), each resubscribing with ``since`` = the last seq it
saw; the publisher keeps publishing.  Its line gives the duration, the
server's peak RSS during it, refused attempts and TCP retransmissions
(SYNs dropped by a full accept queue are retried by TCP: counted, not
failed).  Then the publisher stops, deliveries drain, and the totals must
match exactly.  Exit 1 on any loss, duplicate, refused client (an HTTP
error, a failed connect, an error reply), a refresh error, an
unrecoverable ``since``, or any close code at all.

File descriptors: the server needs one per connection, up to 2N during
the storm (closing and new sockets overlap), and each worker one per
connection.  The tool raises RLIMIT_NOFILE for itself (inherited by the
server and workers) up to the hard limit, and beyond it with
CAP_SYS_RESOURCE (up to /proc/sys/fs/nr_open; a container may withhold it
even from root).  Below N + 200 it stops and says what to raise; below 2N
it runs and warns that the storm may meet EMFILE.  Full size therefore
needs a hard limit of at least 201,000 or that capability.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
from queue import Empty, Queue

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV_PY = ROOT / ".venv" / "bin" / "python"
if Path(sys.executable).resolve() != VENV_PY.resolve() and VENV_PY.exists() and "REALTIME_SOAK_REEXEC" not in os.environ:
    os.environ["REALTIME_SOAK_REEXEC"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from publisher import Publisher  # noqa: E402

from realtime.tokens.keyring import KeyRing, issue_access_token  # noqa: E402

ISSUER = "https://soak.localhost"
APP = "soak-app"
SUM_KEYS = ("open", "inflight", "delivered", "lost", "dupes", "refreshed", "conns_refreshed", "refresh_errors",
            "errors", "tcp_retrans", "unrecovered", "pings", "cpu", "bad_frames", "recv_errors", "short_sends")


def write_config(tmp: Path, args: argparse.Namespace) -> Path:
    (tmp / "apps.toml").write_text(
        f'[[app]]\nname = "Soak"\nclient_id = "{APP}"\npublic = true\n'
        'redirect_uris = ["http://127.0.0.1/cb"]\ngrant_types = ["authorization_code", "refresh_token"]\n'
        'scopes = ["chat:read", "chat:write"]\n'
    )
    users = [{"name": f"soak-{k}", "scopes": ["chat:read", "chat:write"]}
             for k in range(math.ceil(args.connections / args.channels))] + [{"name": "soak-publisher"}]
    (tmp / "users.json").write_text(json.dumps({"users": users}))
    limit = 2 * args.connections + 1000  # old and new sockets overlap during the storm
    conf = tmp / "realtime.toml"
    conf.write_text(f"""
[server]
http = "127.0.0.1:0"
https = ""
state_dir = "state"
public_url = "{ISSUER}"
max_connections = {limit}
max_connections_per_ip = {limit}
log_level = "info"

[oauth]
apps = "apps.toml"
users = "users.json"
signing_alg = "ES256"
access_token_ttl = "{int(args.token_ttl)}s"

[websocket]
path = "/ws"
expiry_warning = "{args.warning}s"
ping_interval = "{args.ping_interval}s"
pong_timeout = "10s"
publish_rate = "{max(50, int(args.rate * 4))}/s"
message_rate = "{max(100, int(args.rate * 8))}/s"
# Every channel's subscribers leave at once in the storm: keep their counters.
max_idle_channels = {args.channels + 100}

[[channel]]
pattern = "soak:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
history = {args.history}
""")
    return conf


class Server:
    def __init__(self, conf: Path, pin: str | None) -> None:
        cmd = [str(VENV_PY), "-m", "realtime", "serve", "-c", str(conf)]
        if pin is not None:
            cmd = ["taskset", "-c", pin, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=conf.parent)
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

    def status(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


class Workers:
    """The client processes and their latest reports."""

    def __init__(self, args: argparse.Namespace, port: int, state_dir: Path) -> None:
        self.latest: list[dict] = []
        self.events: Queue[tuple[int, dict]] = Queue()
        self.procs: list[subprocess.Popen] = []
        per = math.ceil(args.connections / args.workers)
        for w in range(args.workers):
            first = w * per
            count = min(per, args.connections - first)
            cfg = {"host": "127.0.0.1", "port": port, "path": "/ws", "sources": args.sources, "first": first,
                   "count": count, "channels": args.channels, "state_dir": str(state_dir), "issuer": ISSUER,
                   "app": APP, "token_ttl": args.token_ttl, "ramp_allowance": args.connections / 500, "warning": args.warning, "window": args.window}
            cmd = [str(VENV_PY), str(HERE / "worker.py"), json.dumps(cfg)]
            if args.pin_clients is not None:
                cmd = ["taskset", "-c", args.pin_clients, *cmd]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.procs.append(proc)
            self.latest.append({})
            threading.Thread(target=self._read, args=(w, proc), daemon=True).start()

    def _read(self, w: int, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            report = json.loads(line)
            if os.environ.get("SOAK_DEBUG"):  # every worker report on stderr
                print(f"worker {w}: {report}", file=sys.stderr, flush=True)
            self.latest[w] = report
            if report["kind"] != "stats":
                self.events.put((w, report))
        self.events.put((w, {"kind": "exited", "rc": proc.wait()}))

    def tell(self, word: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(word.encode() + b"\n")
            proc.stdin.flush()

    def wait_all(self, kind: str, timeout: float) -> list[dict] | str:
        """Every worker's ``kind`` report, or why not (a worker gave up
        on some connections, exited, or the time ran out)."""
        got: dict[int, dict] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(self.procs):
            try:
                w, report = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                return f"workers not all {kind} within {timeout:.0f}s"
            if report["kind"] in ("exited", "stuck"):
                return f"worker {w} {report['kind']} waiting for {kind} ({report.get('open')} connections up)"
            if report["kind"] == kind:
                got[w] = report
        return [got[w] for w in sorted(got)]

    def total(self) -> dict:
        out: dict = {key: 0 for key in SUM_KEYS}
        out["closes"], out["refused"] = Counter(), Counter()
        for report in self.latest:
            for key in SUM_KEYS:
                out[key] += report.get(key, 0)
            out["closes"].update({int(k): v for k, v in report.get("closes", {}).items()})
            out["refused"].update(report.get("refused", {}))
        return out

    def stop(self) -> None:
        try:
            self.tell("stop")
        except OSError:
            pass
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Table:
    HEADER = ("| minute | server RSS MiB | server fds | server CPU % | clients CPU % | open conns | published "
              "| delivered | expected | lost | dupes | refreshed | refresh errors | closes |")

    def __init__(self, server: Server, workers: Workers, publisher: Publisher, subscribers: Counter) -> None:
        self.server, self.workers, self.publisher, self.subscribers = server, workers, publisher, subscribers
        self.rows = [self.HEADER, "|" + "---|" * 14]
        self.last = (time.monotonic(), server.cpu(), workers.total()["cpu"])
        print("\n".join(self.rows), flush=True)

    def expected(self) -> int:
        return sum(n * self.subscribers[c] for c, n in self.publisher.published.copy().items())

    def row(self, label: str) -> dict:
        t = self.workers.total()
        now, server_cpu = time.monotonic(), self.server.cpu()
        wall = max(1e-9, now - self.last[0])
        cpu_s, cpu_c = 100 * (server_cpu - self.last[1]) / wall, 100 * (t["cpu"] - self.last[2]) / wall
        self.last = (now, server_cpu, t["cpu"])
        line = (f"| {label} | {self.server.status('VmRSS'):.0f} | {self.server.fds()} | {cpu_s:.0f} | {cpu_c:.0f} "
                f"| {t['open']} | {self.publisher.acked} | {t['delivered']} | {self.expected()} | {t['lost']} "
                f"| {t['dupes']} | {t['refreshed']} | {t['refresh_errors']} | {dict(t['closes']) or '-'} |")
        self.rows.append(line)
        print(line, flush=True)
        return t


def latencies(reports: list[dict]) -> str:
    """Connect-to-subscribed times, the worst worker's percentiles."""
    return ("each connection connect to subscribed: p50 {:.2f}s p99 {:.2f}s max {:.2f}s".format(
        *(max(r[k] for r in reports) for k in ("p50", "p99", "max"))))


def sources(spec: str) -> list[str]:
    """``127.0.0.2-127.0.0.9`` or ``a,b,c``."""
    if "-" in spec:
        first, last = spec.split("-")
        base, lo = first.rsplit(".", 1)
        return [f"{base}.{i}" for i in range(int(lo), int(last.rsplit(".", 1)[1]) + 1)]
    return spec.split(",")


def raise_fd_limit(n: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by the server and the workers) toward
    2N + 1000, the server's need when a storm's new sockets arrive before
    the old ones are closed; past the hard limit only with
    CAP_SYS_RESOURCE.  N + 200 is the least a run can do with: the server
    then holds N, and in the storm its accept backs off on EMFILE until
    old sockets close (clients wait in the queue).  Returns the limit."""
    want = 2 * n + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, nr_open),) * 2)
            return min(want, nr_open)
        except (ValueError, OSError):
            pass  # no CAP_SYS_RESOURCE (a container may drop it even for root)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if hard < n + 200:
        raise SystemExit(
            f"soak: the open file limit is {hard} (hard) and this process cannot raise it: {n} connections need "
            f"at least {n + 200} for the server ({want} to take a storm without EMFILE). Raise it for the shell that "
            "runs the soak (root with CAP_SYS_RESOURCE: ulimit -Hn / prlimit; else limits.conf, or LimitNOFILE= "
            "in a systemd unit), and /proc/sys/fs/nr_open above that")
    if hard < want:
        print(f"soak: open file limit {hard} < {want}: the storm's overlap may hit EMFILE (accept backs off)",
              flush=True)
    return min(want, hard)


def run(args: argparse.Namespace, tmp: Path) -> int:
    server = Server(write_config(tmp, args), args.pin_server)
    workers: Workers | None = None
    publisher: Publisher | None = None
    try:
        somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
        print(f"soak: server pid {server.proc.pid} port {server.port}; {args.connections} connections from "
              f"{len(args.sources)} source addresses by {args.workers} workers, {args.channels} channels, "
              f"{args.rate:g} publishes/s, tokens {args.token_ttl:g}s (warning {args.warning:g}s), "
              f"ping {args.ping_interval:g}s; RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}, "
              f"somaxconn {somaxconn}", flush=True)
        t0, cpu0 = time.monotonic(), server.cpu()
        workers = Workers(args, server.port, tmp / "state")
        ready = workers.wait_all("ready", args.ramp_timeout)
        if isinstance(ready, str):
            raise SystemExit(f"soak: ramp failed: {ready}: {workers.total()}")
        t = workers.total()
        print(f"soak: ramp: {t['open']} connected and subscribed in {time.monotonic() - t0:.1f}s "
              f"({latencies(ready)}); server CPU {server.cpu() - cpu0:.1f}s; "
              f"rss={server.status('VmRSS'):.0f} MiB fds={server.fds()} tcp_retrans={t['tcp_retrans']} "
              f"refused={dict(t['refused']) or '-'}", flush=True)

        ring = KeyRing.load(tmp / "state" / "keys")
        token, _ = issue_access_token(ring, issuer=ISSUER, audience=ISSUER, sub="soak-publisher", client_id=APP,
                                      scope=["chat:read", "chat:write"], ttl=args.duration * 60 + 3600)
        channels = [f"soak:{i}" for i in range(args.channels)]
        publisher = Publisher(server.port, token, channels, args.rate)
        publisher.start()
        subscribers = Counter(channels[i % args.channels] for i in range(args.connections))
        table = Table(server, workers, publisher, subscribers)
        table.row("0")
        start = time.monotonic()
        end = start + args.duration * 60
        minute = 1
        while time.monotonic() < end:
            time.sleep(max(0.0, min(end, start + 60 * minute) - time.monotonic()))
            if time.monotonic() >= start + 60 * minute:
                table.row(str(minute))
                minute += 1
        storm_line, storm_failed = "", False
        if not args.no_storm:
            before = workers.total()
            server.reset_peak()
            t0, cpu0 = time.monotonic(), server.cpu()
            workers.tell("storm rst" if args.storm_drop == "rst" else "storm")
            done = workers.wait_all("storm_done", args.ramp_timeout)
            seconds = time.monotonic() - t0
            t = workers.total()
            storm_failed = isinstance(done, str)
            outcome = (f"{done} after {seconds:.1f}s" if isinstance(done, str) else
                       f"in {seconds:.1f}s ({latencies(done)})")
            storm_line = (f"soak: storm: {args.connections} dropped ({args.storm_drop}), back and resubscribed "
                          f"with since {outcome}; server CPU {server.cpu() - cpu0:.1f}s; "
                          f"server peak RSS {server.status('VmHWM'):.0f} MiB; tcp_retrans "
                          f"{t['tcp_retrans'] - before['tcp_retrans']}; refused {dict(t['refused']) or '-'}; "
                          f"unrecovered {t['unrecovered']}")
            print(storm_line, flush=True)
            time.sleep(args.tail)
            table.row("storm")
        publisher.stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and workers.total()["delivered"] < table.expected():
            time.sleep(0.2)
        t = table.row("end")
        expected = table.expected()
        ok = (t["lost"] == 0 and t["dupes"] == 0 and t["delivered"] == expected and not t["closes"]
              and not t["refused"] and t["refresh_errors"] == 0 and t["errors"] == 0 and t["unrecovered"] == 0
              and t["bad_frames"] == 0 and publisher.errors == 0 and not storm_failed)
        summary = (f"soak: connections={args.connections} minutes={args.duration:g} published={publisher.acked} "
                   f"delivered={t['delivered']} expected={expected} lost={t['lost']} dupes={t['dupes']} "
                   f"refreshed={t['refreshed']} (connections refreshed: {t['conns_refreshed']}) "
                   f"refresh_errors={t['refresh_errors']} errors={t['errors']} publisher_errors={publisher.errors} "
                   f"closes={dict(t['closes'])} refused={dict(t['refused'])} server_peak_rss="
                   f"{server.status('VmHWM'):.0f}MiB {'OK' if ok else 'FAILED'}")
        print(summary, flush=True)
        if args.out:
            Path(args.out).write_text("\n".join(table.rows + ["", storm_line, summary]) + "\n")
        return 0 if ok else 1
    finally:
        if publisher is not None:
            publisher.stop()
        if workers is not None:
            workers.stop()
        rc = server.stop()
        print(f"soak: server exit {rc}", flush=True)
        if rc != 0:
            print("".join(server.log[-20:]), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=5000)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="minutes held before the storm")
    parser.add_argument("--rate", type=float, default=100.0, help="publishes per second (total)")
    parser.add_argument("--channels", type=int, help="default: one per 100 connections")
    parser.add_argument("--history", type=int, default=100, help="kept per channel, for since after the storm")
    parser.add_argument("--token-ttl", type=float, help="seconds (default: half the duration, 60-300 s)")
    parser.add_argument("--warning", type=float, help="expiry_warning seconds (default: min(30, ttl/3))")
    parser.add_argument("--ping-interval", type=float, default=25.0, help="server keep-alive (0: off)")
    parser.add_argument("--workers", type=int, help="client processes (default: one per 50,000 connections)")
    parser.add_argument("--sources", type=sources, default=sources("127.0.0.2-127.0.0.9"),
                        help="client source addresses: a-b range or a,b,c")
    parser.add_argument("--window", type=int, default=1000, help="handshakes in flight per worker (0: no bound)")
    parser.add_argument("--no-storm", action="store_true")
    parser.add_argument("--storm-drop", choices=("fin", "rst"), default="fin")
    parser.add_argument("--tail", type=float, default=10.0, help="seconds of publishing after the storm")
    parser.add_argument("--ramp-timeout", type=float, default=600.0)
    parser.add_argument("--pin-server", metavar="CPUS", help="taskset the server (e.g. 0)")
    parser.add_argument("--pin-clients", metavar="CPUS", help="taskset the workers (e.g. 1)")
    parser.add_argument("--out", help="also write the table here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    args.channels = args.channels or max(1, round(args.connections / 100))
    args.token_ttl = args.token_ttl or min(300.0, max(60.0, args.duration * 30))
    args.warning = args.warning or min(30.0, args.token_ttl / 3)
    if args.warning + 5 >= args.token_ttl:
        parser.error("--warning must be at least 5 s below --token-ttl")
    limit = raise_fd_limit(args.connections)
    # A worker holds one fd per connection: enough workers to stay under the limit.
    args.workers = args.workers or max(1, math.ceil(args.connections / 50_000),
                                       math.ceil(args.connections / (limit - 200)))

    tmp = Path(tempfile.mkdtemp(prefix="realtime-soak-"))
    try:
        return run(args, tmp)
    finally:
        if args.keep:
            print(f"soak: files in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
