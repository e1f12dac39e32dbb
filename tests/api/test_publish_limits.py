"""``/api/publish`` limits with a real server: the rate per
principal (429, ``Retry-After``, a JSON error) and the ``data`` cap (413);
and the issue's new config keys, read from a real file."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from realtime.api.app import App
from realtime.config.load import ConfigError, load_settings
from realtime.config.settings import ApiSettings
from tests.helpers.ws import api_publish


async def test_publish_rate_is_per_principal_and_answers_429(start_server, make_settings) -> None:
    running = await start_server(make_settings(api=ApiSettings(publish_rate="3/m")))
    now = [1000.0]
    state: App = running.state
    state.monotonic = lambda: now[0]
    first, second = running.mint("alice"), running.mint("alice")  # two tokens, one principal
    with trio.fail_after(20):
        for token in (first, second, first):
            assert (await api_publish(running, "chat:x", "hi", token)).status_code == 200
        refused = await api_publish(running, "chat:x", "hi", second)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert refused.headers["retry-after"] == "20"  # one publish comes back every 20 s
        assert refused.headers["content-type"] == "application/json"
        # Another client_id is another principal.
        other = running.mint("alice", client_id="other-app")
        assert (await api_publish(running, "chat:x", "hi", other)).status_code != 429
        now[0] += 20
        assert (await api_publish(running, "chat:x", "hi", first)).status_code == 200
        assert (await api_publish(running, "chat:x", "hi", first)).status_code == 429


async def test_data_is_capped_at_max_message_bytes(start_server, make_settings) -> None:
    running = await start_server(make_settings(websocket={"max_message_bytes": 1000}))
    token = running.mint("alice")
    with trio.fail_after(20):
        # '"' + 998 x + '"' is exactly 1000 bytes of JSON: allowed.
        assert (await api_publish(running, "chat:x", "x" * 998, token)).status_code == 200
        refused = await api_publish(running, "chat:x", "x" * 999, token)
        assert refused.status_code == 413
        assert refused.json()["error"] == "too_large"
        # Measured as the server encodes it (UTF-8, not \\u escapes).
        assert (await api_publish(running, "chat:x", "é" * 499, token)).status_code == 200
        assert (await api_publish(running, "chat:x", {"k": ["é" * 600]}, token)).status_code == 413


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "realtime.toml"
    path.write_text(text)
    return path


def test_the_issue_18_keys_are_read(tmp_path: Path) -> None:
    settings = load_settings(_conf(tmp_path, """
[websocket]
message_rate = "20/s"
join_leave_debounce = "250ms"
max_history_bytes = 1000000
max_idle_channels = 10

[[channel]]
pattern = "c:*"
history_bytes = 5000

[api]
publish_rate = "5/m"

[metrics]
scope = "metrics:read"
"""))
    ws = settings.websocket
    assert (ws.message_rate, ws.join_leave_debounce, ws.max_history_bytes, ws.max_idle_channels) == (
        "20/s", 0.25, 1_000_000, 10)
    assert settings.channels[0].history_bytes == 5000
    assert settings.api.publish_rate == "5/m"
    assert settings.metrics.scope == "metrics:read"
    defaults = load_settings(_conf(tmp_path, ""))
    assert (defaults.websocket.message_rate, defaults.websocket.join_leave_debounce) == ("100/s", 0.5)
    assert (defaults.websocket.max_history_bytes, defaults.websocket.max_idle_channels) == (64 << 20, 1000)
    assert (defaults.api.publish_rate, defaults.metrics.scope) == ("50/s", None)


@pytest.mark.parametrize(("text", "key"), [
    ('[websocket]\nmessage_rate = "fast"\n', "websocket.message_rate"),
    ('[websocket]\njoin_leave_debounce = "soon"\n', "websocket.join_leave_debounce"),
    ("[websocket]\nmax_history_bytes = -1\n", "websocket.max_history_bytes"),
    ('[websocket]\nmax_idle_channels = "many"\n', "websocket.max_idle_channels"),
    ('[[channel]]\npattern = "c:*"\nhistory_bytes = -5\n', "channel[1].history_bytes"),
    ('[api]\npublish_rate = "0/s"\n', "api.publish_rate"),
    ('[api]\nburst = 3\n', "api.burst"),
    ('[metrics]\nscope = "two words"\n', "metrics.scope"),
])
def test_a_bad_value_names_file_line_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _conf(tmp_path, "\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [issue] = caught.value.issues
    assert issue.file == path and issue.key == key and issue.line is not None and issue.line >= 2, issue
