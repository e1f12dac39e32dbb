"""realtime.client against a real server: tokens, in-band refresh, reconnect
with `since` recovery, fatal errors, and the `listen` / `publish` commands."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import attrs
import pytest
import trio

from realtime.client import (
    AuthError,
    ChannelError,
    ClientCredentials,
    RefreshToken,
    connect,
    http_request,
    ws_url_for,
)
from realtime.oauth.passwords import hash_secret
from realtime.config.settings import App, Settings, User
from realtime.protocol.close import CloseCode

SECRET = "s3cret-for-tests-only-5b1f"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"secret": hash_secret(SECRET), "password": hash_secret(PASSWORD)}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], hashes: dict[str, str]) -> Settings:
    """A confidential app with short-lived tokens, and a user who can log in."""
    base = make_settings(websocket={"expiry_warning": 2.0})
    apps = dict(base.apps)
    apps["svc"] = App(
        name="Service", client_id="svc", client_secret_hash=hashes["secret"],
        grant_types=("client_credentials", "password", "refresh_token"),
        scopes=("chat:read", "chat:write", "notify"), access_token_ttl=3.0,
    )
    users = dict(base.users)
    users["dora"] = User(name="dora", password_hash=hashes["password"], scopes=("chat:read", "chat:write"))
    return attrs.evolve(base, apps=apps, users=users)


async def next_message(client: Any, timeout: float = 10.0) -> Any:
    with trio.fail_after(timeout):
        return await client.__anext__()


def test_ws_url_for() -> None:
    assert ws_url_for("https://localhost:8443") == "wss://localhost:8443/ws"
    assert ws_url_for("http://127.0.0.1:8080/", "/live") == "ws://127.0.0.1:8080/live"
    assert ws_url_for("wss://h/custom") == "wss://h/custom"
    with pytest.raises(ValueError):
        ws_url_for("ftp://h")


async def test_refreshes_in_band_and_keeps_the_socket(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["chat:room"]) as client:
        await client.wait_until(lambda c: c.connected, timeout=10)
        assert client.sub == "svc"
        seq = await client.publish("chat:room", {"text": "hello"})
        message = await next_message(client)
        assert (message.channel, message.seq, message.sender, message.data) == ("chat:room", seq, "svc", {"text": "hello"})
        # 3 s tokens, warned 2 s ahead: two refreshes pass within seconds.
        await client.wait_until(lambda c: c.refreshes >= 2, timeout=20)
        assert client.connects == 1, "a refresh must not reconnect"
        assert client.expires_at > time.time()  # moved by `refreshed`
        seq2 = await client.publish("chat:room", {"text": "still here"})
        assert (await next_message(client)).seq == seq2 == seq + 1


@pytest.mark.parametrize("code", [CloseCode.TOKEN_EXPIRED, CloseCode.ABORT, CloseCode.REVOKED])
async def test_reconnects_and_recovers_with_since(start_server: Any, settings: Settings, code: int) -> None:
    running = await start_server(settings)
    hub = running.state.hub
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["chat:rec"], min_backoff=0.05) as client:
        await client.wait_until(lambda c: c.connected, timeout=10)
        await client.publish("chat:rec", "one")
        assert (await next_message(client)).data == "one"
        # Close the live connection and publish while it is going: the
        # withdrawn session takes no more frames, so these two can only
        # arrive through the `since` replay after the reconnect.
        (conn,) = hub.connections.by_sub("svc")
        conn.withdraw(code, "test")
        scopes = frozenset({"chat:write"})
        hub.publish("chat:rec", "two", from_sub="svc", scopes=scopes)
        hub.publish("chat:rec", "three", from_sub="svc", scopes=scopes)
        got = [await next_message(client), await next_message(client)]
        assert [(m.data, m.seq) for m in got] == [("two", 2), ("three", 3)]
        assert client.connects == 2
        assert client.gaps == 0
        assert client.last_close == code  # ABORT is 1006: what a dropped socket reads as
        # Live messages carry on after the replay, no duplicates.
        await client.publish("chat:rec", "four")
        assert (await next_message(client)).seq == 4


async def test_gap_reported_when_history_is_gone(start_server: Any, settings: Settings) -> None:
    """A server that no longer has what came after our position (here: more
    was published than it keeps) is reported as a gap, not hidden."""
    running = await start_server(settings)
    hub = running.state.hub
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["chat:gap"], min_backoff=0.05) as client:
        await client.wait_until(lambda c: c.connected, timeout=10)
        await client.publish("chat:gap", 0)
        await next_message(client)
        (conn,) = hub.connections.by_sub("svc")
        conn.withdraw(CloseCode.ABORT, "test")
        for n in range(1, 106):  # history keeps 100
            hub.publish("chat:gap", n, from_sub="svc", scopes=frozenset({"chat:write"}))
        first = await next_message(client)
        assert first.seq == 7  # the oldest kept: 106 - 100 + 1
        await client.wait_until(lambda c: c.gaps == 1, timeout=5)


async def test_refresh_token_provider_rotates(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    resp = await http_request(
        "POST", running.url("/oauth2/token"),
        headers=[("content-type", "application/x-www-form-urlencoded")],
        body=f"grant_type=password&username=dora&password={PASSWORD.replace(' ', '+')}"
             f"&client_id=svc&client_secret={SECRET}".encode(),
    )
    assert resp.status == 200, resp.body
    rotated: list[str] = []
    tokens = RefreshToken(running.url(""), "svc", resp.json()["refresh_token"], client_secret=SECRET,
                          on_rotate=rotated.append)
    async with connect(running.url(""), tokens, ["chat:dora"]) as client:
        await client.wait_until(lambda c: c.refreshes >= 1, timeout=20)
        assert client.sub == "dora"
        assert client.connects == 1
    assert len(rotated) >= 2 and len(set(rotated)) == len(rotated)


async def test_wrong_secret_ends_with_auth_error(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    tokens = ClientCredentials(running.url(""), "svc", "wrong")
    async with connect(running.url(""), tokens, ["chat:x"]) as client:
        with trio.fail_after(10), pytest.raises(AuthError, match="invalid_client"):
            await client.__anext__()
    assert "wrong" not in repr(tokens)


async def test_refused_channel_ends_with_channel_error(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["news:x"]) as client:
        with trio.fail_after(10), pytest.raises(ChannelError) as info:
            await client.__anext__()
    assert info.value.code == "forbidden"


async def test_unreachable_server_keeps_retrying() -> None:
    """No server at all: the client backs off and retries; it neither hangs
    on one attempt nor gives up."""
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    tries = CountingCredentials(url, "svc", SECRET)
    async with connect(url, tries, ["chat:x"], min_backoff=0.01, max_backoff=0.02) as client:
        with trio.fail_after(10):
            await tries.reached.wait()
        assert not client.connected


class CountingCredentials(ClientCredentials):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.attempts = 0
        self.reached = trio.Event()

    async def _renew(self) -> str:
        self.attempts += 1
        if self.attempts >= 3:
            self.reached.set()
        return await super()._renew()


def _env(running: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.update(REALTIME_URL=running.url(""), REALTIME_CLIENT_ID="svc", REALTIME_CLIENT_SECRET=SECRET)
    return env


async def test_cli_publish_and_listen(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    env = _env(running)
    cmd = [sys.executable, "-m", "realtime"]
    done: dict[str, Any] = {}

    async def listen() -> None:
        done["listen"] = await trio.run_process(
            cmd + ["listen", "chat:cli", "--history", "--count", "1"], env=env,
            capture_stdout=True, capture_stderr=True, check=False)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            # `--history` makes the order of the two commands irrelevant: the
            # listener replays what the channel keeps, then follows it.
            nursery.start_soon(listen)
            pub = await trio.run_process(cmd + ["publish", "chat:cli", '{"text": "from the shell"}'], env=env,
                                         capture_stdout=True, capture_stderr=True, check=False)
            assert pub.returncode == 0, pub.stderr
            assert json.loads(pub.stdout)["seq"] == 1
    got = done["listen"]
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"channel": "chat:cli", "seq": 1, "from": "svc", "data": {"text": "from the shell"}}
    for blob in (pub.stdout, pub.stderr, got.stdout, got.stderr):
        assert SECRET.encode() not in blob


async def test_cli_publish_errors(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    cmd = [sys.executable, "-m", "realtime", "publish"]
    env = _env(running)
    bad_json = await trio.run_process(cmd + ["chat:x", "hello"], env=env, capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert bad_json.returncode == 2 and b"not JSON" in bad_json.stderr
    env_bad = dict(env, REALTIME_CLIENT_SECRET="nope-" + SECRET)
    refused = await trio.run_process(cmd + ["chat:x", "1"], env=env_bad, capture_stdout=True,
                                     capture_stderr=True, check=False)
    assert refused.returncode == 1 and b"invalid_client" in refused.stderr
    assert SECRET.encode() not in refused.stderr + refused.stdout
    forbidden = await trio.run_process(cmd + ["news:x", "1"], env=env, capture_stdout=True,
                                       capture_stderr=True, check=False)
    assert forbidden.returncode == 1 and b"insufficient_scope" in forbidden.stderr
    none = await trio.run_process(cmd + ["chat:x", "1"], env={k: v for k, v in env.items() if "CLIENT" not in k},
                                  capture_stdout=True, capture_stderr=True, check=False)
    assert none.returncode == 2 and b"no credentials" in none.stderr
