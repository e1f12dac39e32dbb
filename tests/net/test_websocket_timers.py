"""The session shell's timers (realtime/net/websocket.py) under trio's
``autojump_clock``: a real Session on one end of a socketpair, a wsproto
client on the other, and an injected wall clock that follows trio's, so
the token deadline, the expiry warning, the keep-alive and the publish
rate limit are checked in mock time and nothing waits in real time."""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, Event, Ping, TextMessage

from realtime.config.settings import Settings
from realtime.net.transport import Transport
from realtime.net.trio_clock import TrioClock
from realtime.net.websocket import Session
from realtime.protocol.close import CloseCode
from tests.helpers.session import FakeApp, make_app, mint


class Client:
    """A WebSocket client over the other end of the socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.answer_pings = True
        self.pings = 0
        self.session_done = trio.Event()  # the server side's run() returned

    async def event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def message(self) -> dict[str, Any]:
        """The next JSON message; keep-alive pings are answered on the way."""
        while True:
            event = await self.event()
            if isinstance(event, Ping):
                self.pings += 1
                if self.answer_pings:
                    await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, TextMessage):
                return json.loads(event.data)
            else:
                raise AssertionError(f"expected a message, got {event!r}")

    async def send(self, obj: dict[str, Any]) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(obj))))

    async def close_code(self) -> int:
        """Read to the server's close frame and answer it (the closing handshake)."""
        while True:
            event = await self.event()
            if isinstance(event, CloseConnection):
                if event.code != CloseCode.ABORT:  # a dropped socket sends nothing
                    await self.stream.send_all(self.ws.send(event.response()))
                return int(event.code)


@pytest.fixture
def epoch() -> float:
    """The wall clock at mock time 0: now, so that tokens minted from it
    also pass the key ring's real-time expiry check."""
    return time.time()


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., FakeApp]:
    def build(**websocket: Any) -> FakeApp:
        return make_app(make_settings(websocket={"ping_interval": 0, **websocket}), tmp_path / "keys")
    return build


async def start(nursery: trio.Nursery, app: FakeApp, epoch: float, ttl: float = 60.0) -> tuple[Session, Client]:
    _, claims = mint(app, ttl=ttl, now=epoch)
    ours, theirs = socket.socketpair()
    clock = TrioClock(wall=lambda: epoch + trio.current_time())
    session = Session(Transport(ours), claims, app, clock=clock)  # type: ignore[arg-type]
    client = Client(theirs)

    async def run() -> None:
        try:
            await session.run()
        finally:
            client.session_done.set()

    nursery.start_soon(run)
    assert (await client.message())["type"] == "welcome"
    return session, client


def until(exp: float, epoch: float) -> float:
    """Mock seconds from now to the epoch time ``exp``."""
    return exp - (epoch + trio.current_time())


async def test_4001_at_the_token_deadline_after_a_warning(autojump_clock: Any, nursery: trio.Nursery,
                                                         app: Callable[..., FakeApp], epoch: float) -> None:
    services = app(expiry_warning=30.0)
    session, client = await start(nursery, services, epoch, ttl=60.0)
    exp = session.exp
    warning = await client.message()
    assert warning == {"type": "token_expiring", "expires_at": exp}
    assert until(exp, epoch) == pytest.approx(30.0, abs=1e-6)
    assert await client.close_code() == CloseCode.TOKEN_EXPIRED
    assert until(exp, epoch) == pytest.approx(0.0, abs=1e-6)
    await client.session_done.wait()
    assert session.transport.closed and services.metrics.closes == {4001: 1}
    assert until(exp, epoch) == pytest.approx(0.0, abs=1e-6)  # the peer answered the close at once


async def test_a_refresh_moves_the_deadline_and_aims_a_new_warning(autojump_clock: Any, nursery: trio.Nursery,
                                                                   app: Callable[..., FakeApp], epoch: float) -> None:
    services = app(expiry_warning=10.0)
    session, client = await start(nursery, services, epoch, ttl=60.0)
    await trio.sleep(20)
    token, claims = mint(services, ttl=120.0, now=epoch)
    await client.send({"type": "refresh", "id": 1, "token": token})
    assert await client.message() == {"type": "refreshed", "id": 1, "expires_at": claims.exp}
    assert session.exp == claims.exp
    # The old deadline (60 s) passes in silence; the warning comes 10 s before the new one.
    assert await client.message() == {"type": "token_expiring", "expires_at": claims.exp}
    assert until(claims.exp, epoch) == pytest.approx(10.0, abs=1e-6)
    assert await client.close_code() == CloseCode.TOKEN_EXPIRED
    assert until(claims.exp, epoch) == pytest.approx(0.0, abs=1e-6)


async def test_keep_alive_pings_keep_an_answering_peer(autojump_clock: Any, nursery: trio.Nursery,
                                                       app: Callable[..., FakeApp], epoch: float) -> None:
    services = app(ping_interval=10.0, pong_timeout=5.0)
    session, client = await start(nursery, services, epoch, ttl=3600.0)
    started = trio.current_time()
    with trio.move_on_after(95):
        await client.message()  # answers every ping; no message comes
    assert client.pings == 9
    assert trio.current_time() - started == pytest.approx(95)
    assert session.close_code is None


async def test_a_silent_peer_is_dropped_at_ping_plus_pong_timeout(autojump_clock: Any, nursery: trio.Nursery,
                                                                  app: Callable[..., FakeApp], epoch: float) -> None:
    services = app(ping_interval=10.0, pong_timeout=5.0)
    session, client = await start(nursery, services, epoch, ttl=3600.0)
    started = trio.current_time()
    client.answer_pings = False
    assert isinstance(await client.event(), Ping)
    assert trio.current_time() - started == pytest.approx(10.0)
    # No close frame: the peer is taken to be gone, its socket dropped.
    assert await client.close_code() == CloseCode.ABORT
    assert trio.current_time() - started == pytest.approx(15.0)
    assert session.close_code == CloseCode.ABORT and session.close_reason == "ping timeout"


async def test_publish_rate_limit_closes_4008_and_a_pause_refills(autojump_clock: Any, nursery: trio.Nursery,
                                                                   app: Callable[..., FakeApp], epoch: float) -> None:
    services = app(publish_rate="2/s")
    _, client = await start(nursery, services, epoch)
    for n in (1, 2):
        await client.send({"type": "publish", "id": n, "channel": "chat:r", "data": n})
        assert await client.message() == {"type": "ack", "id": n, "seq": n}
    await trio.sleep(0.5)  # one token back
    await client.send({"type": "publish", "id": 3, "channel": "chat:r", "data": 3})
    assert await client.message() == {"type": "ack", "id": 3, "seq": 3}
    await client.send({"type": "publish", "id": 4, "channel": "chat:r", "data": 4})
    assert await client.close_code() == CloseCode.RATE_LIMITED
