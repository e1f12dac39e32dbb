"""Counting what the server hands the kernel for one connection: a stand-in
for a live transport's socket that records every ``send``, so a test can
assert how many writes a delivery cost (not how long it took)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from realtime.net.transport import Transport

TLS_APPLICATION_DATA = 23


class CountingSocket:
    """Wraps a socket; every ``send`` is kept as the bytes the kernel took."""

    def __init__(self, sock: socket.socket) -> None:
        self.wrapped = sock
        self.sends: list[bytes] = []

    def send(self, data: bytes | memoryview) -> int:
        sent = self.wrapped.send(data)
        self.sends.append(bytes(data[:sent]))
        return sent

    def __getattr__(self, name: str) -> Any:  # recv, fileno, shutdown, close ...
        return getattr(self.wrapped, name)


def count_sends(transport: Transport) -> CountingSocket:
    """Start counting ``transport``'s sends (trio waits on the same fd)."""
    counting = CountingSocket(transport.sock)
    transport.sock = counting  # type: ignore[assignment]
    return counting


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """``(content type, length)`` of each whole TLS record in ``data``."""
    records = []
    at = 0
    while at + 5 <= len(data):
        kind, _version, length = struct.unpack_from("!BHH", data, at)
        records.append((kind, length))
        at += 5 + length
    assert at == len(data), "a send ended inside a TLS record"
    return records


def ws_text_payloads(data: bytes) -> list[bytes]:
    """The payloads of the unmasked server text frames in ``data``."""
    payloads = []
    at = 0
    while at < len(data):
        length = data[at + 1] & 0x7F
        at += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, at)
            at += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, at)
            at += 8
        payloads.append(data[at:at + length])
        at += length
    return payloads
