"""``/metrics`` access and label cardinality, with a real
server: open by default (SPEC §3), a bearer token with ``[metrics] scope``
when it is set (401/403 as RFC 6750 §3), and close codes a peer chose
folded into one ``other`` label."""

from __future__ import annotations

import httpx
import trio

from realtime.config.settings import MetricsSettings
from realtime.protocol.close import CloseCode
from tests.helpers.server import Running


async def _get(running: Running, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.get(running.url("/metrics"), headers=headers)


async def test_metrics_are_open_by_default(running: Running) -> None:
    with trio.fail_after(10):
        response = await _get(running)
    assert response.status_code == 200
    assert "realtime_connections_open" in response.text


async def test_a_metrics_scope_requires_a_bearer_token_holding_it(start_server, make_settings) -> None:
    running = await start_server(make_settings(metrics=MetricsSettings(scope="metrics:read")))
    with trio.fail_after(20):
        missing = await _get(running)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith('Bearer realm="realtime"')
        assert missing.json()["error"] == "invalid_token"
        assert "realtime_" not in missing.text

        bad = await _get(running, "not-a-token")
        assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]

        lacking = await _get(running, running.mint("alice", "chat:read"))
        assert lacking.status_code == 403
        assert lacking.json()["error"] == "insufficient_scope"
        assert 'scope="metrics:read"' in lacking.headers["www-authenticate"]

        # What Prometheus' oauth2 (client_credentials) sends: the client's own token.
        scraper = running.mint("chat-app", "metrics:read", client_id="chat-app")
        allowed = await _get(running, scraper)
        assert allowed.status_code == 200, allowed.text
        assert "realtime_connections_open" in allowed.text


async def test_close_codes_chosen_by_peers_share_one_label(running: Running) -> None:
    closes = running.state.metrics.closes
    closes[CloseCode.SLOW_CONSUMER] += 2
    closes[1000] += 1
    for code in range(4100, 4400):  # what a peer could send, one close each
        closes[code] += 1
    with trio.fail_after(10):
        text = (await _get(running)).text
    lines = [line for line in text.splitlines() if line.startswith("realtime_closes_total")]
    assert sorted(lines) == sorted([
        'realtime_closes_total{code="1000"} 1.0',
        'realtime_closes_total{code="4009"} 2.0',
        'realtime_closes_total{code="other"} 300.0',
    ])
