"""The soak's publisher: one connection, one publish in flight, ``rate``
publishes per second round-robin over the channels, on a thread with a
blocking socket.  A publish counts once its ``ack`` (with the message's
``seq``) is back, so ``published`` times a channel's subscribers is
exactly what they must receive."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

import wire

ACK_TIMEOUT = 30.0  # an ack slower than this is an error (the storm may hold the server up for seconds)


class Publisher(threading.Thread):
    def __init__(self, port: int, token: str, channels: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.channels = channels
        self.interval = 1.0 / rate
        self.published: Counter[str] = Counter()
        self.acked = 0
        self.errors = 0
        self.late = 0  # publishes that left more than a second behind schedule
        self.stopping = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(ACK_TIMEOUT)
        request, accept = wire.upgrade_request("127.0.0.1", port, "/ws", token)
        self.sock.sendall(request)
        self.buf = bytearray()
        while (head := wire.upgrade_response(self.buf, accept)) is None:
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit("soak: publisher: server closed during the handshake")
            self.buf += data
        if head[0] != 101:
            raise SystemExit(f"soak: publisher: upgrade refused with HTTP {head[0]}")
        del self.buf[:head[1]]

    def run(self) -> None:
        next_at = time.monotonic()
        mid = 0
        try:
            while not self.stopping.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stopping.wait(delay)
                    continue
                if delay < -1.0:  # the server was busy (the storm): do not burst to catch up
                    self.late += 1
                    next_at = time.monotonic()
                next_at += self.interval
                mid += 1
                channel = self.channels[mid % len(self.channels)]
                self.sock.sendall(wire.text({"type": "publish", "channel": channel,
                                             "data": {"n": mid, "pad": "x" * 64}, "id": mid}))
                if self._wait_ack(mid):
                    self.published[channel] += 1
                    self.acked += 1
                else:
                    self.errors += 1
        except OSError:
            if not self.stopping.is_set():
                self.errors += 1
        finally:
            self.sock.close()

    def _wait_ack(self, mid: int) -> bool:
        while True:
            for opcode, payload in wire.server_frames(self.buf):
                if opcode == wire.PING:
                    self.sock.sendall(wire.client_frame(wire.PONG, payload))
                elif opcode == wire.CLOSE:
                    raise OSError(f"publisher closed by the server: {payload[:2].hex()}")
                elif opcode == wire.TEXT:
                    msg = json.loads(payload)
                    if msg.get("id") == mid:
                        return msg.get("type") == "ack"
            data = self.sock.recv(65536)
            if not data:
                raise OSError("publisher: server closed")
            self.buf += data

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(ACK_TIMEOUT + 5)
