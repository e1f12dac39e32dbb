"""The SSE wire (realtime/protocol/sse.py): events, positions, frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol import frames, replies, sse


def test_encode_event_with_and_without_id() -> None:
    assert sse.encode_event("welcome", b'{"a":1}') == b'event: welcome\ndata: {"a":1}\n\n'
    assert sse.encode_event("x", b"1", "c=2") == b"event: x\ndata: 1\nid: c=2\n\n"


@pytest.mark.parametrize("size", [10, 200, 70_000])
def test_a_message_frame_becomes_its_event_once(size: int) -> None:
    payload = replies.message_from_json("chat:a,b=c", 42, "alice", replies.encode_json("x" * size))
    frame = frames.encode_text_frame(payload)
    event = sse.from_frame(frame)
    assert event.channel == "chat:a,b=c" and event.seq == 42
    assert event.chunk == b"event: message\ndata: " + payload + b"\n"
    assert event.whole == event.chunk + sse.id_line({"chat:a,b=c": 42})
    assert sse.from_frame(frame) is event  # the same frame object: converted once, shared
    copy = frame[:1] + frame[1:]
    assert sse.from_frame(copy) is not event  # another object is converted again
    assert sse.from_frame(copy) == event


def test_other_frames_keep_their_type_as_event_name() -> None:
    event = sse.from_frame(frames.encode_text_frame(replies.join("chat:a", "bob")))
    assert event.channel is None and event.chunk.startswith(b"event: join\n")
    odd = sse.from_frame(frames.encode_text_frame(b'{"type":"bad name\\n"}'))
    assert odd.chunk.startswith(b"event: message\n")


def test_positions_round_trip_and_stay_readable() -> None:
    positions = {"chat:lobby": 17, "a,b=c%": 3, "user:alice": 0, "ünï": 5}
    text = sse.encode_positions(positions)
    assert text.startswith("chat:lobby=17,a%2Cb%3Dc%25=3,user:alice=0,")
    assert text.isascii() and "\n" not in text
    assert sse.decode_positions(text) == positions
    assert sse.id_line({"c": 1}) == b"id: c=1\n\n"


@pytest.mark.parametrize("bad", ["garbage", "c=", "=3", "c=-1", "c=1.5", "c=1,d", "c=١", "x=" + "9" * 20,
                                 "c=1" * 5000])
def test_bad_positions_are_refused(bad: str) -> None:
    with pytest.raises(sse.PositionError):
        sse.decode_positions(bad)


def test_an_empty_last_event_id_is_no_position() -> None:
    assert sse.decode_positions("") == {}


@given(st.dictionaries(st.text(min_size=1, max_size=30).filter(lambda s: s.isprintable()),
                       st.integers(min_value=0, max_value=2**63 - 1), max_size=8))
def test_any_positions_round_trip(positions: dict[str, int]) -> None:
    assert sse.decode_positions(sse.encode_positions(positions)) == positions


def test_positions_object_writes_the_same_id() -> None:
    positions = sse.Positions()
    positions.set("a,b", 1)
    positions.set("user:x", 7)
    positions.set("a,b", 2)
    assert positions.line() == sse.id_line({"a,b": 2, "user:x": 7})
    positions.drop("a,b")
    assert positions.text() == "user:x=7"


def test_a_malformed_message_payload_is_still_an_event() -> None:
    event = sse.from_frame(frames.encode_text_frame(b'{"type":"message","channel":\x01'))
    assert event.channel is None and event.chunk.startswith(b"event: message\n")
