"""Idempotent ``/api/publish`` (SPEC §11) on one node: a key seen within
``[api] idempotency_window`` answers the first result again and publishes
nothing; keys are per principal; bad keys are a 400; the window is read
from the config file (two nodes: tests/api/test_admin_api_nodes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import trio

from realtime.config.load import ConfigError, load_settings
from realtime.config.settings import ApiSettings, Settings
from tests.helpers.server import Running
from tests.helpers.ws import call, connect, quiet, recv


async def publish(running: Running, token: str, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(running.url("/api/publish"), json={"channel": "chat:i", "data": 1, **body},
                                 headers={"authorization": f"Bearer {token}"})


async def test_a_repeated_key_answers_again_and_publishes_nothing(running: Running) -> None:
    token = running.mint()
    with trio.fail_after(10):
        async with connect(running, "bob", "chat:read") as bob:
            assert (await call(bob, type="subscribe", id=1, channel="chat:i"))["type"] == "ack"
            first = await publish(running, token, data="once", idempotency_key="k-1")
            assert first.status_code == 200 and first.json() == {"delivered": 1, "seq": 1}
            again = await publish(running, token, data="twice?", idempotency_key="k-1")
            assert again.status_code == 200 and again.json() == first.json()
            assert again.headers["idempotent-replayed"] == "true"
            assert (await recv(bob))["data"] == "once"
            await quiet(bob)  # nothing published the second time
            # Another key, or no key, publishes.
            assert (await publish(running, token, data="other", idempotency_key="k-2")).json()["seq"] == 2
            assert (await publish(running, token, data="plain")).json()["seq"] == 3
            # The same key from another principal is its own.
            someone_else = running.mint(sub="bob", scope="chat:write")
            assert (await publish(running, someone_else, data="bob's", idempotency_key="k-1")).json()["seq"] == 4
            assert [(await recv(bob))["data"] for _ in range(3)] == ["other", "plain", "bob's"]


async def test_a_failed_publish_does_not_keep_its_key(running: Running) -> None:
    token = running.mint()
    refused = await publish(running, running.mint(scope="chat:read"), idempotency_key="k")
    assert refused.status_code == 403
    assert (await publish(running, token, idempotency_key="k")).status_code == 200


async def test_the_window_ends(start_server: Callable[..., Any], make_settings: Callable[..., Settings]) -> None:
    running = await start_server(make_settings(api=ApiSettings(idempotency_window=60.0)))
    now = [1000.0]
    running.state.monotonic = lambda: now[0]
    token = running.mint()
    assert (await publish(running, token, idempotency_key="w")).json()["seq"] == 1
    now[0] += 59
    assert (await publish(running, token, idempotency_key="w")).json()["seq"] == 1
    now[0] += 2
    assert (await publish(running, token, idempotency_key="w")).json()["seq"] == 2


@pytest.mark.parametrize("key", ["", 5, "x" * 129, "é" * 65])
async def test_a_bad_key_is_a_400(running: Running, key: Any) -> None:
    answer = await publish(running, running.mint(), idempotency_key=key)
    assert answer.status_code == 400 and "idempotency_key" in answer.json()["error_description"]


def test_the_window_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "realtime.toml"
    path.write_text('[api]\nidempotency_window = "90s"\n')
    assert load_settings(path).api.idempotency_window == 90
    path.write_text("")
    assert load_settings(path).api.idempotency_window == 300
    path.write_text('\n[api]\nidempotency_window = "soon"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [issue] = caught.value.issues
    assert issue.file == path and issue.key == "api.idempotency_window" and issue.line == 3
