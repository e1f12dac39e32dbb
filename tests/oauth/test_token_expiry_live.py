"""Through a real server: a token's ``exp`` is final everywhere, whatever
``[oauth] leeway`` says; the leeway only absorbs clock skew on ``iat``
."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.helpers.oauth import WEB_SECRET, build_settings
from tests.helpers.server import Running
from tests.helpers.tokens import bearer
from tests.helpers.ws import api_publish, loads


@pytest.fixture
async def server(start_server: Callable[..., Any], make_settings: Callable[..., Any],
                 hashes: dict[str, str], tmp_path: Path) -> Running:
    mine = build_settings(tmp_path, hashes, time.time())
    running = await start_server(make_settings(apps={**mine.apps, **make_settings().apps}, users=mine.users,
                                               oauth={"signing_alg": "ES256", "leeway": 5.0}))
    assert running.state.settings.oauth.leeway == 5.0
    return running


def just_expired(server: Running, **kw: Any) -> str:
    """A token whose ``exp`` passed one to two seconds ago."""
    return server.mint(now=time.time() - 61.5, ttl=60, **kw)


async def test_expired_token_refused_at_the_handshake(server: Running) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(just_expired(server))):
            pass
    assert rejected.value.status_code == 401
    assert b"expired" in (rejected.value.body or b"") or any(
        b"expired" in value for name, value in rejected.value.headers or () if name.lower() == b"www-authenticate")


async def test_expired_token_refused_by_userinfo_api_and_introspection(server: Running) -> None:
    token = just_expired(server, client_id="web")
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        resp = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["www-authenticate"]
        resp = await http.post("/oauth2/introspect", data={"token": token}, auth=("web", WEB_SECRET))
        assert resp.status_code == 200 and resp.json() == {"active": False}
    resp = await api_publish(server, "chat:lobby", "hi", just_expired(server))
    assert resp.status_code == 401
    async with httpx.AsyncClient() as http:
        resp = await http.get(server.url("/api/presence"), params={"channel": "chat:lobby"},
                              headers={"authorization": f"Bearer {just_expired(server)}"})
        assert resp.status_code == 401
        # The same request with a live token gets past the token check (to
        # the channel rule: chat:* keeps no presence here, 400).
        resp = await http.get(server.url("/api/presence"), params={"channel": "chat:lobby"},
                              headers={"authorization": f"Bearer {server.mint()}"})
        assert resp.status_code == 400


async def test_iat_slightly_in_the_future_is_accepted(server: Running) -> None:
    token = server.mint(now=time.time() + 3, ttl=60, client_id="web")  # a clock 3 s ahead, leeway 5 s
    async with open_websocket_url(server.url("/ws", "ws"), extra_headers=bearer(token)) as ws:
        assert loads(await ws.get_message())["type"] == "welcome"
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        resp = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {token}"})
        assert resp.status_code == 200 and resp.json()["sub"] == "alice"
        resp = await http.post("/oauth2/introspect", data={"token": token}, auth=("web", WEB_SECRET))
        assert resp.json()["active"] is True
