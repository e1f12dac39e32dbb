"""The hypothesis tests' side of a live server (tests/fuzz).

hypothesis runs each example as a plain function call, so the server runs
in a thread of its own (:meth:`Running.in_thread`) and every example talks
to it over blocking loopback sockets with hard timeouts (a hang fails the
example, it never stalls the run).

:class:`LiveServer` watches that server: everything it logs at ERROR or
above, and anything that ends its ``trio.run``, is collected, and
:meth:`LiveServer.check` fails the test on it.  A *sentinel* client holds a
WebSocket subscription and an HTTP keep-alive connection through the whole
run: :meth:`LiveServer.check` also proves that its stream is intact (every
publish acked and delivered in order).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import trustme

from realtime.config.settings import Addr, OAuthSettings, ServerSettings, Settings, WebSocketSettings
from tests.helpers.server import Running
from tests.helpers.settings import APPS, CHANNELS, USERS

IO_TIMEOUT = 10.0  # per blocking socket operation: a server hang fails fast
ECHO = "/ws-echo"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LiveServer:
    """A :class:`Running` server in its own thread, watched for errors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.errors = _Collect()
        self.running: Running | None = None
        self.sentinel: Sentinel | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        logging.getLogger("realtime").addHandler(self.errors)
        self.running = Running.in_thread(self.settings)
        self.sentinel = Sentinel(self)

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.close()
        if self.running is not None:
            self.running.stop()
        logging.getLogger("realtime").removeHandler(self.errors)

    @property
    def crash(self) -> BaseException | None:
        return None if self.running is None else self.running.crash

    # -- helpers --------------------------------------------------------------
    @property
    def http(self) -> tuple[str, int]:
        assert self.running is not None
        return (self.running.http.host, self.running.http.port)

    def mint(self, sub: str = "alice", scope: str = "chat:read chat:write", ttl: float = 600.0) -> str:
        assert self.running is not None
        return self.running.mint(sub=sub, scope=scope, ttl=ttl)

    def connect(self, source: str | None = None) -> socket.socket:
        sock = socket.create_connection(self.http, timeout=IO_TIMEOUT)
        sock.settimeout(IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def check(self) -> None:
        """Fail on a server error, a crash, or a disturbed sentinel stream."""
        assert self.running is not None and self.running.thread is not None
        assert self.crash is None, f"server crashed: {self.crash!r}"
        assert self.running.thread.is_alive(), "server thread ended"
        if self.errors.records:
            text = "\n".join(logging.Formatter().format(r) for r in self.errors.records)
            self.errors.records.clear()
            raise AssertionError(f"server logged errors:\n{text}")
        assert self.sentinel is not None
        self.sentinel.prove()


# -- a minimal blocking WebSocket client (masked frames, RFC 6455 §5.3) ------


def send_all(sock: socket.socket, data: bytes, bytewise: bool = False) -> None:
    """Send ``data``; tolerate the server closing early (that is an answer)."""
    try:
        if bytewise:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
        else:
            sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_until_close(sock: socket.socket, limit: int = 1 << 24) -> bytes:
    """Everything the server sends until it closes (bounded by IO_TIMEOUT)."""
    chunks: list[bytes] = []
    total = 0
    deadline = time.monotonic() + IO_TIMEOUT
    while total < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError(f"server neither answered nor closed within {IO_TIMEOUT}s") from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def mask_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
               mask: bytes = b"\x01\x02\x03\x04", masked: bool = True, wide: int = 0) -> bytes:
    """A client frame.  ``wide`` forces the 16-bit (1) or 64-bit (2) length form."""
    first = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126 and wide == 0:
        head = struct.pack("!BB", first, mbit | n)
    elif n < 0x10000 and wide <= 1:
        head = struct.pack("!BBH", first, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mbit | 127, n)
    if not masked:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def close_frame(code: int = 1000) -> bytes:
    return mask_frame(0x8, struct.pack("!H", code))


def parse_server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Server frames: final, unmasked, no RSV bits (frames.py never sends others)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        assert len(data) - i >= 2, f"truncated frame header at {i}: {data[i:]!r}"
        b0, b1 = data[i], data[i + 1]
        assert b0 & 0x80 and not b0 & 0x70, f"bad first byte {b0:#x}"
        assert not b1 & 0x80, "server frame is masked"
        n = b1 & 0x7F
        i += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[i:i + 2])
            i += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[i:i + 8])
            i += 8
        assert len(data) - i >= n, "truncated frame payload"
        out.append((b0 & 0x0F, data[i:i + n]))
        i += n
    return out


def upgrade_request(path: str, token: str | None, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
            + auth + extra + b"\r\n")


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read an HTTP response head; returns (head, bytes after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def open_ws(live: LiveServer, path: str = "/ws", token: str | None = None) -> tuple[socket.socket, bytes]:
    """A raw upgraded socket and whatever arrived after the 101 head."""
    sock = live.connect()
    sock.sendall(upgrade_request(path, token or live.mint()))
    head, rest = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def read_frames_until(sock: socket.socket, buf: bytes, want: Any) -> tuple[list[tuple[int, bytes]], bytes]:
    """Read whole server frames until ``want(frames)`` is true."""
    frames: list[tuple[int, bytes]] = []
    while True:
        # Take every whole frame in buf.
        while True:
            whole = _whole_frame_len(buf)
            if whole is None:
                break
            frames.extend(parse_server_frames(buf[:whole]))
            buf = buf[whole:]
        if want(frames):
            return frames, buf
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed early; frames so far {frames!r}")
        buf += chunk


def _whole_frame_len(buf: bytes) -> int | None:
    if len(buf) < 2:
        return None
    n = buf[1] & 0x7F
    i = 2
    if n == 126:
        if len(buf) < 4:
            return None
        (n,) = struct.unpack("!H", buf[2:4])
        i = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        (n,) = struct.unpack("!Q", buf[2:10])
        i = 10
    return i + n if len(buf) >= i + n else None


class Sentinel:
    """Another client whose stream must not notice anything the fuzzer does:
    a WebSocket that publishes to itself and checks acks and ``seq`` order,
    and an HTTP keep-alive connection that keeps answering ``/healthz``."""

    CHANNEL = "chat:sentinel"

    def __init__(self, live: LiveServer) -> None:
        self.ws, buf = open_ws(live)
        frames, self.buf = read_frames_until(self.ws, buf, lambda f: len(f) >= 1)
        assert json.loads(frames[0][1])["type"] == "welcome"
        self._send({"type": "subscribe", "channel": self.CHANNEL, "id": "s"})
        self._expect(lambda m: m.get("type") == "ack" and m.get("id") == "s")
        self.n = 0
        self.seq: int | None = None
        self.http = live.connect()
        self.http_buf = b""
        self.proofs = 0

    def _send(self, obj: Any) -> None:
        self.ws.sendall(mask_frame(0x1, json.dumps(obj).encode()))

    def _expect(self, pred: Any) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []

        def done(frames: list[tuple[int, bytes]]) -> bool:
            for op, payload in frames[len(got):]:
                assert op == 0x1, f"sentinel got opcode {op}: {payload!r}"
                got.append(json.loads(payload))
            return any([pred(m) for m in got])

        _, self.buf = read_frames_until(self.ws, self.buf, done)
        return got

    def prove(self) -> None:
        self.n += 1
        self._send({"type": "publish", "channel": self.CHANNEL, "data": {"n": self.n}, "id": self.n})
        seen: set[str] = set()

        def both(m: dict[str, Any]) -> bool:
            if m.get("type") == "message" and m.get("data") == {"n": self.n}:
                seen.add("message")
            if m.get("type") == "ack" and m.get("id") == self.n:
                seen.add("ack")
            return len(seen) == 2

        got = self._expect(both)
        acks = [m for m in got if m.get("type") == "ack"]
        msgs = [m for m in got if m.get("type") == "message"]
        assert len(acks) == 1 and len(msgs) == 1 and len(got) == 2, got
        if self.seq is not None:
            assert msgs[0]["seq"] == self.seq + 1, (self.seq, msgs)
        self.seq = msgs[0]["seq"]
        self.http.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = self.http_buf
        while b"ok\n" not in data:
            chunk = self.http.recv(4096)
            assert chunk, "sentinel HTTP keep-alive connection was closed"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data
        self.http_buf = data.split(b"ok\n", 1)[1]
        self.proofs += 1

    def close(self) -> None:
        for sock in (self.ws, self.http):
            try:
                sock.close()
            except OSError:
                pass


def fuzz_settings(tmp: Path) -> Settings:
    ca = trustme.CA()
    pem = tmp / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    return Settings(
        server=ServerSettings(http=Addr("127.0.0.1", 0), https=None, tls_cert=pem, tls_key=pem,
                              state_dir=tmp / "state", public_url="https://localhost", shutdown_grace=2.0,
                              header_timeout=5.0, keepalive_timeout=60.0),
        oauth=OAuthSettings(),
        websocket=WebSocketSettings(ping_interval=0, echo_path=ECHO, max_message_bytes=4096,
                                    publish_rate="100000/s", message_rate="100000/s"),
        channels=CHANNELS,
        apps=dict(APPS),
        users=dict(USERS),
    )
