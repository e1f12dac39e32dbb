"""Client helpers for a :class:`~tests.helpers.server.Running` server:
trio-websocket sessions and their messages, ``/api/publish`` over httpx,
and a raw wsproto client that reads only when told to."""

from __future__ import annotations

import json
import socket
import ssl
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from tests.helpers.server import Running
from tests.helpers.tokens import bearer


def loads(message: str | bytes) -> Any:
    return json.loads(message)


async def next_of_type(ws: Any, kind: str, limit: int = 20) -> dict[str, Any]:
    """Read messages until one of ``kind`` arrives (bounded)."""
    for _ in range(limit):
        message = loads(await ws.get_message())
        if message.get("type") == kind:
            return message
    raise AssertionError(f"no {kind!r} message in {limit} messages")


@asynccontextmanager
async def connect(running: Running, sub: str = "alice", scope: str = "chat:read chat:write",
                  **kw: Any) -> AsyncIterator[WebSocketConnection]:
    token = running.mint(sub=sub, scope=scope)
    async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(token), **kw) as ws:
        welcome = loads(await ws.get_message())
        assert welcome["type"] == "welcome" and welcome["sub"] == sub
        yield ws


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(json.dumps(message))


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    return loads(await ws.get_message())  # type: ignore[no-any-return]


async def call(ws: WebSocketConnection, **message: Any) -> dict[str, Any]:
    """Send a message with an ``id`` and return the very next message.

    Used where nothing else can be in flight to this socket, so the next
    message must be the answer (a stray one fails the test)."""
    await send(ws, **message)
    answer = await recv(ws)
    assert answer.get("id") == message["id"], answer
    return answer


async def quiet(ws: WebSocketConnection, tag: str = "q") -> None:
    """Assert nothing is queued for ``ws``: a ping's pong is the next message.

    The server answers in order, and every event it fans out is offered
    before the answer to whatever caused it, so this proves absence."""
    await send(ws, type="ping", id=tag)
    assert await recv(ws) == {"type": "pong", "id": tag}


async def api_publish(running: Running, channel: str, data: Any, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.post(running.url("/api/publish"), json={"channel": channel, "data": data},
                                 headers=headers)


class RawClient:
    """A wsproto client over a socket with a small receive buffer (plain or
    TLS); it reads only when told to, so the server's backlog for it can
    overflow."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._parts: list[str] = []

    @classmethod
    async def open(cls, running: Running, token: str, ssl_context: ssl.SSLContext | None = None) -> "RawClient":
        addr = running.http if ssl_context is None else running.https
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect((addr.host, addr.port))
        stream: trio.abc.Stream = trio.SocketStream(sock)
        if ssl_context is not None:
            # https_compatible: the server may close TCP without close_notify.
            stream = trio.SSLStream(stream, ssl_context, server_hostname="localhost", https_compatible=True)
        self = cls(stream)
        await self.stream.send_all(self.ws.send(Request(
            host="localhost", target="/ws", extra_headers=[(b"authorization", f"Bearer {token}".encode())])))
        events = await self.events()
        assert isinstance(events[0], AcceptConnection), events
        return self

    async def events(self) -> list[Any]:
        """The next whole messages and other events (wsproto hands out a
        message in pieces as its bytes arrive; they are joined here)."""
        while True:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            events = []
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self._parts.append(event.data)
                    if not event.message_finished:
                        continue
                    event = TextMessage("".join(self._parts))
                    self._parts = []
                events.append(event)
            if events or not data:
                return events

    async def send(self, **message: Any) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(message))))

    async def until_id(self, mid: Any) -> dict[str, Any]:
        while True:
            for event in await self.events():
                if isinstance(event, TextMessage) and loads(event.data).get("id") == mid:
                    return loads(event.data)  # type: ignore[no-any-return]

    async def read_to_close(self) -> tuple[list[int], CloseConnection]:
        """Read everything left: the message seqs, then the close frame
        (answered, as a client should)."""
        seqs: list[int] = []
        while True:
            events = await self.events()
            assert events, f"EOF without a close frame after {len(seqs)} messages"
            for event in events:
                if isinstance(event, TextMessage):
                    seqs.append(loads(event.data)["seq"])
                elif isinstance(event, CloseConnection):
                    await self.stream.send_all(self.ws.send(event.response()))
                    return seqs, event
