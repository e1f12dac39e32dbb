"""Server-Sent Events on the wire (SPEC §13, WHATWG HTML §9.2), without I/O.

The SSE stream carries the same server messages as the WebSocket
(:mod:`realtime.protocol.replies`); this module only frames them
differently.  Each event is ``event: NAME``, one ``data:`` line (our JSON
never holds a raw newline: :func:`realtime.protocol.replies.encode_json`
escapes them) and, for a ``message``, an ``id:`` line, then a blank line.

Encoded once per transport.  The hub fans out one prepared WebSocket frame
(:mod:`realtime.protocol.frames`); an SSE stream turns it into its SSE form
with :func:`from_frame`, which remembers the last frame it converted: the
fan-out loop offers the *same* bytes object to every subscriber of a
channel in a row, so the JSON payload is copied into an SSE chunk once per
message per process, and every SSE subscriber writes that one chunk.

Why the ``id:`` line is not in the shared chunk: SPEC §13 wants an event
id that covers *every* channel of the stream (``EventSource`` keeps only
the last one it saw), and streams subscribe to different channel sets.
So a stream writes the shared chunk followed by its own short id line
(:func:`id_line`); the message itself is never re-encoded.

Positions (the ``id``): ``CHANNEL=SEQ`` pairs joined by ``,``, each channel
name percent-encoded (``,``, ``=`` and ``%`` cannot clash; ``:`` stays
readable), e.g. ``chat%2Clobby=17,user:alice=3``.  Self-describing, so a
client may come back with another channel list: channels the id does not
name start live, names it has that the stream does not ask for are
ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote, unquote

import attrs

__all__ = [
    "CONTENT_TYPE",
    "PING",
    "Positions",
    "SseEvent",
    "decode_positions",
    "encode_event",
    "encode_positions",
    "frame_payload",
    "from_frame",
    "id_line",
    "PositionError",
]

CONTENT_TYPE = "text/event-stream"
#: A comment line: ignored by every SSE parser, keeps proxies from timing out.
PING = b": ping\n\n"
#: How long a Last-Event-ID may be: channels times a short name each.
MAX_ID_LENGTH = 8192

_MESSAGE_PREFIX = b'{"type":"message","channel":'


class PositionError(ValueError):
    """A ``Last-Event-ID`` that is not a position list of ours."""


@attrs.frozen
class SseEvent:
    """One server message in its SSE form.

    Attributes:
        chunk: ``event: NAME\\ndata: JSON\\n``, without the id line and the
            blank line that ends the event (see :func:`id_line`).
        channel: the channel of a ``message``; ``None`` for other events.
        seq: the ``message``'s ``seq`` (0 for other events).
        whole: for a ``message``, the whole event as a stream on that one
            channel sends it (its id names only that channel), so the most
            common stream writes one shared bytes object, as a WebSocket
            subscriber does.
    """

    chunk: bytes
    channel: str | None = None
    seq: int = 0
    whole: bytes = b""


def encode_event(name: str, data: bytes, event_id: str | None = None) -> bytes:
    """One whole event: ``event``, one ``data`` line, optional ``id``."""
    out = b"event: " + name.encode("ascii") + b"\ndata: " + data + b"\n"
    if event_id is not None:
        out += b"id: " + event_id.encode("ascii") + b"\n"
    return out + b"\n"


def frame_payload(frame: bytes) -> bytes:
    """The payload of one unmasked, final server frame (RFC 6455 §5.2)."""
    n = frame[1] & 0x7F
    if n < 126:
        return frame[2:]
    return frame[4:] if n == 126 else frame[10:]


# (frame, its event): one tuple, read and replaced whole, so servers running
# in several threads of one process never pair a frame with another's event.
_last: tuple[bytes, SseEvent] | None = None


def from_frame(frame: bytes) -> SseEvent:
    """The SSE form of one prepared WebSocket text frame; converted once
    per frame object (see the module), so a fan-out shares the chunk."""
    global _last
    last = _last
    if last is not None and last[0] is frame:
        return last[1]
    event = _convert(frame_payload(frame))
    _last = (frame, event)
    return event


def _convert(payload: bytes) -> SseEvent:
    if payload.startswith(_MESSAGE_PREFIX):
        # message_from_json's fixed layout: read channel and seq without
        # decoding ``data`` (which may be large).
        decoder = json.JSONDecoder()
        text = payload[: 4096 + len(_MESSAGE_PREFIX)].decode("utf-8", "replace")
        try:
            channel, end = decoder.raw_decode(text, len(_MESSAGE_PREFIX))
        except ValueError:
            channel, end = None, 0
        rest = text[end:]
        if isinstance(channel, str) and rest.startswith(',"seq":'):
            digits = rest[7:].split(",", 1)[0]
            if digits.isdigit():
                chunk = b"event: message\ndata: " + payload + b"\n"
                whole = chunk + b"id: " + quote(channel, safe=":@").encode("ascii") + b"=" + digits.encode() + b"\n\n"
                return SseEvent(chunk, channel, int(digits), whole)
    try:
        name = json.loads(payload).get("type", "message")
    except (ValueError, AttributeError):
        name = "message"
    if not isinstance(name, str) or not name.isascii() or not name.isidentifier():
        name = "message"
    return SseEvent(b"event: " + name.encode("ascii") + b"\ndata: " + payload + b"\n")


def encode_positions(positions: Mapping[str, int]) -> str:
    """The event id for these channel positions (see the module)."""
    return ",".join(f"{quote(channel, safe=':@')}={seq}" for channel, seq in positions.items())


def id_line(positions: Mapping[str, int]) -> bytes:
    """``id: POSITIONS`` and the blank line that ends an event."""
    return b"id: " + encode_positions(positions).encode("ascii") + b"\n\n"


class Positions:
    """A stream's channel -> seq, with each channel's encoded name kept, so
    the id line written after every shared chunk costs a join, not a
    percent-encoding per channel per message."""

    __slots__ = ("seqs", "_names")

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self._names: dict[str, bytes] = {}

    def set(self, channel: str, seq: int) -> None:
        if channel not in self._names:
            self._names[channel] = quote(channel, safe=":@").encode("ascii") + b"="
        self.seqs[channel] = seq

    def drop(self, channel: str) -> None:
        self.seqs.pop(channel, None)
        self._names.pop(channel, None)

    def line(self) -> bytes:
        """``id: POSITIONS`` and the blank line that ends an event."""
        names = self._names
        return b"id: " + b",".join(names[c] + b"%d" % seq for c, seq in self.seqs.items()) + b"\n\n"

    def text(self) -> str:
        return encode_positions(self.seqs)


def decode_positions(text: str) -> dict[str, int]:
    """Read a ``Last-Event-ID``.  An empty one means no position.

    Raises:
        PositionError: not a list of ``CHANNEL=SEQ`` with whole ``SEQ >= 0``.
    """
    if len(text) > MAX_ID_LENGTH:
        raise PositionError("Last-Event-ID is too long")
    positions: dict[str, int] = {}
    if not text.strip():
        return positions
    for part in text.strip().split(","):
        channel, sep, seq = part.rpartition("=")
        if not sep or not channel or not seq.isascii() or not seq.isdigit() or len(seq) > 19:
            raise PositionError("Last-Event-ID is not a list of CHANNEL=SEQ")
        positions[unquote(channel)] = int(seq)
    return positions
