"""The message assembler's cost model, without a socket."""

from __future__ import annotations

from realtime.net.inbound import FRAME_COST, Fragments


def test_one_frame_is_limited_by_its_payload_alone() -> None:
    message = Fragments(is_text=True)
    assert message.add("x" * 100, True, 100)
    assert message.whole() == "x" * 100
    assert not Fragments(is_text=True).add("é" * 51, True, 101)  # 102 bytes of UTF-8


def test_each_continuation_frame_costs_frame_cost() -> None:
    limit = 10 * FRAME_COST
    message = Fragments(is_text=False)
    assert message.add(b"ab", True, limit)
    frames = 0
    while message.add(b"", True, limit):
        frames += 1
    assert frames == (limit - 2) // FRAME_COST
    assert message.whole() == b"ab"


def test_pieces_of_one_frame_and_several_frames_join_in_order() -> None:
    message = Fragments(is_text=True)
    for piece, finished in (("he", False), ("llo", True), (" ", True), ("wörld", True)):
        assert message.add(piece, finished, 1000)
    assert message.whole() == "hello wörld"
    assert message.cost == len("hello wörld".encode()) + 2 * FRAME_COST
