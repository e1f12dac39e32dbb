"""The client-frame parser (RFC 6455 §5, server side), without a socket.

Valid streams are checked as a round trip: random messages, fragmented at
random, with control frames between fragments, masked with random keys,
cut into random reads, must come out as the same events.  Every broken
rule must end in the close code it calls for (1002, 1007, 1009), after
the events before it and with nothing after it.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol.close import CloseCode, CloseError
from realtime.protocol.ws_reader import (
    FRAME_COST,
    CloseReceived,
    ConnectionState,
    Message,
    Ping,
    Pong,
    WsReader,
    unmask,
)
from tests.helpers.fuzz import mask_frame

BIG = 1 << 30
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def feed(data: bytes, cuts: list[int] = (), max_bytes: int = BIG) -> tuple[list[object], CloseError | None, WsReader]:
    """Feed ``data`` in pieces cut at ``cuts``, collecting events after each."""
    reader = WsReader()
    events: list[object] = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    try:
        for start, end in zip(bounds, bounds[1:]):
            reader.receive_data(data[start:end])
            while (event := reader.next_event(max_bytes)) is not None:
                events.append(event)
    except CloseError as exc:
        return events, exc, reader
    return events, None, reader


def code_of(error: CloseError | None) -> int | None:
    return None if error is None else error.close().code


# -- round trips -----------------------------------------------------------------

keys = st.binary(min_size=4, max_size=4)


@st.composite
def message_frames(draw: st.DrawFn) -> tuple[bytes, list[object]]:
    """One message (fragmented at random, pings and pongs between its
    frames) or one control frame; its bytes and the events it must give."""
    kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
    if kind in ("ping", "pong"):
        payload = draw(st.binary(max_size=125))
        opcode = OP_PING if kind == "ping" else OP_PONG
        return mask_frame(opcode, payload, mask=draw(keys)), [(Ping if kind == "ping" else Pong)(payload)]
    if kind == "text":
        value: str | bytes = draw(st.text(max_size=300))
        data = value.encode()
    elif draw(st.integers(0, 9)) == 0:  # now and then one past the 16-bit length
        size = draw(st.integers(65_536, 70_000))
        value = data = (bytes(range(256)) * (size // 256 + 1))[:size]
    else:
        value = data = draw(st.binary(max_size=300))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    out = b""
    controls: list[object] = []
    for i, piece in enumerate(pieces):
        opcode = (OP_TEXT if kind == "text" else OP_BINARY) if i == 0 else OP_CONT
        # A multi-byte character may be split between frames: still valid.
        out += mask_frame(opcode, piece, fin=i == len(pieces) - 1, mask=draw(keys))
        if i < len(pieces) - 1 and draw(st.integers(0, 3)) == 0:
            ping = draw(st.binary(max_size=20))
            out += mask_frame(OP_PING, ping, mask=draw(keys))
            controls.append(Ping(ping))
    return out, [*controls, Message(value)]


@given(st.lists(message_frames(), max_size=6), st.lists(st.integers(0, 200_000), max_size=8), st.booleans())
def test_random_valid_streams_come_out_whole_wherever_the_reads_cut_them(
    parts: list[tuple[bytes, list[object]]], cuts: list[int], close: bool,
) -> None:
    data = b"".join(frame for frame, _ in parts)
    expected = [event for _, events in parts for event in events]
    if close:
        data += mask_frame(OP_CLOSE, struct.pack("!H", 1001) + "bye ✓".encode())
        expected.append(CloseReceived(1001, "bye ✓"))
    events, error, reader = feed(data, cuts)
    assert error is None
    assert events == expected
    assert not reader.pending  # nothing left over, no buffer kept
    assert reader.state is (ConnectionState.REMOTE_CLOSING if close else ConnectionState.OPEN)


def test_an_idle_reader_keeps_no_buffer() -> None:
    reader = WsReader()
    reader.receive_data(mask_frame(OP_TEXT, b"hello"))
    assert reader.next_event(BIG) == Message("hello")
    assert not reader.pending
    assert reader._buf is None and reader._partial is None  # what an idle socket costs
    assert not hasattr(reader, "__dict__")


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 511, 512, 513, 4096, 70_001])
def test_unmask_is_xor_with_the_repeated_key(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    key = b"\x9a\x01\xff\x40"
    assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


# -- broken rules --------------------------------------------------------------

PROTOCOL_ERRORS = {
    "rsv1": mask_frame(OP_TEXT, b"x", rsv=4),
    "rsv2": mask_frame(OP_TEXT, b"x", rsv=2),
    "rsv3": mask_frame(OP_PING, b"", rsv=1),
    "reserved data opcode": mask_frame(0x3, b"x"),
    "reserved control opcode": mask_frame(0xB, b""),
    "unmasked": mask_frame(OP_TEXT, b"x", masked=False),
    "fragmented ping": mask_frame(OP_PING, b"x", fin=False),
    "ping over 125 bytes": mask_frame(OP_PING, b"x" * 126),
    "16-bit length for 125 bytes": mask_frame(OP_BINARY, b"x" * 125, wide=1),
    "64-bit length for 65535 bytes": mask_frame(OP_BINARY, b"x" * 65535, wide=2),
    "64-bit length with its top bit": b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"abcd",
    "continuation first": mask_frame(OP_CONT, b"x"),
    "text inside a fragmented message": mask_frame(OP_TEXT, b"a", fin=False) + mask_frame(OP_TEXT, b"b"),
    "binary inside a fragmented message": mask_frame(OP_BINARY, b"a", fin=False) + mask_frame(OP_BINARY, b"b"),
    "close with a 1-byte body": mask_frame(OP_CLOSE, b"\x03"),
    **{f"close code {code}": mask_frame(OP_CLOSE, struct.pack("!H", code))
       for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)},
}
INVALID_UTF8 = {
    "lone continuation byte": mask_frame(OP_TEXT, b"\x80"),
    "overlong": mask_frame(OP_TEXT, b"\xc0\xaf"),
    "surrogate": mask_frame(OP_TEXT, b"\xed\xa0\x80"),
    "past U+10FFFF": mask_frame(OP_TEXT, b"\xf4\x90\x80\x80"),
    "truncated at the message's end": mask_frame(OP_TEXT, "é".encode()[:1]),
    "across fragments": mask_frame(OP_TEXT, "κ".encode()[:1], fin=False) + mask_frame(OP_CONT, b"("),
    "truncated across fragments": mask_frame(OP_TEXT, b"ok", fin=False) + mask_frame(OP_CONT, "€".encode()[:2]),
    "close reason": mask_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"),
}


@pytest.mark.parametrize("name", sorted(PROTOCOL_ERRORS))
def test_protocol_errors_close_1002(name: str) -> None:
    events, error, _ = feed(PROTOCOL_ERRORS[name])
    assert events == [] and code_of(error) == CloseCode.PROTOCOL_ERROR
    assert error.close().reason  # the rule broken, for the peer's developer


@pytest.mark.parametrize("name", sorted(INVALID_UTF8))
def test_invalid_utf8_closes_1007(name: str) -> None:
    events, error, _ = feed(INVALID_UTF8[name])
    assert events == [] and code_of(error) == CloseCode.INVALID_DATA


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
                                  4000, 4999])
def test_close_codes_a_peer_may_send(code: int) -> None:
    events, error, reader = feed(mask_frame(OP_CLOSE, struct.pack("!H", code) + b"why"))
    assert error is None and events == [CloseReceived(code, "why")]
    assert reader.state is ConnectionState.REMOTE_CLOSING


def test_a_close_without_a_body_is_1005() -> None:
    assert feed(mask_frame(OP_CLOSE, b""))[0] == [CloseReceived(CloseCode.NO_STATUS, "")]


def test_invalid_utf8_fails_before_the_message_ends() -> None:
    """Autobahn 6.4.*: the bad sequence fails at once, with the message's
    final frame (and even the rest of this frame) still to come."""
    frame = mask_frame(OP_TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"x" * 100, fin=False)
    events, error, _ = feed(frame[:30])
    assert code_of(error) == CloseCode.INVALID_DATA


def test_a_message_too_big_fails_at_its_header() -> None:
    header = mask_frame(OP_BINARY, b"x" * 70_000)[:14]  # the payload never comes
    assert code_of(feed(header, max_bytes=65536)[1]) == CloseCode.TOO_BIG
    assert feed(mask_frame(OP_TEXT, b"x" * 100), max_bytes=100)[1] is None  # the limit itself is fine


def test_each_continuation_frame_costs_frame_cost() -> None:
    limit = 10 * FRAME_COST
    first = mask_frame(OP_BINARY, b"ab", fin=False)
    empty = mask_frame(OP_CONT, b"", fin=False)
    fits = (limit - 2) // FRAME_COST
    events, error, _ = feed(first + empty * fits + mask_frame(OP_CONT, b"", fin=True), max_bytes=limit)
    assert code_of(error) == CloseCode.TOO_BIG and events == []  # the one more frame is over
    events, error, _ = feed(first + empty * (fits - 1) + mask_frame(OP_CONT, b"", fin=True), max_bytes=limit)
    assert error is None and events == [Message(b"ab")]


def test_a_message_in_one_frame_is_limited_by_its_payload_alone() -> None:
    assert feed(mask_frame(OP_TEXT, "é".encode() * 50), max_bytes=100)[0] == [Message("é" * 50)]
    assert code_of(feed(mask_frame(OP_TEXT, "é".encode() * 51), max_bytes=101)[1]) == CloseCode.TOO_BIG


BROKEN = {**PROTOCOL_ERRORS, **INVALID_UTF8}
EXPECTED_CODE = {**{name: CloseCode.PROTOCOL_ERROR for name in PROTOCOL_ERRORS},
                 **{name: CloseCode.INVALID_DATA for name in INVALID_UTF8}}


@given(st.lists(message_frames(), max_size=4), st.sampled_from(sorted(BROKEN)), st.lists(message_frames(), max_size=2),
       st.lists(st.integers(0, 100_000), max_size=6))
def test_a_broken_rule_anywhere_ends_the_stream_with_its_code(
    before: list[tuple[bytes, list[object]]], name: str, after: list[tuple[bytes, list[object]]], cuts: list[int],
) -> None:
    data = b"".join(f for f, _ in before) + BROKEN[name] + b"".join(f for f, _ in after)
    events, error, reader = feed(data, cuts)
    assert events == [e for _, evs in before for e in evs]
    assert code_of(error) == EXPECTED_CODE[name]
    # Nothing more is read, as after a close frame.
    assert reader.failed and not reader.reading and not reader.pending
    reader.receive_data(mask_frame(OP_TEXT, b"more"))
    assert reader.next_event(BIG) is None


def test_nothing_after_the_peers_close_frame_counts() -> None:
    data = mask_frame(OP_CLOSE, struct.pack("!H", 1000)) + mask_frame(OP_TEXT, b"late") + b"\xff garbage"
    events, error, reader = feed(data)
    assert error is None and events == [CloseReceived(1000, "")]
    assert not reader.pending


# -- the close handshake -----------------------------------------------------------


def test_close_handshake_we_start() -> None:
    reader = WsReader()
    frame = reader.close_frame(4001, "token expired")
    assert frame == b"\x88\x0f" + struct.pack("!H", 4001) + b"token expired"
    assert reader.state is ConnectionState.LOCAL_CLOSING
    reader.receive_data(mask_frame(OP_PING, b"p") + mask_frame(OP_CLOSE, struct.pack("!H", 4001)))
    assert reader.next_event(BIG) == Ping(b"p")  # still read while closing
    assert reader.next_event(BIG) == CloseReceived(4001, "")
    assert reader.state is ConnectionState.CLOSED
    with pytest.raises(ValueError):
        reader.close_frame(1000, "")


def test_close_handshake_the_peer_starts() -> None:
    reader = WsReader()
    reader.receive_data(mask_frame(OP_CLOSE, struct.pack("!H", 1000)))
    assert reader.next_event(BIG) == CloseReceived(1000, "")
    assert reader.state is ConnectionState.REMOTE_CLOSING
    assert reader.close_frame(1000, "")[:4] == b"\x88\x02\x03\xe8"
    assert reader.state is ConnectionState.CLOSED


def test_our_close_reason_is_cut_to_whole_characters_and_local_codes_are_never_sent() -> None:
    frame = WsReader().close_frame(1000, "é" * 100)
    assert len(frame) == 2 + 2 + 122  # 61 characters of 2 bytes fit in 123
    assert frame[4:].decode() == "é" * 61
    assert WsReader().close_frame(CloseCode.ABORT, "")[2:4] == struct.pack("!H", 1000)


def test_text_trickled_in_tiny_reads_is_held_as_bytes_not_a_str_per_read() -> None:
    """A peer sending a text message two bytes per read must cost about the
    bytes it sent, not a str object per read (~40x that) for as long as it
    keeps the message open."""
    import tracemalloc

    payload = ("\u0100" * 16_000).encode()  # 32,000 bytes, every character split across reads
    frame = mask_frame(OP_TEXT, payload)
    reader = WsReader()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(0, len(frame) - 2, 2):  # the last two bytes never come
            reader.receive_data(frame[i:i + 2])
            assert reader.next_event(BIG) is None
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 3 * len(payload), f"{held} bytes held for {len(payload)} received"
    reader.receive_data(frame[-2:])
    event = reader.next_event(BIG)
    assert isinstance(event, Message) and event.data == payload.decode()
