"""Refresh families through a real server: retries within the
reuse grace racing over HTTP, the lost answer's access token at the
WebSocket gate, the family's absolute lifetime, and a password change
with ``realtime user passwd`` and the reload it triggers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from realtime.config.settings import App, Settings, User
from tests.helpers.oauth import CHEAP
from tests.helpers.server import Running, ServerProcess, realtime_cli, server_config
from tests.helpers.tokens import bearer

SECRET = "legacy-secret-" + "q" * 20
CLIENT = ("legacy", SECRET)
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1"}


def family_settings(make_settings: Callable[..., Settings], **oauth: Any) -> Settings:
    base = make_settings(oauth=oauth)
    app = App(name="Legacy", client_id="legacy", client_secret_hash=CHEAP.hash(SECRET),
              grant_types=("password", "refresh_token"), scopes=("chat:read", "chat:write"))
    users = {name: User(name=name, password_hash=CHEAP.hash(pw), scopes=("chat:read", "chat:write"))
             for name, pw in PASSWORDS.items()}
    return Settings(server=base.server, oauth=base.oauth, websocket=base.websocket, channels=base.channels,
                    apps={**base.apps, "legacy": app}, users=users)


async def sign_in(http: httpx.AsyncClient, base: str, user: str = "alice") -> dict[str, Any]:
    r = await http.post(f"{base}/oauth2/token", auth=CLIENT, data={
        "grant_type": "password", "username": user, "password": PASSWORDS[user], "scope": "chat:read"})
    assert r.status_code == 200, r.text
    return r.json()


async def refresh(http: httpx.AsyncClient, base: str, token: str) -> httpx.Response:
    return await http.post(f"{base}/oauth2/token", auth=CLIENT,
                           data={"grant_type": "refresh_token", "refresh_token": token})


async def expect_close(ws: Any, code: int) -> None:
    with trio.fail_after(5):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    assert closed.value.reason.code == code


async def gate_refuses(url: str, access_token: str) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, extra_headers=bearer(access_token)):
            pass
    assert rejected.value.status_code == 401


async def gate_admits(url: str, access_token: str) -> None:
    async with open_websocket_url(url, extra_headers=bearer(access_token)) as ws:
        assert json.loads(await ws.get_message())["type"] == "welcome"


async def test_a_retry_revokes_the_lost_answer_and_closes_its_socket(
        start_server: Any, make_settings: Callable[..., Settings]) -> None:
    live: Running = await start_server(family_settings(make_settings, refresh_reuse_grace=60.0))
    base, ws_url = live.url(""), live.url("/ws", "ws")
    async with httpx.AsyncClient() as http:
        t1 = await sign_in(http, base)
        lost = (await refresh(http, base, t1["refresh_token"])).json()  # the answer that "never arrived"
        async with open_websocket_url(ws_url, extra_headers=bearer(lost["access_token"])) as ws:
            assert json.loads(await ws.get_message())["type"] == "welcome"
            retry = await refresh(http, base, t1["refresh_token"])
            assert retry.status_code == 200, retry.text
            await expect_close(ws, 4003)
        await gate_refuses(ws_url, lost["access_token"])
        fresh = retry.json()
        await gate_admits(ws_url, fresh["access_token"])
        assert (await refresh(http, base, fresh["refresh_token"])).status_code == 200


async def test_a_retry_within_the_grace_is_logged_as_a_warning(
        start_server: Any, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    live: Running = await start_server(family_settings(make_settings, refresh_reuse_grace=60.0))
    base = live.url("")
    async with httpx.AsyncClient() as http:
        t1 = await sign_in(http, base)
        lost = await refresh(http, base, t1["refresh_token"])
        caplog.set_level("INFO", logger="realtime.oauth")
        retry = await refresh(http, base, t1["refresh_token"])
        assert lost.status_code == retry.status_code == 200
    [record] = [r for r in caplog.records if "reuse grace" in r.getMessage()]
    assert record.levelname == "WARNING" and record.name == "realtime.oauth"
    message = record.getMessage()
    assert "client_id=legacy" in message and "sub=alice" in message and "address=127.0.0.1" in message
    for token in (t1["refresh_token"], lost.json()["refresh_token"], retry.json()["refresh_token"]):
        assert token not in message


async def test_parallel_retries_have_one_winner_and_the_family_is_revoked(
        start_server: Any, make_settings: Callable[..., Settings]) -> None:
    """Count 1, four retries at once within the grace: the store lets exactly
    one through; the other three are retries beyond the count, so each is a
    reuse that revokes the family, the winner's new pair with it."""
    live: Running = await start_server(
        family_settings(make_settings, refresh_reuse_grace=60.0, refresh_reuse_count=1))
    base, ws_url = live.url(""), live.url("/ws", "ws")
    async with httpx.AsyncClient() as http:
        t1 = await sign_in(http, base)
        lost = (await refresh(http, base, t1["refresh_token"])).json()
        answers: list[httpx.Response] = []
        async with open_websocket_url(ws_url, extra_headers=bearer(lost["access_token"])) as ws:
            assert json.loads(await ws.get_message())["type"] == "welcome"

            async def retry() -> None:
                answers.append(await refresh(http, base, t1["refresh_token"]))

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(retry)
            await expect_close(ws, 4003)
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 400, 400, 400], [a.text for a in answers]
        assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
        winner = next(a.json() for a in answers if a.status_code == 200)
        await gate_refuses(ws_url, lost["access_token"])
        await gate_refuses(ws_url, winner["access_token"])
        assert (await refresh(http, base, winner["refresh_token"])).status_code == 400
        other = await sign_in(http, base, "bob")  # nobody else is touched
        await gate_admits(ws_url, other["access_token"])


async def test_a_family_ends_at_its_absolute_lifetime(
        start_server: Any, make_settings: Callable[..., Settings]) -> None:
    live: Running = await start_server(family_settings(make_settings, refresh_family_ttl=3600.0))
    clock = [live.state.oauth.clock()]
    live.state.oauth.clock = lambda: clock[0]  # the server's injected clock
    base = live.url("")
    async with httpx.AsyncClient() as http:
        tok = await sign_in(http, base)
        clock[0] += 3599
        r = await refresh(http, base, tok["refresh_token"])
        assert r.status_code == 200
        clock[0] += 1
        r = await refresh(http, base, r.json()["refresh_token"])
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


# -- a password change, with the real commands and a server process ----------------

CONFIG = server_config()


async def test_passwd_and_reload_end_the_users_refresh_families(tmp_path: Path, nursery: trio.Nursery) -> None:
    conf = tmp_path / "realtime.toml"
    conf.write_text(CONFIG)
    (tmp_path / "users.json").write_text('{"users": []}')
    added = realtime_cli(conf, "app", "add", "legacy", "--grant", "password", "refresh_token",
                         "--scope", "chat:read", "chat:write")
    client = (re.search(r"^client_id: (\S+)$", added, re.M).group(1),
              re.search(r"^client_secret: (\S+)$", added, re.M).group(1))
    for name in ("alice", "bob"):
        realtime_cli(conf, "user", "add", name, "--password-stdin", "--scope", "chat:read", stdin=f"{PASSWORDS[name]}\n")
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(conf)], tmp_path)
    base, ws_url = f"http://{bound['http']}", f"ws://{bound['http']}/ws"
    async with httpx.AsyncClient(auth=client) as http:
        async def token(data: dict[str, str]) -> httpx.Response:
            return await http.post(f"{base}/oauth2/token", data=data)

        def password_grant(name: str) -> dict[str, str]:
            return {"grant_type": "password", "username": name, "password": PASSWORDS[name]}

        alice = (await token(password_grant("alice"))).json()
        bob = (await token(password_grant("bob"))).json()
        async with open_websocket_url(ws_url, extra_headers=bearer(alice["access_token"])) as ws:
            assert json.loads(await ws.get_message())["type"] == "welcome"
            # `user passwd` rewrites users.json and signals the server, which reloads.
            realtime_cli(conf, "user", "passwd", "alice", "--password-stdin", stdin="alice-password-2\n")
            await server.wait_for_line("reload (SIGHUP) applied")
            r = await token({"grant_type": "refresh_token", "refresh_token": alice["refresh_token"]})
            assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
            await expect_close(ws, 4003)  # the family's access token went with it
        await gate_refuses(ws_url, alice["access_token"])
        r = await token({"grant_type": "refresh_token", "refresh_token": bob["refresh_token"]})
        assert r.status_code == 200
        # A new sign-in with the new password starts a family that works.
        new_password = {"grant_type": "password", "username": "alice", "password": "alice-password-2"}
        fresh = (await token(new_password)).json()
        r = await token({"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]})
        assert r.status_code == 200
