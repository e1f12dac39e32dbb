"""Reload and rotation with a real server, real files and real clients."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from trio_websocket import ConnectionClosed, open_websocket_url

from realtime.config.load import load_settings
from realtime.tokens.keyring import KeyRing
from tests.helpers.server import Running, server_config
from tests.helpers.ws import next_of_type
from tests.helpers.tokens import bearer

CONFIG = server_config(
    server='https = "127.0.0.1:0"\ntls_cert = "server.pem"\nwatch = {watch}\n', shutdown_grace="2s",
    channels='\n[[channel]]\npattern = "news:*"\nsubscribe_scope = "{news_scope}"\n')

APP = """
[[app]]
name = "{name}"
client_id = "{client_id}"
public = true
redirect_uris = ["http://127.0.0.1/cb"]
scopes = ["chat:read", "chat:write", "news:read"]
"""


class Files:
    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        self.ca = ca
        ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
        self.write(watch=False)

    def write(self, *, watch: bool = False, news_scope: str = "news:read",
              apps: tuple[str, ...] = ("chat-app", "other-app"), disabled: tuple[str, ...] = (),
              users: tuple[str, ...] = ("alice", "bob")) -> None:
        (self.root / "realtime.toml").write_text(
            CONFIG.format(watch="true" if watch else "false", news_scope=news_scope))
        (self.root / "apps.toml").write_text("".join(APP.format(name=a, client_id=a) for a in apps))
        (self.root / "users.json").write_text(json.dumps({"users": [
            {"name": u, "scopes": ["chat:read", "chat:write", "news:read"], "disabled": u in disabled}
            for u in users]}))

    @property
    def config(self) -> Path:
        return self.root / "realtime.toml"


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> Files:
    return Files(tmp_path, ca)


@pytest.fixture
async def live(files: Files, start_server: Any) -> Running:
    return await start_server(load_settings(files.config))


async def reload_now(server: Running) -> bool:
    done = server.server.reload_done
    applied = await server.server.reload("test")
    assert done.is_set()
    return applied


async def expect_close(ws: Any, code: int, within: float = 1.0) -> None:
    with trio.fail_after(within):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    assert closed.value.reason.code == code


async def test_disabling_a_user_closes_only_their_sockets(live: Running, files: Files) -> None:
    async with open_websocket_url(live.url("/ws", "ws"), extra_headers=bearer(live.mint("alice"))) as alice, \
            open_websocket_url(live.url("/ws", "ws"), extra_headers=bearer(live.mint("bob"))) as bob:
        await next_of_type(alice, "welcome")
        await next_of_type(bob, "welcome")
        files.write(disabled=("alice",))
        assert await reload_now(live)
        await expect_close(alice, 4003, within=1.0)
        await bob.send_message(json.dumps({"type": "ping", "id": 1}))
        assert (await next_of_type(bob, "pong"))["id"] == 1


async def test_removing_an_app_closes_its_sockets(live: Running, files: Files) -> None:
    async with open_websocket_url(live.url("/ws", "ws"), extra_headers=bearer(live.mint(client_id="other-app"))) as ws:
        await next_of_type(ws, "welcome")
        files.write(apps=("chat-app",))
        assert await reload_now(live)
        await expect_close(ws, 4003)


async def test_broken_file_keeps_running_config_then_fixed_file_applies(live: Running, files: Files) -> None:
    (files.root / "users.json").write_text("{not json")
    assert not await reload_now(live)
    assert live.state.last_reload["result"] == "error"
    assert "users.json:1" in live.state.last_reload["errors"][0]
    # The old registry still works.
    async with open_websocket_url(live.url("/ws", "ws"), extra_headers=bearer(live.mint("bob"))) as ws:
        await next_of_type(ws, "welcome")
    files.write(users=("alice", "bob", "dave"))
    assert await reload_now(live)
    assert "dave" in live.state.settings.users
    metrics = (await _get(live, "/metrics")).decode()
    assert 'realtime_reloads_total{result="error"} 1.0' in metrics
    assert 'realtime_reloads_total{result="ok"} 1.0' in metrics


async def test_scope_change_drops_the_subscription_not_the_socket(live: Running, files: Files) -> None:
    async with open_websocket_url(live.url("/ws", "ws"), extra_headers=bearer(live.mint(scope="chat:read news:read"))) as ws:
        await next_of_type(ws, "welcome")
        await ws.send_message(json.dumps({"type": "subscribe", "channel": "news:today", "id": 1}))
        assert (await next_of_type(ws, "ack"))["id"] == 1
        files.write(news_scope="news:premium")
        assert await reload_now(live)
        error = await next_of_type(ws, "error")
        assert error["code"] == "subscription_revoked"
        await ws.send_message(json.dumps({"type": "ping", "id": 2}))
        assert (await next_of_type(ws, "pong"))["id"] == 2


async def test_key_rotation_closes_nobody_and_new_tokens_use_the_new_kid(live: Running) -> None:
    old_kid = live.state.keyring.active.kid
    keys_dir = live.state.settings.server.state_dir / "keys"
    async with trio.open_nursery() as nursery:
        sockets = []
        for i in range(50):
            ws = await nursery.start(_connect, live.url("/ws", "ws"), live.mint("alice" if i % 2 else "bob"))
            sockets.append(ws)
        # What `realtime key rotate` does, then its SIGHUP.
        await trio.to_thread.run_sync(lambda: KeyRing.load(keys_dir).rotate(keys_dir, retire_after=3600))
        assert await reload_now(live)
        new_kid = live.state.keyring.active.kid
        assert new_kid != old_kid and old_kid in live.state.keyring.keys
        for ws in sockets:
            await ws.send_message(json.dumps({"type": "ping", "id": "k"}))
            assert (await next_of_type(ws, "pong"))["id"] == "k"
        fresh = live.mint()
        assert live.state.keyring.verify(fresh, issuer="https://localhost", audience="https://localhost").kid == new_kid
        jwks = json.loads(await _get(live, "/oauth2/jwks"))
        assert {k["kid"] for k in jwks["keys"]} >= {old_kid, new_kid}
        nursery.cancel_scope.cancel()


async def test_new_certificate_applies_to_new_handshakes_only(live: Running, files: Files) -> None:
    new_ca = trustme.CA()
    old_ctx = ssl.create_default_context()
    files.ca.configure_trust(old_ctx)
    new_ctx = ssl.create_default_context()
    new_ca.configure_trust(new_ctx)
    url = f"wss://localhost:{live.https.port}/ws"
    async with open_websocket_url(url, ssl_context=old_ctx, extra_headers=bearer(live.mint())) as before:
        await next_of_type(before, "welcome")
        new_ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(files.root / "server.pem"))
        assert await reload_now(live)
        async with open_websocket_url(url, ssl_context=new_ctx, extra_headers=bearer(live.mint())) as after:
            await next_of_type(after, "welcome")
        # A client that trusts only the old CA now fails the handshake.
        stream = await trio.open_ssl_over_tcp_stream("localhost", live.https.port, ssl_context=old_ctx)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as broken:
            await stream.do_handshake()
        assert isinstance(broken.value.__cause__, ssl.SSLCertVerificationError)
        await before.send_message(json.dumps({"type": "ping", "id": "live"}))
        assert (await next_of_type(before, "pong"))["id"] == "live"


async def test_watch_reloads_after_an_editor_style_rename(files: Files, start_server: Any) -> None:
    files.write(watch=True)
    server = await start_server(load_settings(files.config))
    done = server.server.reload_done
    tmp = files.root / "users.json.swp"
    tmp.write_text(json.dumps({"users": [{"name": "erin", "scopes": []}]}))
    tmp.replace(files.root / "users.json")
    with trio.fail_after(10):
        await done.wait()
    assert list(server.state.settings.users) == ["erin"]


async def _connect(url: str, token: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with open_websocket_url(url, extra_headers=bearer(token)) as ws:
        await next_of_type(ws, "welcome")
        task_status.started(ws)
        await trio.sleep_forever()


async def _get(server: Running, path: str) -> bytes:
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.get(server.url(path))
    assert response.status_code == 200, response.text
    return response.content
