"""Revocations reach another node through the store alone (no broker):
two nodes on one PostgreSQL database, each polling the store's
revocations every ``[store] revocation_poll``.  A token revoked on A
(RFC 7009, or a refresh reuse that revokes its family) closes B's socket
with 4003 and is refused by B's introspection, userinfo and WebSocket
gate.  Also the ``[store] pool_size`` and ``revocation_poll`` keys."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from realtime.api import admin_ops
from realtime.config.load import ConfigError, load_settings
from realtime.config.settings import StoreSettings
from realtime.net.revocation_watch import CutoffMemory, new_jtis
from realtime.tokens.keyring import RevokedSet
from tests.helpers.oidc import OIDC_SECRET, Browser, exchange, oidc_settings
from tests.helpers.postgres import pg_node_settings, write_store_key
from tests.helpers.tokens import bearer

pytestmark = pytest.mark.timeout(120)

POLL = 0.25  # seconds: short, so the test waits little; the bound below is what is checked
BOUND = 5.0  # B must have learnt of A's revocation within this


async def two_nodes(start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str,
                    tmp_path: Path, **store: Any) -> tuple[Any, Any]:
    key_file = write_store_key(tmp_path)
    base = oidc_settings(make_settings())
    a = await start_server(pg_node_settings(base, pg_url, key_file, tmp_path / "a", **store))
    b = await start_server(pg_node_settings(base, pg_url, key_file, tmp_path / "b", **store))
    return a, b


async def sign_in(http: httpx.AsyncClient) -> dict[str, Any]:
    return await exchange(http, (await Browser(http, "").code(scope="openid chat:read offline_access"))["code"])


async def closed_code(ws: Any) -> int:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    return int(closed.value.reason.code)


async def refused_on(node: Any, http: httpx.AsyncClient, access: str) -> None:
    """B's introspection, userinfo and WebSocket gate all refuse ``access``."""
    info = await http.post("/oauth2/introspect", data={"token": access}, auth=("rp", OIDC_SECRET))
    assert info.status_code == 200 and info.json() == {"active": False}, info.text
    user = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {access}"})
    assert user.status_code == 401, user.text
    try:
        async with open_websocket_url(node.url("/ws", "ws"), extra_headers=bearer(access)) as ws:
            assert await closed_code(ws) == 4003
    except ConnectionRejected as rejected:
        assert rejected.status_code == 401


async def test_an_access_token_revoked_on_a_closes_its_socket_on_b_without_a_broker(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    a, b = await two_nodes(start_server, make_settings, pg_url, tmp_path, revocation_poll=POLL)
    async with httpx.AsyncClient(base_url=a.url("")) as on_a, httpx.AsyncClient(base_url=b.url("")) as on_b:
        tokens = await sign_in(on_a)
        access = tokens["access_token"]
        async with open_websocket_url(b.url("/ws", "ws"), extra_headers=bearer(access)) as ws:
            assert json.loads(await ws.get_message())["type"] == "welcome"
            revoked = await on_a.post("/oauth2/revoke", data={"token": access}, auth=("rp", OIDC_SECRET))
            assert revoked.status_code == 200
            with trio.fail_after(BOUND):
                assert await closed_code(ws) == 4003
        await refused_on(b, on_b, access)


async def test_a_reuse_on_a_closes_the_socket_of_b_s_rotated_token_without_a_broker(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    a, b = await two_nodes(start_server, make_settings, pg_url, tmp_path, revocation_poll=POLL)
    async with httpx.AsyncClient(base_url=a.url("")) as on_a, httpx.AsyncClient(base_url=b.url("")) as on_b:
        first = await sign_in(on_a)
        rotated = await on_b.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
            "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        access = rotated.json()["access_token"]  # issued by B, known to A only through the store
        async with open_websocket_url(b.url("/ws", "ws"), extra_headers=bearer(access)) as ws:
            assert json.loads(await ws.get_message())["type"] == "welcome"
            reuse = await on_a.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
                "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
            assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
            with trio.fail_after(BOUND):
                assert await closed_code(ws) == 4003
        await refused_on(b, on_b, access)


async def test_a_cut_off_on_a_closes_b_s_socket_of_a_token_the_store_never_recorded(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    """POST /api/revoke's cut-off (here run on A as the server API runs it):
    the token was never in the store, so only the cut-off can reach B."""
    a, b = await two_nodes(start_server, make_settings, pg_url, tmp_path, revocation_poll=POLL)
    access = a.mint(sub="alice", client_id="rp", scope="chat:read")
    async with open_websocket_url(b.url("/ws", "ws"), extra_headers=bearer(access)) as ws:
        assert json.loads(await ws.get_message())["type"] == "welcome"
        done = await admin_ops.revoke(a.state, {"sub": "alice", "issued_before": time.time() + 1})
        assert done == {"revoked_families": 0, "closed": 0}  # nothing on A itself
        with trio.fail_after(BOUND):
            assert await closed_code(ws) == 4003
    async with httpx.AsyncClient(base_url=b.url("")) as on_b:
        await refused_on(b, on_b, access)


def test_cutoff_memory_reports_each_cut_off_once_and_forgets_dropped_rows() -> None:
    memory = CutoffMemory()
    assert memory.news([("alice", "", 10.0), ("bob", "rp", 5.0)]) == [("alice", "", 10.0), ("bob", "rp", 5.0)]
    assert memory.news([("alice", "", 10.0), ("bob", "rp", 5.0)]) == []
    # A later cut-off for the same pair is news; an earlier one is not.
    assert memory.news([("alice", "", 12.0), ("bob", "rp", 4.0)]) == [("alice", "", 12.0)]
    # The store swept bob's: forgotten, so the memory is as small as the table.
    memory.news([("alice", "", 12.0)])
    assert memory.seen == {("alice", ""): 12.0}


def test_new_jtis_are_those_the_verifier_does_not_hold() -> None:
    revoked = RevokedSet()
    revoked.add("held", 100.0)
    assert new_jtis(revoked, [("held", 100.0), ("new", 200.0)]) == [("new", 200.0)]


# -- config ---------------------------------------------------------------------

def write(tmp_path: Path, store: str) -> Path:
    (tmp_path / "store.key").write_bytes(b"k" * 32)
    conf = tmp_path / "realtime.toml"
    conf.write_text('[server]\nhttp = "127.0.0.1:0"\nhttps = ""\nstate_dir = "var"\n'
                    'public_url = "https://localhost"\n'
                    '[store]\nurl = "postgresql://u@127.0.0.1:5/db"\nkey_file = "store.key"\n' + store)
    return conf


def test_store_keys_default_to_a_pool_of_8_and_a_poll_every_second(tmp_path: Path) -> None:
    store = load_settings(write(tmp_path, "")).store
    assert (store.pool_size, store.revocation_poll) == (8, 1.0) == (StoreSettings().pool_size,
                                                                 StoreSettings().revocation_poll)
    store = load_settings(write(tmp_path, 'pool_size = 20\nrevocation_poll = "250ms"\n')).store
    assert (store.pool_size, store.revocation_poll) == (20, 0.25)
    assert load_settings(write(tmp_path, "revocation_poll = 0\n")).store.revocation_poll == 0


@pytest.mark.parametrize(("line", "message"), [
    ("pool_size = 0", "store.pool_size: must be at least 1"),
    ("pool_size = 101", "store.pool_size: must be at most 100"),
    ('pool_size = "8"', "store.pool_size"),
    ('revocation_poll = "soon"', "store.revocation_poll"),
    ('revocation_poll = "-1s"', "store.revocation_poll"),
])
def test_bad_store_keys_name_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    conf = write(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(conf)
    text = str(err.value)
    assert f"{conf}:9: {message}" in text, text
