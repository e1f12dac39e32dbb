"""/healthz latency while WebSocket peers flood the server with tiny frames.

Usage (from the repo root):

    .venv/bin/python tools/bench/frame_flood.py [--kind ping|continuation] [--flooders 2] [--seconds 10]

A server runs in a child process on 127.0.0.1 (plain HTTP, a free port).
Each flooder opens a WebSocket and sends 6-byte frames as fast as the
socket takes them:

- ``ping``: empty pings (each answered by a pong, which the flooder reads
  and drops);
- ``continuation``: a fragmented text message that never ends, one empty
  continuation frame after another (reconnecting when the server closes it).

Meanwhile one client asks ``GET /healthz`` on a keep-alive connection every
50 ms and prints the median, p90 and max latency.  Everything talks only to
127.0.0.1 and stops after ``--seconds``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

MASK = b"\x01\x02\x03\x04"


def serve(conn: "multiprocessing.connection.Connection") -> None:
    from realtime.config.settings import Addr, OAuthSettings, ServerSettings, Settings, WebSocketSettings
    from tests.helpers.server import Running
    from tests.helpers.settings import APPS, CHANNELS, USERS

    state = Path(tempfile.mkdtemp(prefix="flood-"))
    settings = Settings(
        server=ServerSettings(http=Addr("127.0.0.1", 0), https=None, state_dir=state,
                              public_url="http://127.0.0.1", log_level="warning"),
        oauth=OAuthSettings(), websocket=WebSocketSettings(ping_interval=0),
        channels=CHANNELS, apps=dict(APPS), users=dict(USERS),
    )
    running = Running.in_thread(settings)
    conn.send((running.http.port, running.mint(ttl=3600)))
    conn.recv()  # until the parent is done
    running.stop()


def open_ws(port: int, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("no 101")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    return sock


def drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def flood(port: int, token: str, kind: str, stop: threading.Event, counts: list[int]) -> None:
    frame = bytes((0x89, 0x80)) + MASK if kind == "ping" else bytes((0x00, 0x80)) + MASK
    batch = frame * 4096
    while not stop.is_set():
        sock = open_ws(port, token)
        threading.Thread(target=drain, args=(sock,), daemon=True).start()
        if kind == "continuation":
            sock.sendall(bytes((0x01, 0x81)) + MASK + bytes([ord("[") ^ MASK[0]]))
        try:
            while not stop.is_set():
                sock.sendall(batch)
                counts[0] += 4096
        except OSError:
            counts[1] += 1  # closed by the server: reconnect
        finally:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("ping", "continuation"), default="ping")
    parser.add_argument("--flooders", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=serve, args=(child,), daemon=True)
    proc.start()
    port, token = parent.recv()

    def healthz_latencies(seconds: float) -> list[float]:
        out = []
        with socket.create_connection(("127.0.0.1", port)) as sock:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                start = time.perf_counter()
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"ok\n"):
                    data += sock.recv(4096)
                out.append((time.perf_counter() - start) * 1000)
                time.sleep(0.05)
        return out

    def report(label: str, ms: list[float]) -> None:
        ms.sort()
        print(f"{label}: n={len(ms)} median={statistics.median(ms):.1f} ms "
              f"p90={ms[int(len(ms) * 0.9)]:.1f} ms max={ms[-1]:.1f} ms")

    report("idle", healthz_latencies(min(args.seconds, 3)))
    stop = threading.Event()
    counts = [0, 0]
    threads = [threading.Thread(target=flood, args=(port, token, args.kind, stop, counts), daemon=True)
               for _ in range(args.flooders)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    report(f"{args.flooders} x {args.kind} flood", healthz_latencies(args.seconds))
    stop.set()
    print(f"frames sent: {counts[0]}, connections closed by the server: {counts[1]}")
    parent.send("stop")
    proc.join(10)
    os._exit(0)


if __name__ == "__main__":
    main()
