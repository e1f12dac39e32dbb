"""Write coalescing (realtime/net/cork.py): several messages in one read fan
out as one write per recipient, in order, over TCP and TLS; and a TLS read
returns every record already received, so the batch is seen whole."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections import Counter
from typing import Any

import pytest
import trio
import trustme
from wsproto.events import CloseConnection, Ping, TextMessage

from realtime.net.transport import Transport
from realtime.net.cork import CORK
from tests.helpers.ws import loads
from tests.helpers.ws import RawClient, connect, quiet, recv


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_a_batch_of_publishes_reaches_each_subscriber_in_one_write_and_in_order(
        start_server, make_settings, client_ssl, tls, monkeypatch) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0, "publish_rate": "1000/s"}))
    channel = "chat:batch"
    sessions = running.server.sessions
    writes: Counter[int] = Counter()
    original = Transport.write

    def counting_write(self: Transport, data: bytes, **kw: Any) -> None:
        writes[id(self)] += 1
        original(self, data, **kw)

    with trio.fail_after(10):
        async with connect(running, "carol", "chat:read") as subscriber:
            await subscriber.send_message(json.dumps({"type": "subscribe", "id": 1, "channel": channel}))
            assert await recv(subscriber) == {"type": "ack", "id": 1}
            sub_transport = next(s for s in sessions if s.sub == "carol").transport
            publisher = await RawClient.open(running, running.mint(), client_ssl if tls else None)
            try:
                monkeypatch.setattr(Transport, "write", counting_write)
                # Five publishes in one send: the server reads them as one batch.
                batch = b"".join(
                    publisher.ws.send(TextMessage(json.dumps(
                        {"type": "publish", "id": i, "channel": channel, "data": {"n": i}})))
                    for i in range(1, 6))
                await publisher.stream.send_all(batch)
                acks: list[Any] = []
                while len(acks) < 5:
                    acks += [m for e in await publisher.events() if (m := loads(e.data))["type"] != "welcome"]
                got = [await recv(subscriber) for _ in range(5)]
                monkeypatch.setattr(Transport, "write", original)
                assert acks == [{"type": "ack", "id": i, "seq": i} for i in range(1, 6)]
                assert [(m["seq"], m["data"]["n"]) for m in got] == [(i, i) for i in range(1, 6)]
                assert writes[id(sub_transport)] == 1, writes  # one chunk for the five frames
                assert not CORK.active and CORK.held == []
                await quiet(subscriber)
            finally:
                await trio.aclose_forcefully(publisher.stream)


async def test_a_single_message_is_written_at_once(start_server, make_settings, monkeypatch) -> None:
    """One message per read is never held: the latency case is untouched."""
    running = await start_server(make_settings(websocket={"ping_interval": 0}))
    held_during_write: list[bool] = []
    original = Transport.write

    def watching_write(self: Transport, data: bytes, **kw: Any) -> None:
        held_during_write.append(CORK.active)
        original(self, data, **kw)

    with trio.fail_after(10):
        async with connect(running) as ws:
            monkeypatch.setattr(Transport, "write", watching_write)
            await quiet(ws)
            monkeypatch.setattr(Transport, "write", original)
    assert held_during_write == [False]


async def test_tls_receive_returns_every_record_already_received(ca: trustme.CA) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    ours, theirs = socket.socketpair()
    transport = Transport(ours, server_ctx)
    client = trio.SSLStream(trio.SocketStream(trio.socket.from_stdlib_socket(theirs)), client_ctx,
                            server_hostname="localhost")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.handshake)
            await client.do_handshake()
        for part in (b"first ", b"second ", b"third"):
            await client.send_all(part)  # one TLS record each, all in the socket before we read
        assert await transport.receive_some() == b"first second third"
        await client.send_all(b"later")
        assert await transport.receive_some() == b"later"
    transport.close()
    await trio.aclose_forcefully(client)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_ping_then_close_in_one_read_closes_cleanly(start_server, make_settings, client_ssl, tls,
                                                          caplog) -> None:
    """A read is parsed whole before it is handled, so a Ping followed by a
    Close in the same read finds wsproto already closing: the server must
    skip the Pong, not crash the connection task (found by the fuzzer)."""
    running = await start_server(make_settings(websocket={"ping_interval": 0}))
    caplog.set_level(logging.ERROR, logger="realtime")
    with trio.fail_after(10):
        client = await RawClient.open(running, running.mint(), client_ssl if tls else None)
        try:
            await client.stream.send_all(
                client.ws.send(Ping(b"are you there")) + client.ws.send(CloseConnection(code=1000, reason="bye")))
            events: list[Any] = []
            while not any(isinstance(e, CloseConnection) for e in events):
                got = await client.events()
                assert got, f"EOF before the server's close frame: {events}"
                events += got
        finally:
            await trio.aclose_forcefully(client.stream)
    close = next(e for e in events if isinstance(e, CloseConnection))
    assert close.code == 1000
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
