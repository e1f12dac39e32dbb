"""Write coalescing across a scheduling pass (realtime/net/cork.py): the
publishes of several sockets handled in one pass reach each subscriber as
one write (one TLS record), in order; what is held is written before the
loop could go idle, and before a close frame; SSE streams share it.  And
a TLS read returns every record already received.

Writes are counted at the subscriber's socket (tests/helpers/sends.py),
never timed."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from wsproto.events import CloseConnection, Ping, TextMessage

from realtime.net.cork import PassCork
from realtime.net.transport import Transport
from realtime.protocol.close import CloseCode
from tests.helpers.sends import TLS_APPLICATION_DATA, count_sends, tls_records, ws_text_payloads
from tests.helpers.sse import open_stream
from tests.helpers.ws import RawClient, loads

PUBLISHERS = 5
CHANNEL = "chat:pass"


def session_of(running: Any, sub: str) -> Any:
    return next(s for s in running.server.sessions if s.sub == sub)


async def publish_together(clients: list[RawClient], channel: str) -> None:
    """Each client sends one publish (id = its number), all in one trio
    batch: every byte is with the kernel before the server's next epoll,
    so the server's readers are woken by one epoll round."""
    go = trio.Event()

    async def publish(client: RawClient, number: int) -> None:
        await go.wait()
        await client.send(type="publish", id=number, channel=channel, data={"n": number})

    async with trio.open_nursery() as nursery:
        for number, client in enumerate(clients, 1):
            nursery.start_soon(publish, client, number)
        await trio.testing.wait_all_tasks_blocked()
        go.set()


async def messages_until_ack(client: RawClient, ack_id: int, want: int) -> list[dict[str, Any]]:
    """Messages (welcome aside) until ``want`` of them and the ack ``ack_id`` have come."""
    got: list[dict[str, Any]] = []
    while not (len(got) >= want and any(m.get("id") == ack_id for m in got)):
        events = await client.events()
        assert events, f"EOF after {got}"
        got += [m for e in events if isinstance(e, TextMessage) and (m := loads(e.data))["type"] != "welcome"]
    return got


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_publishes_from_several_sockets_in_one_pass_reach_a_subscriber_as_one_write(
        start_server, make_settings, client_ssl, tls) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0, "publish_rate": "1000/s"}))
    context = client_ssl if tls else None
    with trio.fail_after(20):
        subscriber = await RawClient.open(running, running.mint(sub="carol", scope="chat:read"), context)
        publishers = [await RawClient.open(running, running.mint(), context) for _ in range(PUBLISHERS)]
        try:
            await subscriber.send(type="subscribe", id="s", channel=CHANNEL)
            await subscriber.until_id("s")
            sends = count_sends(session_of(running, "carol").transport).sends
            await publish_together(publishers, CHANNEL)
            got: list[dict[str, Any]] = []
            while len(got) < PUBLISHERS:
                got += [loads(e.data) for e in await subscriber.events() if isinstance(e, TextMessage)]
            acks = [(await p.until_id(number))["seq"] for number, p in enumerate(publishers, 1)]
        finally:
            for client in (subscriber, *publishers):
                await trio.aclose_forcefully(client.stream)
    # Five publishes, five sockets, one pass: one send to the subscriber ...
    assert len(sends) == 1, sends
    if tls:  # ... which is one TLS record
        assert [kind for kind, _ in tls_records(sends[0])] == [TLS_APPLICATION_DATA]
    else:
        assert [loads(p)["seq"] for p in ws_text_payloads(sends[0])] == list(range(1, PUBLISHERS + 1))
    # in seq order, each message the one its publisher's ack names
    assert [m["seq"] for m in got] == list(range(1, PUBLISHERS + 1))
    assert sorted(acks) == list(range(1, PUBLISHERS + 1))
    by_seq = {m["seq"]: m["data"]["n"] for m in got}
    assert all(by_seq[seq] == number for number, seq in enumerate(acks, 1))


async def test_publishers_that_subscribe_get_their_own_message_before_its_ack_and_every_seq_in_order(
        start_server, make_settings) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0, "publish_rate": "1000/s"}))
    with trio.fail_after(20):
        clients = [await RawClient.open(running, running.mint()) for _ in range(PUBLISHERS)]
        try:
            for client in clients:
                await client.send(type="subscribe", id="s", channel=CHANNEL)
                await client.until_id("s")
            await publish_together(clients, CHANNEL)
            for number, client in enumerate(clients, 1):
                got = await messages_until_ack(client, number, PUBLISHERS + 1)
                messages = [m for m in got if m["type"] == "message"]
                assert [m["seq"] for m in messages] == list(range(1, PUBLISHERS + 1))
                ack = next(i for i, m in enumerate(got) if m.get("id") == number)
                own = next(i for i, m in enumerate(got) if m["type"] == "message" and m["data"]["n"] == number)
                assert own < ack and got[ack]["seq"] == got[own]["seq"]
        finally:
            for client in clients:
                await trio.aclose_forcefully(client.stream)


async def test_what_is_held_is_written_before_the_loop_idles_and_before_a_close_frame(
        start_server, make_settings) -> None:
    """Frames offered outside any reader (here: the test's own task calls
    the hub, as /api/publish and the hub tick do) are written in the next
    batch, so once every task is blocked they are with the kernel; and a
    session withdrawn in the same pass sends them before its close frame."""
    running = await start_server(make_settings(websocket={"ping_interval": 0}))
    hub = running.server.state.hub
    with trio.fail_after(20):
        client = await RawClient.open(running, running.mint(sub="carol", scope="chat:read"))
        try:
            await client.send(type="subscribe", id=1, channel=CHANNEL)
            await client.until_id(1)
            session = session_of(running, "carol")
            sends = count_sends(session.transport).sends
            for n in (1, 2):
                hub.publish(CHANNEL, {"n": n}, from_sub="bob", scopes=frozenset({"chat:write"}))
            assert sends == []  # held: the pass has not ended
            await trio.testing.wait_all_tasks_blocked()
            assert len(sends) == 1 and len(ws_text_payloads(sends[0])) == 2
            hub.publish(CHANNEL, {"n": 3}, from_sub="bob", scopes=frozenset({"chat:write"}))
            session.withdraw(CloseCode.REVOKED, "access withdrawn")
            seqs, close = await client.read_to_close()
        finally:
            await trio.aclose_forcefully(client.stream)
    assert seqs == [1, 2, 3]
    assert close.code == CloseCode.REVOKED


async def test_an_sse_stream_gets_the_pass_as_one_write(start_server, make_settings) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0}))
    hub = running.server.state.hub
    with trio.fail_after(20):
        async with open_stream(running, CHANNEL, token=running.mint(sub="carol", scope="chat:read")) as stream:
            welcome = await stream.next_named("welcome")
            sse = running.server.state.streams.get(welcome.data["stream"])
            sends = count_sends(sse.transport).sends
            for n in range(1, 4):
                hub.publish(CHANNEL, {"n": n}, from_sub="bob", scopes=frozenset({"chat:write"}))
            await trio.testing.wait_all_tasks_blocked()
            assert len(sends) == 1 and sends[0].count(b"event: message") == 3, sends
            assert [(await stream.next_named("message")).data["seq"] for _ in range(3)] == [1, 2, 3]


def test_the_flusher_writes_once_per_pass_and_everything_left_when_the_run_ends() -> None:
    """The cork alone, on a socket pair: writes in one pass are one chunk;
    after the run's end nothing is held (the flusher wrote it out)."""
    ours, theirs = socket.socketpair()
    failures: list[tuple[int, str]] = []

    async def main() -> None:
        transport = Transport(ours)
        transport.coalesce(lambda code, reason: failures.append((code, reason)))
        await trio.testing.wait_all_tasks_blocked()  # the flusher is parked
        cork = PassCork.current()
        before = cork.flushes
        for part in (b"a", b"b", b"c"):
            transport.write(part)
        with pytest.raises(BlockingIOError):  # held until the pass ends
            theirs.recv(16, socket.MSG_DONTWAIT)
        await trio.testing.wait_all_tasks_blocked()
        assert cork.flushes == before + 1
        assert theirs.recv(16) == b"abc"
        transport.write(b"left at the end")

    trio.run(main)
    assert theirs.recv(64) == b"left at the end"
    assert failures == []
    ours.close()
    theirs.close()


def test_one_pass_of_fan_out_to_a_peer_that_does_not_read_meets_the_backlog_limit() -> None:
    """A megabyte written to one connection in one pass (many publishers'
    fan-out) must not go to the wire unchecked: the pass is written in
    chunks of at most max_backlog, the rest meets the limit as a queued
    write would, and the owner hears 4009 (slow consumer)."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    failures: list[tuple[int, str]] = []
    limit = 64 * 1024

    async def main() -> None:
        transport = Transport(ours, max_backlog=limit)
        transport.coalesce(lambda code, reason: failures.append((code, reason)))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(64):
            transport.write(b"x" * 16384)  # never read by the peer
        await trio.testing.wait_all_tasks_blocked()
        assert transport.backlog_bytes <= 2 * limit, transport.backlog_bytes
        transport.close()

    trio.run(main)
    assert failures and failures[0][0] == CloseCode.SLOW_CONSUMER
    ours.close()
    theirs.close()


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
