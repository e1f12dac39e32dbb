"""Two nodes with separate state dirs behind one PostgreSQL database and
one redis-server (SPEC §14, issue 22's two-node deployment): log in on
A, refresh on B, hold a socket on B with B's new token, then replay the
old refresh token on A.  The family is revoked in the store and B's
socket closes with 4003 through the broker.  The store's revocation poll
is off here, so the broker alone carries it
(tests/oauth/test_pg_revocation_watch.py covers the poll)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.helpers.oidc import OIDC_SECRET, Browser, exchange, oidc_settings
from tests.helpers.postgres import pg_node_settings, write_store_key
from tests.helpers.redis import RedisServer, redis_node_settings
from tests.helpers.tokens import bearer

pytestmark = pytest.mark.timeout(120)


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token},
                           auth=("rp", OIDC_SECRET))


async def test_reuse_on_a_revokes_the_family_and_closes_b_s_socket_through_the_broker(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, redis: RedisServer,
        tmp_path: Path) -> None:
    key_file = write_store_key(tmp_path)
    base = oidc_settings(redis_node_settings(make_settings, redis))
    a = await start_server(pg_node_settings(base, pg_url, key_file, tmp_path / "a", revocation_poll=0))
    b = await start_server(pg_node_settings(base, pg_url, key_file, tmp_path / "b", revocation_poll=0))
    async with httpx.AsyncClient(base_url=a.url("")) as on_a, httpx.AsyncClient(base_url=b.url("")) as on_b:
        first = await exchange(on_a, (await Browser(on_a, "").code(scope="openid chat:read offline_access"))["code"])
        on_b_answer = await refresh(on_b, first["refresh_token"])
        assert on_b_answer.status_code == 200, on_b_answer.text
        second = on_b_answer.json()

        async with open_websocket_url(b.url("/ws", "ws"), extra_headers=bearer(second["access_token"])) as ws:
            assert json.loads(await ws.get_message())["type"] == "welcome"
            reuse = await refresh(on_a, first["refresh_token"])  # the rotated token again, on A
            assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
        assert closed.value.reason.code == 4003
        # The family is dead in the store: B refuses its newest refresh token too,
        # and B's verifier holds the access token as revoked.
        dead = await refresh(on_b, second["refresh_token"])
        assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
        info = await on_b.post("/oauth2/introspect", data={"token": second["access_token"]},
                               auth=("rp", OIDC_SECRET))
        assert info.json() == {"active": False}
    assert not (tmp_path / "a" / "state.sqlite3").exists() and not (tmp_path / "b" / "state.sqlite3").exists()
