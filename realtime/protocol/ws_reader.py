"""Client frames in, whole messages out: RFC 6455 §5 for the server side.

Why not a ``wsproto.Connection`` per socket?  It keeps a parser, a frame
decoder, a message decoder, an event deque and a generator alive for every
connection: ~1.6 KB of an idle socket's ~10 KB.  :class:`WsReader` keeps
five slots and no buffer while nothing is half-received, and parses the
common case (a whole small message in one read) in a few steps.  What it
checks, in the order a frame arrives:

- the header: RSV bits clear (no extension is negotiated), a defined
  opcode, masked (§5.1: "a client MUST mask all frames"), the shortest
  length encoding and the 64-bit length's most significant bit clear
  (§5.2); control frames final and ≤ 125 bytes (§5.5);
- fragmentation (§5.4): a continuation only inside a message, a new
  message only after the last one's final frame; control frames may come
  between fragments;
- ``max_message_bytes``, before the payload is read: a message costs its
  payload bytes plus :data:`FRAME_COST` per continuation frame, so a run of
  empty fragments cannot grow it without bound;
- text is UTF-8, checked as the bytes arrive, across fragments, so an
  invalid sequence fails at once (Autobahn 6.*), not at the message's end;
- the close frame (§5.5.1, §7.4): no 1-byte body, a code a peer may send,
  a UTF-8 reason.

A broken rule raises a :class:`~realtime.protocol.close.CloseError` that
names the close code (1002, 1007, 1009); the reader then reads nothing
more, as after the peer's close frame.  It also keeps the close
handshake's state (:class:`ConnectionState`); outgoing frames come from
:mod:`realtime.protocol.frames`.
"""

from __future__ import annotations

import codecs
import enum

import attrs

from realtime.protocol import frames
from realtime.protocol.close import Close, CloseCode, CloseError, ProtocolError

__all__ = [
    "FRAME_COST",
    "ConnectionState",
    "Message",
    "Ping",
    "Pong",
    "CloseReceived",
    "FrameError",
    "InvalidUtf8",
    "MessageTooBig",
    "WsReader",
    "unmask",
]

FRAME_COST = 64
"""Bytes each continuation frame costs against ``max_message_bytes`` on
top of its payload, so a run of empty or tiny fragments is a message too
big (1009) after ``max_message_bytes / 64`` frames instead of growing
without bound.  A message in one frame is limited by its payload alone.
Autobahn's smallest fragments (64 bytes) cost twice their size."""

#: RFC 6455 §7.4: codes 1000-2999 a peer may send are the registered ones
#: (1004 is reserved; 1005, 1006 and 1015 are never sent on the wire);
#: 3000-4999 are for libraries and applications.  1012-1014 are in the
#: IANA registry (wsproto accepted 1012 and 1013 too).
_REGISTERED_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
#: Codes that only report a local condition; a close frame never carries one.
_LOCAL_ONLY = frozenset({CloseCode.NO_STATUS, CloseCode.ABORT, 1015})
_MAX_CLOSE_REASON = frames.MAX_CONTROL_PAYLOAD - 2  # bytes after the code
# Below this size XOR through one big integer is fastest; above it,
# bytes.translate on every fourth byte is (measured: 0.6 vs 2 µs at 30
# bytes, 8 vs 4 ms at 1 MiB).
_SMALL = 512
_XOR_TABLE = [bytes(a ^ b for a in range(256)) for b in range(256)]


class ConnectionState(enum.Enum):
    """The close handshake (RFC 6455 §7), as wsproto's ``ConnectionState``."""

    OPEN = "open"
    REMOTE_CLOSING = "remote closing"  # the peer's close frame came; ours not sent yet
    LOCAL_CLOSING = "local closing"  # ours is sent; the peer's not seen yet
    CLOSED = "closed"  # both seen


# -- events ------------------------------------------------------------------


@attrs.frozen
class Message:
    """A whole client message: ``str`` for a text message, ``bytes`` for binary."""

    data: str | bytes


@attrs.frozen
class Ping:
    payload: bytes


@attrs.frozen
class Pong:
    payload: bytes


@attrs.frozen
class CloseReceived:
    """The peer's close frame; ``code`` is 1005 (no status) when it had none."""

    code: int
    reason: str


# -- what the peer can get wrong ------------------------------------------------


class FrameError(ProtocolError):
    """A frame breaks RFC 6455 (1002).  The close frame's reason says which
    rule, so a client's developer sees what to fix."""

    def close(self) -> Close:
        return Close(self.close_code, str(self) or self.close_reason)


class InvalidUtf8(CloseError, code=CloseCode.INVALID_DATA, reason="invalid UTF-8"):
    """A text message or a close reason that is not UTF-8 (1007)."""


class MessageTooBig(CloseError, code=CloseCode.TOO_BIG, reason="message too big"):
    """A message over ``[websocket] max_message_bytes`` (1009)."""


# -- the parser ----------------------------------------------------------------


def unmask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 §5.3)."""
    n = len(data)
    if n <= _SMALL:
        if not n:
            return b""
        repeated = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLE[key[i]])
    return bytes(out)


class _Partial:
    """A message whose frames (or whose one frame) did not all arrive in one
    read: what has come so far and where the current frame stands."""

    __slots__ = ("decoder", "pieces", "cost", "remaining", "key", "fin")

    def __init__(self, text: bool) -> None:
        # Text is validated as it comes, so invalid UTF-8 fails at once; the
        # payload is kept as bytes and decoded once when whole: a str per
        # read would let a peer trickling 2-byte reads hold ~40x the bytes.
        self.decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        self.pieces = bytearray()
        self.cost = 0  # payload bytes plus FRAME_COST per continuation frame
        self.remaining = 0  # payload bytes of the current frame still to come
        self.key = b""  # the masking key, turned to where the next byte falls
        self.fin = False  # the current frame is the message's last

    def add(self, masked: bytes) -> None:
        key = self.key
        data = unmask(masked, key)
        turn = len(masked) & 3
        if turn:
            self.key = key[turn:] + key[:turn]
        self.remaining -= len(masked)
        self.cost += len(masked)
        self.pieces += data
        if self.decoder is None:
            return
        try:
            self.decoder.decode(data, self.fin and not self.remaining)
        except UnicodeDecodeError as exc:
            raise InvalidUtf8(f"invalid UTF-8 in a text message: {exc.reason}") from None

    def whole(self) -> str | bytes:
        if self.decoder is None:
            return bytes(self.pieces)
        return self.pieces.decode("utf-8")  # validated piece by piece above


class WsReader:
    """Parses one connection's client frames (sans-I/O).

    Feed bytes with :meth:`receive_data`, then call :meth:`next_event` until
    it returns ``None`` (more bytes needed).  Thousands live at once, so
    an idle reader is five slots: no buffer, no half-received message.
    """

    __slots__ = ("state", "failed", "_buf", "_pos", "_partial")

    def __init__(self) -> None:
        self.state = ConnectionState.OPEN
        self.failed = False  # a rule was broken: nothing more is parsed
        self._buf: bytes | None = None  # received, not parsed yet (from _pos)
        self._pos = 0
        self._partial: _Partial | None = None

    @property
    def pending(self) -> bool:
        """Bytes are waiting to be parsed (more than a partial frame, maybe)."""
        return self._buf is not None

    @property
    def reading(self) -> bool:
        """The peer's frames still count: no close frame from it, no error."""
        return not self.failed and self.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the peer; ignored after its close frame or an error."""
        if not data or not self.reading:
            return
        if self._buf is None:
            self._buf, self._pos = data, 0
        else:
            self._buf, self._pos = self._buf[self._pos:] + data, 0

    def next_event(self, max_bytes: int) -> Message | Ping | Pong | CloseReceived | None:
        """The next whole message or control frame, or ``None`` when the
        bytes so far end mid-frame (or nothing is left).

        Args:
            max_bytes: ``[websocket] max_message_bytes`` now (a reload
                applies from the next frame).

        Raises:
            FrameError: 1002.  InvalidUtf8: 1007.  MessageTooBig: 1009.
                After any of them the reader reads nothing more.
        """
        if self._buf is None or not self.reading:
            return None
        try:
            return self._parse(self._buf, max_bytes)
        except CloseError:
            self.failed = True
            self._buf = self._partial = None
            raise

    def close_frame(self, code: int, reason: str) -> bytes:
        """Our close frame (code, reason cut to fit in whole characters), and
        the handshake moves on: OPEN → LOCAL_CLOSING, REMOTE_CLOSING → CLOSED."""
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.LOCAL_CLOSING
        elif self.state is ConnectionState.REMOTE_CLOSING:
            self.state = ConnectionState.CLOSED
        else:
            raise ValueError(f"close frame already sent ({self.state.value})")
        if code in _LOCAL_ONLY:
            code = CloseCode.NORMAL
        text = reason.encode("utf-8")
        if len(text) > _MAX_CLOSE_REASON:
            text = text[:_MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
        return frames.encode_frame(frames.OP_CLOSE, code.to_bytes(2, "big") + text)

    # -- parsing ------------------------------------------------------------------
    def _take(self, n: int) -> None:
        """``n`` bytes are parsed; forget the buffer once it is all used."""
        self._pos += n
        if self._pos >= len(self._buf):  # type: ignore[arg-type]
            self._buf, self._pos = None, 0

    def _parse(self, buf: bytes, max_bytes: int) -> Message | Ping | Pong | CloseReceived | None:
        while True:
            pos = self._pos
            available = len(buf) - pos
            partial = self._partial
            if partial is not None and partial.remaining:  # inside a data frame
                take = min(available, partial.remaining)
                if not take:
                    return None
                partial.add(buf[pos:pos + take])
                self._take(take)
                if partial.remaining or not partial.fin:
                    if self._buf is None:
                        return None
                    continue
                self._partial = None
                return Message(partial.whole())
            if available < 2:
                return None
            first, second = buf[pos], buf[pos + 1]
            opcode = first & 0x0F
            fin = first & 0x80
            length = second & 0x7F
            if first & 0x70:
                raise FrameError("reserved bits set")
            if opcode >= 0x8:
                if opcode > frames.OP_PONG:
                    raise FrameError(f"reserved opcode {opcode:#x}")
                if not fin:
                    raise FrameError("fragmented control frame")
                if length > frames.MAX_CONTROL_PAYLOAD:
                    raise FrameError("control frame over 125 bytes")
            elif opcode > frames.OP_BINARY:
                raise FrameError(f"reserved opcode {opcode:#x}")
            if not second & 0x80:
                raise FrameError("unmasked client frame")
            head = 6
            if length == 126:
                if available < 4:
                    return None
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 8
                if length < 126:
                    raise FrameError("payload length not in its shortest form")
            elif length == 127:
                if available < 10:
                    return None
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 14
                if length >> 63:
                    raise FrameError("payload length with its most significant bit set")
                if length < 0x10000:
                    raise FrameError("payload length not in its shortest form")
            if available < head:
                return None
            if opcode >= 0x8:  # control frames are taken whole (≤ 125 bytes)
                if available < head + length:
                    return None
                payload = unmask(buf[pos + head:pos + head + length], buf[pos + head - 4:pos + head])
                self._take(head + length)
                return self._control(opcode, payload)
            if opcode == frames.OP_CONTINUATION:
                if partial is None:
                    raise FrameError("continuation frame outside a fragmented message")
                if partial.cost + length + FRAME_COST > max_bytes:
                    raise MessageTooBig(f"message over {max_bytes} bytes")
                partial.cost += FRAME_COST
            else:
                if partial is not None:
                    raise FrameError("new message inside a fragmented message")
                if length > max_bytes:
                    raise MessageTooBig(f"message over {max_bytes} bytes")
                if fin and available >= head + length:  # a whole message in one frame, all here
                    payload = unmask(buf[pos + head:pos + head + length], buf[pos + head - 4:pos + head])
                    self._take(head + length)
                    if opcode == frames.OP_BINARY:
                        return Message(payload)
                    try:
                        return Message(payload.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise InvalidUtf8(f"invalid UTF-8 in a text message: {exc.reason}") from None
                partial = self._partial = _Partial(opcode == frames.OP_TEXT)
            partial.key = buf[pos + head - 4:pos + head]
            partial.remaining = length
            partial.fin = bool(fin)
            self._take(head)
            if not length:  # an empty frame: nothing to wait for
                partial.add(b"")
                if fin:
                    self._partial = None
                    return Message(partial.whole())
            if self._buf is None:
                return None
            buf = self._buf

    def _control(self, opcode: int, payload: bytes) -> Ping | Pong | CloseReceived:
        if opcode == frames.OP_PING:
            return Ping(payload)
        if opcode == frames.OP_PONG:
            return Pong(payload)
        event = _parse_close(payload)
        # Nothing after the peer's close frame counts (RFC 6455 §5.5.1).
        self._buf = self._partial = None
        self.state = (ConnectionState.CLOSED if self.state is ConnectionState.LOCAL_CLOSING
                      else ConnectionState.REMOTE_CLOSING)
        return event


def _parse_close(payload: bytes) -> CloseReceived:
    if not payload:  # RFC 6455 §7.1.5: no status code is "considered to be 1005"
        return CloseReceived(CloseCode.NO_STATUS, "")
    if len(payload) == 1:
        raise FrameError("close frame with a 1-byte body")
    code = int.from_bytes(payload[:2], "big")
    if not (code in _REGISTERED_CODES or 3000 <= code <= 4999):
        raise FrameError(f"close code {code} not allowed")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUtf8("invalid UTF-8 in a close reason") from None
    return CloseReceived(code, reason)
