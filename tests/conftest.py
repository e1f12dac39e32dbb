"""Shared fixtures: a real server on 127.0.0.1:0 (plain and TLS via
trustme), in this trio run, plus helpers to mint tokens and talk to it."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import attrs
import pytest
import trio
import trustme

from realtime.net.server import Server
from realtime.config.settings import (
    Addr,
    App,
    ChannelRule,
    OAuthSettings,
    ServerSettings,
    Settings,
    User,
    WebSocketSettings,
)
from realtime.tokens.keyring import issue_access_token

CHANNELS = (
    ChannelRule("chat:*", subscribe_scope="chat:read", publish_scope="chat:write", history=100),
    ChannelRule("news:*", subscribe_scope="news:read", publish_scope="news:write", history=5),
    ChannelRule("user:*", subscribe_scope=None, publish_scope="notify", history=10),
)

APPS = {
    "chat-app": App(name="Chat", client_id="chat-app", public=True,
                    redirect_uris=("http://127.0.0.1/cb",),
                    scopes=("chat:read", "chat:write", "news:read", "notify", "profile")),
}

USERS = {
    "alice": User(name="alice", scopes=("chat:read", "chat:write")),
    "bob": User(name="bob", scopes=("chat:read",)),
    "carol": User(name="carol", scopes=("profile",)),
}


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def make_settings(tmp_path: Path, ca: trustme.CA) -> Callable[..., Settings]:
    pem = tmp_path / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1", "::1").private_key_and_cert_chain_pem.write_to_path(str(pem))

    def build(*, server: dict[str, Any] | None = None, websocket: dict[str, Any] | None = None,
              oauth: dict[str, Any] | None = None, **top: Any) -> Settings:
        srv = ServerSettings(
            http=Addr("127.0.0.1", 0), https=Addr("127.0.0.1", 0), tls_cert=pem, tls_key=pem,
            state_dir=tmp_path / "state", public_url="https://localhost", shutdown_grace=2.0,
        )
        base = Settings(
            server=attrs.evolve(srv, **(server or {})),
            oauth=attrs.evolve(OAuthSettings(), **(oauth or {})),
            websocket=attrs.evolve(WebSocketSettings(ping_interval=0), **(websocket or {})),
            channels=CHANNELS,
            apps=dict(APPS),
            users=dict(USERS),
        )
        return attrs.evolve(base, **top)

    return build


@attrs.define
class Running:
    server: Server
    nursery: trio.Nursery

    @property
    def state(self):  # noqa: ANN201
        assert self.server.state is not None
        return self.server.state

    @property
    def http(self) -> Addr:
        assert self.server.bound.http is not None
        return self.server.bound.http

    @property
    def https(self) -> Addr:
        assert self.server.bound.https is not None
        return self.server.bound.https

    def url(self, path: str = "/", scheme: str = "http") -> str:
        addr = self.http if scheme in ("http", "ws") else self.https
        return f"{scheme}://{addr.host}:{addr.port}{path}"

    def mint(self, sub: str = "alice", scope: str = "chat:read chat:write", ttl: float = 60.0,
             client_id: str = "chat-app", **kw: Any) -> str:
        token, _ = issue_access_token(
            self.state.keyring, issuer=self.state.settings.issuer, audience=self.state.settings.audience,
            sub=sub, client_id=client_id, scope=scope.split(), ttl=ttl, **kw,
        )
        return token


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    servers: list[Server] = []

    async def start(settings: Settings) -> Running:
        server = Server(settings)
        await nursery.start(lambda task_status: server.serve(install_signals=False, task_status=task_status))
        servers.append(server)
        return Running(server, nursery)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def running(start_server: Callable[..., Any], make_settings: Callable[..., Settings]) -> Running:
    return await start_server(make_settings())


def loads(message: str | bytes) -> Any:
    return json.loads(message)


async def next_of_type(ws: Any, kind: str, limit: int = 20) -> dict[str, Any]:
    """Read messages until one of ``kind`` arrives (bounded)."""
    for _ in range(limit):
        message = loads(await ws.get_message())
        if message.get("type") == kind:
            return message
    raise AssertionError(f"no {kind!r} message in {limit} messages")


def now() -> float:
    return time.time()
