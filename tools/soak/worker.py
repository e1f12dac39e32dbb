"""One soak client process: a share of the connections on one epoll loop.

Started by ``run.py`` with its settings as one JSON argument.  It opens
its connections from the loopback source addresses in turn (bind before
connect, with IP_BIND_ADDRESS_NO_PORT so the port is picked per
destination at connect time: ~28,000 ports per source address), at most
``window`` handshakes in flight, subscribes each to its channel and then
answers pings, ``token_expiring`` (a ``refresh`` with a freshly minted
token) and checks every message's ``seq``.

stdin (one word a line): ``storm`` drops every connection at once and
reconnects them all, resubscribing with ``since`` = the last seq seen;
``stop`` exits.  stdout: one JSON object a line: ``stats`` every second,
``ready`` once every connection is subscribed, ``storm_done`` when they
all are again after a storm.
"""

from __future__ import annotations

import errno
import heapq
import json
import os
import random
import select
import socket
import struct
import sys
import time
from collections import Counter, deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import wire  # noqa: E402

from realtime.tokens.keyring import KeyRing, issue_access_token  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
TCP_INFO_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans in struct tcp_info
RETRY_AFTER = 1.0  # a failed connect is counted, then tried again this much later
MAX_TRIES = 5

CONNECTING, UPGRADING, OPEN, SUBSCRIBED, DOWN = range(5)


class Conn:
    __slots__ = ("idx", "channel", "sub", "sock", "state", "buf", "accept", "last_seq", "token", "exp", "tries",
                 "refreshed", "t0")

    def __init__(self, idx: int, channels: int) -> None:
        self.idx = idx
        self.channel = f"soak:{idx % channels}"
        self.sub = f"soak-{idx // channels}"  # a user per round of channels: ~100 distinct users per channel
        self.sock: socket.socket | None = None
        self.state = DOWN
        self.buf = bytearray()
        self.accept = b""
        self.last_seq: int | None = None
        self.token = ""
        self.exp = 0.0
        self.tries = 0
        self.refreshed = False
        self.t0 = 0.0  # when its current attempt began


class Worker:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.ring = KeyRing.load(Path(cfg["state_dir"]) / "keys")
        self.ep = select.epoll()
        self.conns = [Conn(i, cfg["channels"]) for i in range(cfg["first"], cfg["first"] + cfg["count"])]
        self.by_fd: dict[int, Conn] = {}
        self.pending: deque[Conn] = deque(self.conns)
        self.retry: list[tuple[float, int, Conn]] = []
        self.inflight = 0
        self.subscribed = 0
        self.phase = "ramp"  # ramp → hold → storm → hold
        self.stats = Counter()
        self.closes: Counter[int] = Counter()
        self.refused: Counter[str] = Counter()
        self.sources = cfg["sources"]
        self.next_source = cfg["first"]
        self.latencies: list[float] = []  # connect to subscribed, this ramp or storm (retries included)

    # -- tokens -------------------------------------------------------------
    def mint(self, conn: Conn, ttl: float) -> None:
        cfg = self.cfg
        conn.token, claims = issue_access_token(self.ring, issuer=cfg["issuer"], audience=cfg["issuer"], sub=conn.sub,
                                                client_id=cfg["app"], scope=["chat:read", "chat:write"], ttl=ttl)
        conn.exp = claims.exp

    # -- connection lifecycle -------------------------------------------------
    def start_connect(self, conn: Conn) -> None:
        cfg = self.cfg
        if not conn.token:
            # First expiries spread over a lifetime that starts once the ramp
            # is over (allowed 1 s per 500 connections), so refreshes come
            # evenly and no token runs out in a slow ramp.
            self.mint(conn, cfg["ramp_allowance"] + random.uniform(cfg["warning"] + 5, cfg["token_ttl"]))
        elif conn.exp - time.time() < cfg["warning"] + 5 + cfg["ramp_allowance"]:
            self.mint(conn, cfg["token_ttl"])  # a real client refreshes a token this close to its end first
        source = self.sources[self.next_source % len(self.sources)]
        self.next_source += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        try:
            sock.bind((source, 0))
            err = sock.connect_ex((cfg["host"], cfg["port"]))
        except OSError as exc:
            err = exc.errno
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed(conn, f"connect {errno.errorcode.get(err, err)}")
            return
        conn.sock, conn.state, conn.buf = sock, CONNECTING, bytearray()
        if not conn.tries:
            conn.t0 = time.monotonic()
        self.by_fd[sock.fileno()] = conn
        self.ep.register(sock.fileno(), select.EPOLLOUT)
        self.inflight += 1

    def failed(self, conn: Conn, why: str) -> None:
        """A refused or broken attempt: counted (the run fails), tried again."""
        self.refused[why] += 1
        if conn.sock is not None:
            self.drop(conn)
        conn.tries += 1
        if conn.tries < MAX_TRIES:
            heapq.heappush(self.retry, (time.monotonic() + RETRY_AFTER, conn.idx, conn))

    def drop(self, conn: Conn, linger_rst: bool = False) -> None:
        sock, conn.sock = conn.sock, None
        if conn.state in (CONNECTING, UPGRADING, OPEN):
            self.inflight -= 1
        elif conn.state == SUBSCRIBED:
            self.subscribed -= 1
        conn.state = DOWN
        if sock is None:
            return
        fd = sock.fileno()
        self.by_fd.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except OSError:
            pass
        if linger_rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def send(self, conn: Conn, data: bytes) -> None:
        if conn.sock is None:
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.closed(conn, f"send {errno.errorcode.get(exc.errno, exc.errno)}")
            return
        if sent != len(data):  # small messages on an idle socket: never seen at these rates
            self.stats["short_sends"] += 1
            conn.sock.setblocking(True)
            conn.sock.sendall(data[sent:])
            conn.sock.setblocking(False)

    def closed(self, conn: Conn, why: str) -> None:
        """The socket broke under us: an unexpected close once subscribed,
        a failed attempt before."""
        if conn.state == SUBSCRIBED:
            self.closes[1006] += 1
            self.drop(conn)
        else:
            self.failed(conn, why)

    def on_writable(self, conn: Conn) -> None:
        assert conn.sock is not None
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.failed(conn, f"connect {errno.errorcode.get(err, err)}")
            return
        request, conn.accept = wire.upgrade_request(self.cfg["host"], self.cfg["port"], self.cfg["path"], conn.token)
        conn.state = UPGRADING
        self.ep.modify(conn.sock.fileno(), select.EPOLLIN)
        self.send(conn, request)

    def on_readable(self, conn: Conn) -> None:
        assert conn.sock is not None
        try:
            data = conn.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as exc:
            data = b""
            self.stats["recv_errors"] += 1
            self.refused[f"recv {errno.errorcode.get(exc.errno, exc.errno)}"] += 1
        if not data:
            if conn.state == SUBSCRIBED:
                self.closes[1006] += 1
                self.drop(conn)
            else:
                self.failed(conn, "eof during handshake")
            return
        conn.buf += data
        if conn.state == UPGRADING:
            head = wire.upgrade_response(conn.buf, conn.accept)
            if head is None:
                return
            status, length = head
            if status != 101:
                self.failed(conn, f"http {status}")
                return
            del conn.buf[:length]
            info = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_TOTAL_RETRANS + 4)
            self.stats["tcp_retrans"] += int.from_bytes(info[TCP_INFO_TOTAL_RETRANS:TCP_INFO_TOTAL_RETRANS + 4], "little")
            conn.state = OPEN
            subscribe = {"type": "subscribe", "channel": conn.channel, "id": 0}
            if self.phase != "ramp":  # back after a drop: recover what was missed
                subscribe["since"] = conn.last_seq or 0
            self.send(conn, wire.text(subscribe))
        try:
            frames = wire.server_frames(conn.buf)
        except ValueError:
            self.stats["bad_frames"] += 1
            self.closes[1002] += 1
            self.drop(conn)
            return
        for opcode, payload in frames:
            if opcode == wire.TEXT:
                if payload.startswith(b'{"type":"message"'):
                    self.on_delivery(conn, payload)  # the hot path: no JSON parse for 10,000 a second
                else:
                    self.on_message(conn, json.loads(payload))
            elif opcode == wire.PING:
                self.send(conn, wire.client_frame(wire.PONG, payload))
                self.stats["pings"] += 1
            elif opcode == wire.CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.closes[code] += 1
                self.send(conn, wire.close_frame(code if code < 4000 else 1000))
                self.drop(conn)
                return
            if conn.sock is None:
                return

    def on_delivery(self, conn: Conn, payload: bytes) -> None:
        """A ``message``: its ``seq`` must follow the last one seen."""
        at = payload.index(b'"seq":') + 6
        seq = int(payload[at:payload.index(b",", at)])
        stats = self.stats
        last = conn.last_seq
        if last is not None:
            if seq <= last:
                stats["dupes"] += 1
                return
            stats["lost"] += seq - last - 1
        conn.last_seq = seq
        stats["delivered"] += 1

    def on_message(self, conn: Conn, msg: dict) -> None:
        kind = msg.get("type")
        stats = self.stats
        if kind == "token_expiring":
            self.mint(conn, self.cfg["token_ttl"])
            self.send(conn, wire.text({"type": "refresh", "token": conn.token, "id": "r"}))
        elif kind == "refreshed":
            stats["refreshed"] += 1
            if not conn.refreshed:
                conn.refreshed = True
                stats["conns_refreshed"] += 1
        elif kind == "ack" and msg.get("id") == 0 and conn.state == OPEN:
            if msg.get("recovered") is False:
                stats["unrecovered"] += 1
            conn.state = SUBSCRIBED
            conn.tries = 0
            self.latencies.append(time.monotonic() - conn.t0)
            self.inflight -= 1
            self.subscribed += 1
        elif kind == "error":
            stats["refresh_errors" if msg.get("id") == "r" else "errors"] += 1
            self.refused[f"error {msg.get('code')}"] += msg.get("id") != "r"

    # -- the loop -----------------------------------------------------------
    def report(self, kind: str = "stats", **extra) -> None:
        t = os.times()
        out = {"kind": kind, "open": self.subscribed, "inflight": self.inflight, "cpu": t.user + t.system,
               "closes": dict(self.closes), "refused": dict(self.refused), **self.stats, **extra}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()

    def storm(self, linger_rst: bool) -> None:
        for conn in self.conns:
            self.drop(conn, linger_rst)
        self.pending.extend(self.conns)
        self.phase = "storm"

    def run(self) -> None:
        window = self.cfg["window"] or len(self.conns)
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        self.ep.register(stdin, select.EPOLLIN)
        next_report = time.monotonic() + 1
        inbox = b""
        storm_started = 0.0
        while True:
            while self.pending and self.inflight < window:
                self.start_connect(self.pending.popleft())
            now = time.monotonic()
            while self.retry and self.retry[0][0] <= now:
                self.pending.append(heapq.heappop(self.retry)[2])
            if self.phase in ("ramp", "storm") and self.subscribed == len(self.conns):
                lat = sorted(self.latencies)
                self.latencies = []
                pct = {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "max": lat[-1]}
                if self.phase == "ramp":
                    self.report("ready", **pct)
                else:
                    self.report("storm_done", seconds=now - storm_started, **pct)
                self.phase = "hold"
            if (self.phase in ("ramp", "storm") and not self.pending and not self.retry and not self.inflight
                    and self.subscribed < len(self.conns)):
                self.report("stuck")
                self.phase = "hold"
            if now >= next_report:
                self.report()
                next_report = now + 1
            timeout = next_report - now
            if self.retry:
                timeout = min(timeout, self.retry[0][0] - now)
            for fd, mask in self.ep.poll(max(0.0, timeout), 4096):
                if fd == stdin:
                    try:
                        inbox += os.read(stdin, 4096)
                    except BlockingIOError:
                        continue
                    if not inbox:
                        return  # the coordinator is gone
                    *lines, inbox = inbox.split(b"\n")
                    for line in lines:
                        if line.strip() == b"stop":
                            self.report("final")
                            return
                        if line.strip().startswith(b"storm"):
                            storm_started = time.monotonic()
                            self.storm(linger_rst=line.strip() == b"storm rst")
                    continue
                conn = self.by_fd.get(fd)
                if conn is None:
                    continue
                if conn.state == CONNECTING:
                    self.on_writable(conn)
                else:
                    self.on_readable(conn)


if __name__ == "__main__":
    Worker(json.loads(sys.argv[1])).run()
