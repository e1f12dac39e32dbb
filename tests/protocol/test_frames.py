"""Our prepared server frames, read back by wsproto's client-side parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from realtime.protocol.frames import (
    encode_binary_frame,
    encode_frame,
    encode_ping_frame,
    encode_pong_frame,
    encode_text_frame,
)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1024 * 1024]


def read_frames(data: bytes) -> list:
    fp = FrameProtocol(client=True, extensions=[])
    fp.receive_bytes(data)
    return list(fp.received_frames())


def header_len(n: int) -> int:
    return 2 if n < 126 else 4 if n < 65536 else 10


@pytest.mark.parametrize("size", SIZES)
def test_text_frame_sizes(size: int) -> None:
    payload = b"x" * size
    frame = encode_text_frame(payload)
    assert len(frame) == header_len(size) + size
    assert frame[0] == 0x81  # FIN + text
    assert frame[1] & 0x80 == 0  # server frames are unmasked
    [f] = read_frames(frame)
    assert f.opcode is Opcode.TEXT
    assert f.payload == payload.decode()
    assert f.frame_finished and f.message_finished


@pytest.mark.parametrize("size", SIZES)
def test_binary_frame_sizes(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    [f] = read_frames(encode_binary_frame(payload))
    assert f.opcode is Opcode.BINARY
    assert f.payload == payload


def test_text_frame_utf8() -> None:
    text = "héllo — 世界 🎉"
    [f] = read_frames(encode_text_frame(text.encode()))
    assert f.payload == text


def test_one_frame_serves_many_and_concatenates() -> None:
    frames = [encode_text_frame(f"m{i}".encode() * i) for i in range(0, 300, 37)]
    got = read_frames(b"".join(frames))
    assert [f.payload for f in got] == [f"m{i}" * i for i in range(0, 300, 37)]


def test_frame_fed_byte_by_byte() -> None:
    frame = encode_text_frame(b"a" * 300)
    fp = FrameProtocol(client=True, extensions=[])
    text = ""
    for i in range(len(frame)):
        fp.receive_bytes(frame[i : i + 1])
        for f in fp.received_frames():
            text += f.payload
    assert text == "a" * 300


@given(st.binary(max_size=70000))
def test_binary_roundtrip(payload: bytes) -> None:
    [f] = read_frames(encode_binary_frame(payload))
    assert f.payload == payload


@given(st.text(max_size=2000))
def test_text_roundtrip(text: str) -> None:
    [f] = read_frames(encode_text_frame(text.encode()))
    assert f.payload == text


def test_ping_pong() -> None:
    [p] = read_frames(encode_ping_frame(b"abc"))
    assert (p.opcode, p.payload) == (Opcode.PING, b"abc")
    [q] = read_frames(encode_pong_frame(b"x" * 125))
    assert (q.opcode, q.payload) == (Opcode.PONG, b"x" * 125)
    [e] = read_frames(encode_pong_frame())
    assert (e.opcode, e.payload) == (Opcode.PONG, b"")


def test_control_frames_limited_to_125() -> None:
    with pytest.raises(ValueError):
        encode_ping_frame(b"x" * 126)
    with pytest.raises(ValueError):
        encode_pong_frame(b"x" * 126)


def test_reserved_opcodes_refused() -> None:
    for op in (0x3, 0x7, 0xB, 0xF):
        with pytest.raises(ValueError):
            encode_frame(op, b"")
