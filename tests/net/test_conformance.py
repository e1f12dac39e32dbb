"""The echo endpoint, and Autobahn|Testsuite against a real server.

``[websocket] echo_path`` is token-gated like ``/ws`` and echoes every
text or binary message through the same session, outbound path and TLS
as channel messages, so the conformance suite tests what users run.

The Autobahn run uses the shared harness (``../shared/conformance``, or
``$REALTIME_AUTOBAHN_DIR``).  It never skips: when the Python 2.7 venv with
``wstest`` is missing, ``run_autobahn.sh`` installs it with
``setup_autobahn.sh`` (about a minute; needs root for apt and network
access to deb.debian.org and PyPI only).
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.helpers.server import Running
from tests.helpers.tokens import bearer

ECHO = "/ws-echo"
# Autobahn's 9.* cases send messages of up to 16 MiB and expect them back.
ECHO_WS = {"echo_path": ECHO, "max_message_bytes": 32 << 20, "max_backlog_bytes": 64 << 20}

HARNESS = Path(os.environ.get("REALTIME_AUTOBAHN_DIR", Path(__file__).resolve().parents[3] / "shared" / "conformance"))


@pytest.fixture
async def echo_server(start_server, make_settings) -> Running:
    return await start_server(make_settings(websocket=ECHO_WS))


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_echo_text_and_binary(echo_server: Running, client_ssl: ssl.SSLContext, scheme: str) -> None:
    if scheme == "ws":
        url, ctx = echo_server.url(ECHO, "ws"), None
    else:
        url, ctx = f"wss://localhost:{echo_server.https.port}{ECHO}", client_ssl
    # A token with no channel scope is enough for the echo endpoint.
    token = echo_server.mint(scope="profile")
    async with open_websocket_url(url, ssl_context=ctx, extra_headers=bearer(token)) as ws:
        with trio.fail_after(10):
            for text in ("hello", "ünïcødé ✓", "", "x" * 70_000):
                await ws.send_message(text)
                assert await ws.get_message() == text
            for blob in (b"\x00\xff\x10", b"", bytes(range(256)) * 1000):
                await ws.send_message(blob)
                assert await ws.get_message() == blob


async def test_echo_is_token_gated_and_off_by_default(echo_server: Running, running: Running) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(echo_server.url(ECHO, "ws")):
            pass
    assert rejected.value.status_code == 401
    # Not configured: the path is an ordinary unknown URL.
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(running.url(ECHO, "ws"), extra_headers=bearer(running.mint())):
            pass
    assert rejected.value.status_code == 404


SUMMARY = re.compile(r"^autobahn: OK=(\d+) NON-STRICT=(\d+) INFORMATIONAL=(\d+) UNIMPLEMENTED=(\d+) FAILED=(\d+) of (\d+)$", re.M)


@pytest.mark.timeout(360)
async def test_autobahn_default_cases(echo_server: Running, tmp_path: Path) -> None:
    script = HARNESS / "run_autobahn.sh"
    assert script.exists(), f"Autobahn harness not found at {HARNESS} (set REALTIME_AUTOBAHN_DIR)"
    token = echo_server.mint(scope="chat:read", ttl=3600)
    result = await trio.run_process(
        ["bash", str(script), echo_server.url(ECHO, "ws"), "-H", f"Authorization: Bearer {token}",
         "-a", "realtime", "-o", str(tmp_path / "autobahn")],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    out = result.stdout.decode(errors="replace")
    report = out + "\n" + result.stderr.decode(errors="replace")[-4000:]
    print(out)
    match = SUMMARY.search(out)
    assert match, report
    ok, _nonstrict, _info, _unimpl, failed, total = map(int, match.groups())
    assert result.returncode == 0, report
    assert failed == 0 and total >= 247 and ok > 200, report
    assert "FAILED BY CLIENT" not in out, report  # we close the TCP connection ourselves
