"""The device flow's client side against a real server over HTTP: the
Python client (realtime.client.device) polling the real token endpoint
(pending, slow_down, denied, expired, the tokens once), and
``realtime listen --device`` end to end.

The server's OAuth clock is a fake one the client's ``sleep`` moves, so
the 5-second interval and the 10-minute expiry pass without waiting;
only the ``listen --device`` test, a separate process, waits out one real
interval.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable

import httpx
import pytest
import trio

from realtime.client import AuthError, DeviceCode, DeviceLogin, Endpoint, poll_for_tokens, request_device_code
from realtime.config.settings import Settings
from tests.helpers.device import DEVICE_GRANT, approve_over_http, device_settings

PASSWORD = "alice-pass-1234"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return device_settings(make_settings(server={"https": None}), PASSWORD)


class FakeClock:
    """The server's OAuth clock; the client's sleep moves it, by
    ``pace`` times what was asked (< 1: a client that polls too fast)."""

    def __init__(self) -> None:
        self.now = time.time()
        self.asked: list[float] = []
        self.pace = 1.0
        self.on_sleep: Callable[[int], Any] | None = None

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds * self.pace
        if self.on_sleep is not None:
            await self.on_sleep(len(self.asked))


@pytest.fixture
async def served(start_server: Any, settings: Settings) -> tuple[str, FakeClock]:
    running = await start_server(settings)
    clock = FakeClock()
    running.state.oauth.clock = lambda: clock.now
    return running.url("").rstrip("/"), clock


async def test_pending_then_tokens_once(served: tuple[str, FakeClock]) -> None:
    origin, clock = served
    endpoint = Endpoint(origin, "tv")
    code = await request_device_code(endpoint, "chat:read offline_access")
    assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", code.user_code) and code.interval == 5 and code.expires_in == 600
    assert code.verification_uri == "https://localhost/device"
    assert "device_code" not in repr(code) and code.device_code not in repr(code)

    async def approve_after_two_polls(polls: int) -> None:
        if polls == 3:  # two polls answered authorization_pending
            assert "Device connected" in await approve_over_http(origin, code.user_code, PASSWORD)

    clock.on_sleep = approve_after_two_polls
    tokens = await poll_for_tokens(endpoint, code, sleep=clock.sleep)
    assert clock.asked == [5, 5, 5]
    assert tokens["access_token"] and tokens["refresh_token"] and "offline_access" in tokens["scope"]
    # Once: the same device code again is refused.
    async with httpx.AsyncClient(base_url=origin) as http:
        again = await http.post("/oauth2/token", data={"grant_type": DEVICE_GRANT, "client_id": "tv",
                                                        "device_code": code.device_code})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_a_client_polling_too_fast_is_slowed_down(served: tuple[str, FakeClock]) -> None:
    origin, clock = served
    endpoint = Endpoint(origin, "tv")
    code = await request_device_code(endpoint)
    clock.pace = 0.5  # each wait is half what the client meant: every poll after the first is too fast

    async def approve_late(polls: int) -> None:
        if polls == 4:
            clock.pace = 1.0
            await approve_over_http(origin, code.user_code, PASSWORD)

    clock.on_sleep = approve_late
    await poll_for_tokens(endpoint, code, sleep=clock.sleep)
    # Waits asked for (and what passed at the server): 5 (2.5, the first poll: pending),
    # 5 (2.5: slow_down), 10 (5 < 10: slow_down), 15 (approved meanwhile: slow_down is a
    # kind of authorization_pending, RFC 8628 §3.5, so the tokens).
    assert clock.asked == [5, 5, 10, 15]


async def test_denied(served: tuple[str, FakeClock]) -> None:
    origin, clock = served
    endpoint = Endpoint(origin, "tv")
    code = await request_device_code(endpoint)

    async def deny(polls: int) -> None:
        if polls == 2:
            assert "denied" in await approve_over_http(origin, code.user_code, PASSWORD, "deny")

    clock.on_sleep = deny
    with pytest.raises(AuthError, match="denied"):
        await poll_for_tokens(endpoint, code, sleep=clock.sleep)


async def test_expired(served: tuple[str, FakeClock]) -> None:
    origin, clock = served
    endpoint = Endpoint(origin, "tv")
    code = await request_device_code(endpoint)
    with pytest.raises(AuthError, match="expired"):
        await poll_for_tokens(endpoint, DeviceCode(code.device_code, code.user_code, code.verification_uri,
                                                   None, code.expires_in, 601), sleep=clock.sleep)


async def test_refused_request_and_unknown_app(served: tuple[str, FakeClock]) -> None:
    origin, _ = served
    with pytest.raises(AuthError, match="unauthorized_client"):
        await request_device_code(Endpoint(origin, "chat-app"))
    with pytest.raises(AuthError, match="invalid_client"):
        await request_device_code(Endpoint(origin, "nope"))


async def test_device_login_provider_signs_in_once_then_refreshes(served: tuple[str, FakeClock]) -> None:
    origin, clock = served
    shown: list[DeviceCode] = []

    async def approve(polls: int) -> None:
        if polls == 1:
            await approve_over_http(origin, shown[0].user_code, PASSWORD)

    clock.on_sleep = approve
    provider = DeviceLogin(Endpoint(origin, "tv"), shown.append, scope="chat:read offline_access", sleep=clock.sleep)
    first = await provider.token()
    assert len(shown) == 1 and first
    second = await provider.refresh()  # with the refresh token, no second code
    assert second != first and len(shown) == 1


async def test_listen_device_end_to_end(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    origin = running.url("").rstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    cmd = [sys.executable, "-m", "realtime", "listen", "--device", "--url", origin, "--client-id", "tv",
           "--scope", "chat:read", "--count", "1", "--history", "chat:device"]
    proc = await trio.lowlevel.open_process(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with trio.fail_after(60):
            assert proc.stderr is not None and proc.stdout is not None
            seen = b""
            while b"enter the code" not in seen or b"\n" not in seen.split(b"enter the code", 1)[1]:
                chunk = await proc.stderr.receive_some()
                assert chunk, seen
                seen += chunk
            match = re.search(rb"open (\S+) and enter the code ([B-Z]{4}-[B-Z]{4})", seen)
            assert match and match.group(1) == b"https://localhost/device", seen
            await approve_over_http(origin, match.group(2).decode(), PASSWORD)
            # The client polls after the real 5-second interval, then subscribes.
            while not running.state.hub.connections.by_client("tv"):
                await trio.sleep(0.1)  # waiting on another process: a bounded poll
            # --history: the message reaches it whether it subscribed yet or not.
            running.state.hub.publish("chat:device", {"text": "hi"}, from_sub="bob", scopes=frozenset({"chat:write"}))
            out = b""
            while b"\n" not in out:
                chunk = await proc.stdout.receive_some()
                assert chunk, out
                out += chunk
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    message = json.loads(out.splitlines()[0])
    assert message["channel"] == "chat:device" and message["data"] == {"text": "hi"}
