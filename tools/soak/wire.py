"""The soak client's WebSocket wire: the RFC 6455 upgrade written by hand
and a minimal frame codec, so 100,000 client sockets fit on the core the
server does not use (a wsproto Connection per socket costs ~1.6 KB, and
its event machinery runs for every message).

Server frames are unmasked and never fragmented by realtime; client
frames are masked (RFC 6455 §5.3).  Nothing here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade_request(host: str, port: int, path: str, token: str) -> tuple[bytes, bytes]:
    """The upgrade request and the ``Sec-WebSocket-Accept`` it must get back."""
    key = base64.b64encode(os.urandom(16))
    request = (b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n"
               % (path.encode(), host.encode(), port, key, token.encode()))
    return request, base64.b64encode(hashlib.sha1(key + _GUID).digest())


def upgrade_response(buf: bytearray, accept: bytes) -> tuple[int, int] | None:
    """``(status, head length)`` once the response head is in ``buf``, else
    None.  A 101 with the wrong accept value reads as status 0."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).split(b"\r\n")
    try:
        status = int(head[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, end + 4
    if status == 101:
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head[1:])}
        if headers.get(b"sec-websocket-accept") != accept:
            status = 0
    return status, end + 4


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if not n:
        return head + mask
    key = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def text(obj: dict) -> bytes:
    return client_frame(TEXT, json.dumps(obj, separators=(",", ":")).encode())


def close_frame(code: int) -> bytes:
    return client_frame(CLOSE, code.to_bytes(2, "big"))


def server_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take the whole frames at the front of ``buf`` (consumed in place):
    ``(opcode, payload)`` each.  A masked, fragmented or reserved-bit frame
    from the server raises ValueError."""
    out = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        if b0 & 0x70 or not b0 & 0x80 or b1 & 0x80:
            raise ValueError(f"unexpected server frame header {b0:#x} {b1:#x}")
        n, at = b1 & 0x7F, pos + 2
        if n == 126:
            if size - at < 2:
                break
            n, at = int.from_bytes(buf[at:at + 2], "big"), at + 2
        elif n == 127:
            if size - at < 8:
                break
            n, at = int.from_bytes(buf[at:at + 8], "big"), at + 8
        if size - at < n:
            break
        out.append((b0 & 0x0F, bytes(buf[at:at + n])))
        pos = at + n
    if pos:
        del buf[:pos]
    return out
