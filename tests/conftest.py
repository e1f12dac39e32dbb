"""Shared fixtures: a real server on 127.0.0.1:0 (plain and TLS via
trustme) in this trio run.  Helpers live in tests/helpers/."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import attrs
import pytest
import trio
import trustme

from realtime.config.settings import Addr, OAuthSettings, ServerSettings, Settings, WebSocketSettings
from tests.helpers.postgres import PostgresCluster, running_cluster
from tests.helpers.redis import RedisServer
from tests.helpers.server import Running
from tests.helpers.settings import APPS, CHANNELS, USERS


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


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    servers: list[Running] = []

    async def start(settings: Settings) -> Running:
        running = await Running.start(nursery, settings)
        servers.append(running)
        return running

    yield start
    for running in servers:
        running.stop()


@pytest.fixture
async def running(start_server: Callable[..., Any], make_settings: Callable[..., Settings]) -> Running:
    return await start_server(make_settings())


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (tests/helpers/redis.py), for nodes to share."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole run (tests/helpers/postgres.py)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the test's own, which it may stop (an outage)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """A migrated database of this test's own on the session's cluster."""
    return postgres.fresh_database()
