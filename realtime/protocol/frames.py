"""Server-to-client RFC 6455 frames, built once and sent to many.

Why not ``wsproto.Connection.send()``?  It frames per call and per
connection.  A server frame is never masked (RFC 6455 §5.1: "A server MUST
NOT mask any frames that it sends to the client"), and without
permessage-deflate the bytes depend only on the payload, so one prepared
frame serves every subscriber of a channel (DESIGN.md §4).  The session's
keep-alive ping, its pongs and its close frame (through
:mod:`realtime.protocol.ws_reader`, which tracks the closing handshake) go
through these helpers too.

Every frame here is final (FIN set), unfragmented and carries no RSV bits.
What the client sends us is parsed by :mod:`realtime.protocol.ws_reader`.

RFC 6455 §5.2, the payload length: "7 bits, 7+16 bits, or 7+64 bits ...
If 0-125, that is the payload length.  If 126, the following 2 bytes
interpreted as a 16-bit unsigned integer are the payload length.  If 127,
the following 8 bytes interpreted as a 64-bit unsigned integer (the most
significant bit MUST be 0) are the payload length."
"""

from __future__ import annotations

import struct

__all__ = [
    "OP_CONTINUATION",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "MAX_CONTROL_PAYLOAD",
    "encode_frame",
    "encode_text_frame",
    "encode_binary_frame",
    "encode_ping_frame",
    "encode_pong_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_FIN = 0x80

# RFC 6455 §5.5: "All control frames MUST have a payload length of 125
# bytes or less".
MAX_CONTROL_PAYLOAD = 125

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def _header(opcode: int, length: int) -> bytes:
    """The 2, 4 or 10 byte header of an unmasked final frame."""
    first = _FIN | opcode
    if length < 126:
        return _SHORT.pack(first, length)
    if length < 0x10000:
        return _MEDIUM.pack(first, 126, length)
    if length >= 1 << 63:  # "the most significant bit MUST be 0"
        raise ValueError("frame payload too large")
    return _LONG.pack(first, 127, length)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame of any opcode.

    Args:
        opcode: one of the ``OP_*`` constants.
        payload: the application data, already encoded.

    Raises:
        ValueError: a control frame (close, ping, pong) over 125 bytes, an
            opcode RFC 6455 does not define.  These are our own mistakes
            (h11's ``LocalProtocolError``), never the peer's.
    """
    if opcode >= 0x8:
        if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
            raise ValueError(f"reserved control opcode {opcode:#x}")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError("control frame payload over 125 bytes")
    elif opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
        raise ValueError(f"reserved data opcode {opcode:#x}")
    return _header(opcode, len(payload)) + payload


def encode_text_frame(payload: bytes) -> bytes:
    """A text frame around ``payload``, which must already be UTF-8.

    The hot path of every publish: one header and one concatenation, no
    validation (the payload comes from our own JSON encoder).
    """
    n = len(payload)
    if n < 126:
        return bytes((_FIN | OP_TEXT, n)) + payload
    return _header(OP_TEXT, n) + payload


def encode_binary_frame(payload: bytes) -> bytes:
    """A binary frame around ``payload``."""
    return _header(OP_BINARY, len(payload)) + payload


def encode_ping_frame(payload: bytes = b"") -> bytes:
    """A ping; the peer must answer with a pong carrying the same payload.

    Raises:
        ValueError: payload over 125 bytes.
    """
    return encode_frame(OP_PING, payload)


def encode_pong_frame(payload: bytes = b"") -> bytes:
    """A pong; RFC 6455 §5.5.3: it "MUST have identical 'Application data'
    as found in the message body of the Ping frame being replied to".

    Raises:
        ValueError: payload over 125 bytes.
    """
    return encode_frame(OP_PONG, payload)
