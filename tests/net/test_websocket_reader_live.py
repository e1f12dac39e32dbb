"""The session's frame reading against a real server, over a raw socket:
what the parser decides (realtime/protocol/ws_reader.py) reaches the
peer as the right frames and close codes, in order."""

from __future__ import annotations

import json
import struct

import trio

from tests.helpers.fuzz import mask_frame, parse_server_frames, upgrade_request
from tests.helpers.server import Running

OP_CONT, OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA


async def upgraded(running: Running, first: bytes = b"") -> tuple[trio.SocketStream, bytes]:
    """A raw socket past the 101 (``first`` sent in the same write as the
    request); returns it and the bytes after the response head."""
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    await stream.send_all(upgrade_request("/ws", running.mint()) + first)
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream, rest


async def until_closed(stream: trio.SocketStream, data: bytes) -> list[tuple[int, bytes]]:
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return parse_server_frames(data)


def close_of(frames: list[tuple[int, bytes]]) -> tuple[int, str]:
    opcode, payload = frames[-1]
    assert opcode == OP_CLOSE, frames
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


async def test_frames_sent_with_the_upgrade_request_are_answered_without_more_bytes(running: Running) -> None:
    ping = mask_frame(OP_TEXT, json.dumps({"type": "ping", "id": 7}).encode())
    stream, data = await upgraded(running, first=ping + mask_frame(OP_PING, b"hi"))
    with trio.fail_after(10):  # nothing more is sent until both answers came
        while b'"id":7' not in data or b"\x8a\x02hi" not in data:
            data += await stream.receive_some(65536)
    await stream.send_all(mask_frame(OP_CLOSE, struct.pack("!H", 1000)))
    frames = await until_closed(stream, data)
    assert [json.loads(p)["type"] for op, p in frames if op == OP_TEXT] == ["welcome", "pong"]
    assert (OP_PONG, b"hi") in frames
    assert close_of(frames) == (1000, "")


async def test_a_broken_frame_closes_1002_after_the_messages_before_it(running: Running) -> None:
    stream, data = await upgraded(running)
    good = mask_frame(OP_TEXT, json.dumps({"type": "ping", "id": 1}).encode())
    await stream.send_all(good + mask_frame(OP_TEXT, b"x", masked=False) + good)
    frames = await until_closed(stream, data)
    texts = [json.loads(p) for op, p in frames if op == OP_TEXT]
    assert [t["type"] for t in texts] == ["welcome", "pong"]  # the one before, not the one after
    assert close_of(frames) == (1002, "unmasked client frame")


async def test_invalid_utf8_split_across_fragments_closes_1007(running: Running) -> None:
    stream, data = await upgraded(running)
    await stream.send_all(mask_frame(OP_TEXT, b'{"x":"\xce', fin=False) + mask_frame(OP_CONT, b'("}'))
    assert close_of(await until_closed(stream, data))[0] == 1007


async def test_a_message_over_the_limit_closes_1009_before_its_payload_comes(running: Running) -> None:
    limit = running.state.settings.websocket.max_message_bytes
    stream, data = await upgraded(running)
    header = mask_frame(OP_TEXT, b"x" * (limit + 1))[:14]  # 64-bit length and the key; no payload
    await stream.send_all(header)
    assert close_of(await until_closed(stream, data)) == (1009, "message too big")


async def test_a_ping_between_fragments_is_answered_and_the_message_goes_on(running: Running) -> None:
    stream, data = await upgraded(running)
    text = json.dumps({"type": "ping", "id": "frag"}).encode()
    await stream.send_all(mask_frame(OP_TEXT, text[:5], fin=False) + mask_frame(OP_PING, b"p")
                          + mask_frame(OP_CONT, text[5:]) + mask_frame(OP_CLOSE, struct.pack("!H", 3000) + b"done"))
    frames = await until_closed(stream, data)
    assert frames[1] == (OP_PONG, b"p")
    assert json.loads(frames[2][1]) == {"type": "pong", "id": "frag"}
    assert close_of(frames) == (3000, "")  # the peer's code echoed


async def test_a_session_withdrawn_at_its_flood_checkpoint_handles_no_further_message(
        running: Running, monkeypatch) -> None:
    """A revocation that lands while the reader yields between two runs of 64
    frames (SPEC §7's flood checkpoint) must stop it: the publish after the
    checkpoint is not handled, and the socket closes with 4003."""
    import sys

    listener = await trio.open_tcp_stream(running.http.host, running.http.port)
    await listener.send_all(upgrade_request("/ws", running.mint(sub="bob")))
    await listener.send_all(mask_frame(OP_TEXT, json.dumps({"type": "subscribe", "channel": "chat:x", "id": "s"}).encode()))
    seen = b""
    with trio.fail_after(10):
        while b'"id":"s"' not in seen:
            seen += await listener.receive_some(65536)

    stream, data = await upgraded(running)
    real_checkpoint = trio.lowlevel.checkpoint
    withdrawn: list[int] = []

    async def checkpoint() -> None:
        # Withdraw exactly when the session's reader takes its flood checkpoint.
        if not withdrawn and sys._getframe(1).f_code.co_name == "_reader":
            (session,) = [c for c in running.state.hub.connections if getattr(c, "sub", None) == "alice"]
            session.withdraw(4003, "token revoked")
            withdrawn.append(session.conn_id)
        await real_checkpoint()

    monkeypatch.setattr(trio.lowlevel, "checkpoint", checkpoint)
    publish = mask_frame(OP_TEXT, json.dumps({"type": "publish", "channel": "chat:x", "data": "late", "id": "p"}).encode())
    await stream.send_all(mask_frame(OP_PONG, b"") * 63 + publish + mask_frame(OP_PONG, b"") * 10)
    frames = await until_closed(stream, data)
    assert withdrawn, "the reader never took its flood checkpoint"
    assert close_of(frames) == (4003, "token revoked")
    assert running.state.metrics.publishes == 0
    assert not any(json.loads(p).get("id") == "p" for op, p in frames if op == OP_TEXT)
