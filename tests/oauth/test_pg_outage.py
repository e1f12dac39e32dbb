"""A database outage under a node on the PostgreSQL store: the OAuth
endpoints answer 503 ``temporarily_unavailable`` with Retry-After and a
clear log line, a live WebSocket stays open, and the node recovers by
itself once the database is back (its own throwaway cluster, halted and
resumed on the same port)."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from realtime.config.settings import StoreSettings
from tests.helpers.oidc import OIDC_SECRET, Browser, exchange, oidc_settings
from tests.helpers.postgres import PostgresCluster
from tests.helpers.tokens import bearer


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token},
                           auth=("rp", OIDC_SECRET))


async def test_outage_answers_503_keeps_sockets_and_recovers(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], own_cluster: PostgresCluster,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    url = own_cluster.fresh_database()
    settings = oidc_settings(make_settings(store=StoreSettings(url=url, key_file=key_file),
                                           websocket={"ping_interval": 0}))
    node = await start_server(settings)
    async with httpx.AsyncClient(base_url=node.url(""), timeout=30) as http:
        tokens = await exchange(http, (await Browser(http, "").code(scope="openid chat:read offline_access"))["code"])
        with trio.fail_after(60):
            async with open_websocket_url(node.url("/ws", "ws"), extra_headers=bearer(tokens["access_token"])) as ws:
                assert json.loads(await ws.get_message())["type"] == "welcome"
                await trio.to_thread.run_sync(own_cluster.halt)
                caplog.clear()
                down = await refresh(http, tokens["refresh_token"])
                assert down.status_code == 503, down.text
                assert down.json()["error"] == "temporarily_unavailable" and down.headers["retry-after"] == "5"
                assert any(r.getMessage().startswith("token endpoint: the store's database is unavailable")
                           and r.levelno == logging.ERROR for r in caplog.records)
                # The pages too: the signed-in browser's session is in the store.
                page = await Browser(http, "").authorize(prompt="none", scope="openid chat:read")
                assert page.status_code == 503 and "Temporarily unavailable" in page.text
                # The socket did not notice: it still answers.
                await ws.send_message(json.dumps({"type": "subscribe", "id": 1, "channel": "chat:x"}))
                assert json.loads(await ws.get_message()) == {"type": "ack", "id": 1}

                await trio.to_thread.run_sync(own_cluster.resume)
                # Recovers by itself: each attempt waits at most the pool's wait for a connection.
                for _ in range(10):
                    back = await refresh(http, tokens["refresh_token"])
                    if back.status_code != 503:
                        break
                assert back.status_code == 200, back.text
                assert back.json()["refresh_token"] != tokens["refresh_token"]
