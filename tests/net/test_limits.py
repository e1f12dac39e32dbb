"""Connection limits and keep-alive against a real server (issue 13 §4).

- ``[server] max_connections`` / ``max_connections_per_ip``: 503 past them;
  WebSocket sessions hold their slot; a freed slot is usable again.
- ``[websocket] ping_interval`` / ``pong_timeout``: a peer that goes silent
  (a pulled cable) is dropped within ``ping_interval + pong_timeout``, its
  slot and its presence freed; a peer that answers pings stays.
- ``[server] keepalive_timeout`` / ``header_timeout`` / ``handshake_timeout``.

Time only ever bounds a wait (``fail_after``); tests meet the server on
bytes read from sockets and on ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import json
import ssl
import struct

import trio
import trio.testing
from trio_websocket import open_websocket_url

from realtime.config.settings import ChannelRule
from tests.helpers.server import Running
from tests.helpers.ws import loads, next_of_type
from tests.helpers.tokens import bearer

PING, PONG, CLOSE = 0x9, 0xA, 0x8
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def connect(running: Running, source: str | None = None) -> trio.SocketStream:
    return await trio.open_tcp_stream(running.http.host, running.http.port, local_address=source)


async def read_all(stream: trio.abc.ReceiveStream, timeout: float = 5) -> bytes:
    data = b""
    with trio.fail_after(timeout):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def healthz(stream: trio.SocketStream) -> bytes:
    await stream.send_all(HEALTHZ)
    data = b""
    with trio.fail_after(5):
        while not data.endswith(b"ok\n"):
            chunk = await stream.receive_some(4096)
            assert chunk, data
            data += chunk
    return data


async def settle() -> None:
    """Let the server see what the kernel already delivered (closes, EOFs)."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)


# -- connection limits ----------------------------------------------------------


async def test_max_connections_answers_503_and_frees_slots(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"max_connections": 2}))
    a, b = await connect(server), await connect(server)
    for s in (a, b):
        assert (await healthz(s)).startswith(b"HTTP/1.1 200")
    third = await connect(server)
    async with third:
        answer = await read_all(third)
    assert answer.startswith(b"HTTP/1.1 503")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "server_busy"
    assert b"retry-after: 1" in answer.lower()
    # The limit counts connections, not requests: a keep-alive one still works.
    assert (await healthz(a)).startswith(b"HTTP/1.1 200")
    await b.aclose()
    await settle()
    assert len(server.server.http_conns) == 1
    fresh = await connect(server)
    async with a, fresh:
        assert (await healthz(fresh)).startswith(b"HTTP/1.1 200")


async def test_per_ip_limit_counts_websockets_and_spares_other_addresses(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"max_connections_per_ip": 1}))
    async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(server.mint())) as ws:
        await next_of_type(ws, "welcome")
        same = await connect(server)
        async with same:
            assert (await read_all(same)).startswith(b"HTTP/1.1 503")
        other = await connect(server, source="127.0.0.2")  # loopback is a /8: another address
        async with other:
            assert (await healthz(other)).startswith(b"HTTP/1.1 200")
        await ws.send_message(json.dumps({"type": "ping", "id": 1}))
        assert (await next_of_type(ws, "pong"))["id"] == 1
    await settle()
    again = await connect(server)
    async with again:
        assert (await healthz(again)).startswith(b"HTTP/1.1 200")


# -- server pings and dead peers -------------------------------------------------


UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


class RawPeer:
    """A WebSocket peer on a raw socket: it answers only what the test says."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    @classmethod
    async def open(cls, running: Running, token: str) -> "RawPeer":
        peer = cls(await connect(running))
        await peer.stream.send_all(UPGRADE + b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
        with trio.fail_after(5):
            while b"\r\n\r\n" not in peer.buf:
                chunk = await peer.stream.receive_some(65536)
                assert chunk
                peer.buf += chunk
        head, _, peer.buf = peer.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return peer

    async def frame(self) -> tuple[int, bytes] | None:
        """The next server frame, or None at EOF."""
        while True:
            if len(self.buf) >= 2:
                n, i = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, i = struct.unpack("!H", self.buf[2:4])[0], 4
                if n < 126 and len(self.buf) >= i + n:
                    op, payload = self.buf[0] & 0x0F, self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return op, payload
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buf += chunk

    async def send(self, opcode: int, payload: bytes) -> None:
        mask = b"\x11\x22\x33\x44"
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self.stream.send_all(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body)


async def test_silent_peer_is_dropped_after_ping_and_pong_timeout(start_server, make_settings) -> None:
    interval, timeout = 0.2, 0.3
    channels = (ChannelRule("room:*", subscribe_scope="chat:read", publish_scope="chat:write",
                            presence=True, join_leave=True),)
    server = await start_server(make_settings(websocket={"ping_interval": interval, "pong_timeout": timeout},
                                              channels=channels))
    async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(server.mint())) as alive:
        await next_of_type(alive, "welcome")
        await alive.send_message(json.dumps({"type": "subscribe", "channel": "room:1", "id": 1}))
        await next_of_type(alive, "ack")

        dead = await RawPeer.open(server, server.mint(sub="bob", scope="chat:read"))
        async with dead.stream:
            assert loads((await dead.frame())[1])["type"] == "welcome"
            await dead.send(0x1, b'{"type":"subscribe","channel":"room:1","id":1}')
            assert (await next_of_type(alive, "join"))["sub"] == "bob"
            # From here on bob only reads: he never answers a ping.
            start = trio.current_time()
            seen: list[int] = []
            with trio.fail_after(interval + timeout + 2):
                while (got := await dead.frame()) is not None:
                    seen.append(got[0])
            elapsed = trio.current_time() - start
        assert PING in seen and CLOSE not in seen, seen  # dropped, no close handshake with a ghost
        assert elapsed < interval + timeout + 1.0, elapsed
        # Its presence and its slot are freed; the live client heard it leave.
        assert (await next_of_type(alive, "leave"))["sub"] == "bob"
        assert server.state.metrics.closes[1006] == 1
        assert [c.sub for c in server.state.hub.connections.all()] == ["alice"]
        await settle()
        assert len(server.server.http_conns) == 1
        # trio-websocket answers pings by itself: alice outlived several of them.
        await alive.send_message(json.dumps({"type": "ping", "id": 2}))
        assert (await next_of_type(alive, "pong"))["id"] == 2


async def test_peer_that_answers_pings_stays_until_it_stops(start_server, make_settings) -> None:
    interval, timeout = 0.15, 0.25
    server = await start_server(make_settings(websocket={"ping_interval": interval, "pong_timeout": timeout}))
    peer = await RawPeer.open(server, server.mint())
    async with peer.stream:
        with trio.fail_after(10):
            assert loads((await peer.frame())[1])["type"] == "welcome"
            pings = 0
            while pings < 4:  # 4 intervals > interval + timeout: a broken pong check would have cut us off
                op, payload = await peer.frame()
                assert op == PING, (op, payload)
                pings += 1
                await peer.send(PONG, payload)
            start = trio.current_time()
            while (got := await peer.frame()) is not None:
                assert got[0] == PING
        assert trio.current_time() - start < interval + timeout + 1.0
    assert server.state.metrics.closes[1006] == 1


# -- HTTP keep-alive and slow clients --------------------------------------------


async def test_idle_keep_alive_connection_is_closed(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"keepalive_timeout": 0.3}))
    stream = await connect(server)
    async with stream:
        assert (await healthz(stream)).startswith(b"HTTP/1.1 200")
        start = trio.current_time()
        assert await read_all(stream, timeout=5) == b""  # closed quietly, no 408 for an idle peer
        assert trio.current_time() - start >= 0.25
    await settle()
    assert not server.server.http_conns


async def test_connection_that_never_sends_is_closed(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"header_timeout": 0.3}))
    stream = await connect(server)
    async with stream:
        assert await read_all(stream, timeout=5) == b""


async def test_silent_tls_client_is_cut_off(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"handshake_timeout": 0.3}))
    stream = await trio.open_tcp_stream(server.https.host, server.https.port)
    async with stream:
        start = trio.current_time()
        assert await read_all(stream, timeout=5) == b""
        assert trio.current_time() - start >= 0.25


async def test_over_limit_tls_client_sees_the_connection_end(start_server, make_settings, client_ssl: ssl.SSLContext) -> None:
    server = await start_server(make_settings(server={"max_connections": 1}))
    holder = await connect(server)
    async with holder:
        assert (await healthz(holder)).startswith(b"HTTP/1.1 200")
        raw = await trio.open_tcp_stream(server.https.host, server.https.port)
        tls = trio.SSLStream(raw, client_ssl, server_hostname="localhost")
        try:
            with trio.fail_after(5):
                await tls.do_handshake()
            raise AssertionError("TLS handshake succeeded past max_connections")
        except (trio.BrokenResourceError, ssl.SSLError):
            pass
        finally:
            await raw.aclose()
