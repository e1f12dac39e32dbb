"""Server-to-client RFC 6455 frames, built once and sent to many.

Why not ``wsproto.Connection.send()``?  It frames per call and per
connection.  A server frame is never masked (RFC 6455 §5.1: "A server MUST
NOT mask any frames that it sends to the client"), and without
permessage-deflate the bytes depend only on the payload, so one prepared
frame serves every subscriber of a channel (DESIGN.md §4).  Only the
session's own replies (pong, close) go through these helpers one at a time.

Every frame here is final (FIN set), unfragmented and carries no RSV bits.
wsproto still parses what the client sends us.

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
    "MAX_CLOSE_REASON",
    "encode_frame",
    "encode_text_frame",
    "encode_binary_frame",
    "encode_close_frame",
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
# bytes or less".  A close payload spends two of them on the status code.
MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

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


def _sendable_close_code(code: int) -> bool:
    # RFC 6455 §7.4.1: 1005, 1006 and 1015 "MUST NOT be set as a status code
    # in a Close control frame by an endpoint"; 1004 is reserved; 0-999 are
    # not used; 1016-2999 belong to future RFCs (1012-1014 are registered
    # with IANA); 3000-4999 are for libraries and applications.
    if 1000 <= code <= 1014:
        return code not in (1004, 1005, 1006)
    return 3000 <= code <= 4999


def encode_close_frame(code: int | None, reason: str = "") -> bytes:
    """A close frame with ``code`` and a ``reason`` cut to fit.

    RFC 6455 §5.5.1: the body is a 2-byte status code followed by a UTF-8
    reason, all within 125 bytes.  A long reason is cut at a character
    boundary so the peer never sees invalid UTF-8 (which it would answer
    with 1007).  ``code=None`` sends an empty close body (no status).

    Raises:
        ValueError: ``code`` may not be sent on the wire (e.g. 1005, 1006).
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a status code")
        return bytes((_FIN | OP_CLOSE, 0))
    if not _sendable_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    raw = reason.encode("utf-8", "replace")
    if len(raw) > MAX_CLOSE_REASON:
        # Dropping an incomplete trailing sequence is all "ignore" does to
        # bytes that were valid UTF-8 before the cut.
        raw = raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
    payload = code.to_bytes(2, "big") + raw
    return bytes((_FIN | OP_CLOSE, len(payload))) + payload


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
