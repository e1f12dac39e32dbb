"""Outbound back-pressure and inbound frame floods against a real server
over real TCP (and TLS), issue 18:

- a subscriber that reads slowly (not never) under a publish flood reads
  the 4009 close frame: the frames not started are dropped, the close
  frame follows what is already on the wire (item 3);
- a ``since`` replay bigger than ``max_backlog_bytes`` is paced for the
  subscriber, not charged to its slow-consumer limit (M4);
- a run of empty continuation frames is a message too big (1009), after a
  bounded number of frames (M3);
- a peer that floods pings and never reads is a slow consumer (4009), with
  no ERROR logged (L10).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from typing import Any

import attrs
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from realtime.config.settings import ChannelRule
from realtime.protocol.ws_reader import FRAME_COST
from tests.helpers.server import Running
from tests.helpers.ws import call, connect

SLOW_RATE = 64 * 1024  # bytes per second the slow reader reads
READ_SIZE = 4096


class PacedReader:
    """A wsproto client on a socket with a small receive buffer that reads
    at most ``rate`` bytes per second (paced by trio's clock)."""

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.seqs: list[int] = []
        self.other: list[dict[str, Any]] = []
        self.close: CloseConnection | None = None
        self.received = 0
        self._parts: list[str] = []  # the message being received

    @classmethod
    async def open(cls, running: Running, token: str, ssl_context: ssl.SSLContext | None = None) -> "PacedReader":
        addr = running.http if ssl_context is None else running.https
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # A segment size of a real link: over loopback (64 KiB segments) the
        # server's kernel would size its send buffer for a fast path and
        # queue megabytes that a 64 KB/s reader reads for a minute.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
        await sock.connect((addr.host, addr.port))
        stream: trio.abc.Stream = trio.SocketStream(sock)
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname="localhost", https_compatible=True)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(
            host="localhost", target="/ws", extra_headers=[(b"authorization", f"Bearer {token}".encode())])))
        self = cls(stream, ws)
        accepted = False
        while not self.other:  # until the welcome: the session is running then
            data = await stream.receive_some(READ_SIZE)
            assert data, "EOF before the welcome"
            ws.receive_data(data)
            events = list(ws.events())
            if events and not accepted:
                assert isinstance(events[0], AcceptConnection), events
                accepted, events = True, events[1:]
            self._handle(events)
        assert self.other[0]["type"] == "welcome", self.other
        return self

    async def send(self, **message: Any) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(message))))

    def _handle(self, events: list[Any]) -> None:
        parts = self._parts
        for event in events:
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    message = json.loads("".join(parts))
                    parts.clear()
                    if message.get("type") == "message":
                        self.seqs.append(message["seq"])
                    else:
                        self.other.append(message)
            elif isinstance(event, CloseConnection):
                self.close = event

    async def read_until(self, done: Any, rate: float | None = SLOW_RATE) -> None:
        """Read (paced at ``rate``) until ``done()`` or a close frame; at the
        close frame, answer it as a client should."""
        while not done() and self.close is None:
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                raise AssertionError(f"connection broken after {len(self.seqs)} messages: {exc!r}") from exc
            if not data:
                raise AssertionError(f"EOF without a close frame after {len(self.seqs)} messages")
            self.received += len(data)
            self.ws.receive_data(data)
            self._handle(list(self.ws.events()))
            if rate is not None:
                await trio.sleep(len(data) / rate)  # the pace of a slow link, not a synchronisation
        if self.close is not None:
            try:
                await self.stream.send_all(self.ws.send(self.close.response()))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def _read_to_eof(stream: trio.abc.Stream) -> None:
    with trio.fail_after(20):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, ssl.SSLError):
            pass  # reset after the close: still the end of the stream


async def _close_at_exit(stream: trio.abc.Stream) -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


# -- item 3: a 4009 a slow reader can read ---------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_slow_reader_under_a_flood_reads_4009(start_server, make_settings, client_ssl, tls) -> None:
    # The default 1 MiB limit: kept whole before the close frame, it took a
    # 64 KB/s reader 16 s to read, and the server gave up after 2 s (1006).
    running = await start_server(make_settings(websocket={
        "ping_interval": 0, "publish_rate": "100000/s", "message_rate": "100000/s"}))
    assert running.state.settings.websocket.max_backlog_bytes == 1 << 20
    channel = "chat:flood"
    pad = "x" * 8192
    with trio.fail_after(60):
        slow = await PacedReader.open(running, running.mint("bob", "chat:read"), client_ssl if tls else None)
        running.nursery.start_soon(_close_at_exit, slow.stream)
        await slow.send(type="subscribe", id="s", channel=channel)
        await slow.read_until(lambda: slow.other and slow.other[-1].get("id") == "s", rate=None)
        session = next(s for s in running.server.sessions if s.sub == "bob")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow.read_until, lambda: False)
            async with connect(running) as publisher:
                seq = 0
                while session.close_code is None:
                    seq += 1
                    assert seq <= 5000, "the slow consumer was never closed"
                    assert (await call(publisher, type="publish", id=seq, channel=channel,
                                       data={"pad": pad}))["seq"] == seq
    assert session.close_code == 4009
    assert slow.close is not None and slow.close.code == 4009, slow.close
    # Whole messages, in order, with no gap: only a tail was dropped.
    assert slow.seqs == list(range(1, len(slow.seqs) + 1)), slow.seqs
    assert len(slow.seqs) < seq
    # The server closes the socket after our close reply and counts the
    # close in the same step: after EOF the counter must show it.
    await _read_to_eof(slow.stream)
    assert running.state.metrics.closes[4009] == 1


# -- M4: a since replay is paced, not charged --------------------------------------


async def test_since_replay_bigger_than_the_backlog_limit_is_delivered(start_server, make_settings) -> None:
    limit = 64 * 1024
    channels = (ChannelRule("chat:*", subscribe_scope="chat:read", publish_scope="chat:write", history=1000),)
    running = await start_server(make_settings(
        websocket={"max_backlog_bytes": limit, "ping_interval": 0, "publish_rate": "100000/s",
                   "message_rate": "100000/s"},
        channels=channels))
    channel = "chat:history"
    pad = "h" * 4000
    kept = 150  # ~600 KiB of history: ten times the backlog limit
    with trio.fail_after(60):
        async with connect(running) as publisher:
            for seq in range(1, kept + 1):
                assert (await call(publisher, type="publish", id=seq, channel=channel,
                                   data={"pad": pad}))["seq"] == seq
            late = await PacedReader.open(running, running.mint("bob", "chat:read"))
            running.nursery.start_soon(_close_at_exit, late.stream)
            await late.send(type="subscribe", id="late", channel=channel, since=0)
            session = next(s for s in running.server.sessions if s.sub == "bob")
            # Live messages published while the replay is on its way follow it.
            for seq in range(kept + 1, kept + 11):
                assert (await call(publisher, type="publish", id=seq, channel=channel,
                                   data={"pad": "live"}))["seq"] == seq
            await late.read_until(lambda: len(late.seqs) >= kept + 10, rate=4 * SLOW_RATE)
    assert late.close is None, late.close
    assert session.close_code is None
    assert [m["type"] for m in late.other] == ["welcome", "ack"]
    assert late.other[1] == {"type": "ack", "id": "late", "recovered": True}
    assert late.seqs == list(range(1, kept + 11))
    assert running.state.metrics.closes[4009] == 0


# -- M3: a run of empty continuation frames ----------------------------------------


def _masked_frame(opcode: int, payload: bytes, fin: bool) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + mask + body


async def test_empty_continuation_frames_close_1009_after_a_bounded_run(start_server, make_settings) -> None:
    max_bytes = 4096
    running = await start_server(make_settings(websocket={"max_message_bytes": max_bytes, "ping_interval": 0}))
    peer = await PacedReader.open(running, running.mint())
    running.nursery.start_soon(_close_at_exit, peer.stream)
    session = next(s for s in running.server.sessions if s.sub == "alice")
    await peer.stream.send_all(_masked_frame(0x1, b'{"type":', fin=False))
    empty = _masked_frame(0x0, b"", fin=False)
    sent = 0
    bound = max_bytes // FRAME_COST + 1
    with trio.fail_after(20):
        while session.close_code is None:
            assert sent <= 10 * bound, f"{sent} empty frames and still open"
            try:
                await peer.stream.send_all(empty * 16)
            except trio.BrokenResourceError:
                break
            sent += 16
            await trio.testing.wait_all_tasks_blocked(cushion=0.001)
        await peer.read_until(lambda: False, rate=None)
    assert session.close_code == 1009
    assert peer.close is not None and peer.close.code == 1009
    # The server gave up within the bound (plus what was in flight), not
    # after an unbounded number of frames.
    assert sent <= bound + 64, (sent, bound)


# -- L10: a ping flood from a peer that never reads ----------------------------------


async def test_ping_flood_without_reading_is_a_slow_consumer(start_server, make_settings, caplog) -> None:
    running = await start_server(make_settings(websocket={"max_backlog_bytes": 16 * 1024, "ping_interval": 0}))
    peer = await PacedReader.open(running, running.mint())
    running.nursery.start_soon(_close_at_exit, peer.stream)
    session = next(s for s in running.server.sessions if s.sub == "alice")
    ping = _masked_frame(0x9, b"p" * 125, fin=True)
    caplog.set_level(logging.WARNING)
    with trio.fail_after(30):
        sent = 0
        while session.close_code is None:
            assert sent < 200_000, "never closed"
            try:
                await peer.stream.send_all(ping * 64)
            except trio.BrokenResourceError:
                break
            sent += 64
        # Read at last: the pongs, the 4009 close, then EOF once the server
        # has closed the socket, which it does in the step that counts the close.
        await _read_to_eof(peer.stream)
    assert running.state.metrics.closes == {4009: 1}, running.state.metrics.closes
    assert session.close_code == 4009
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
