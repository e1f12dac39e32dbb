"""The real command: `python -m realtime serve` in a subprocess, real
signals, the log line that tells the bound address, the pid file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from realtime.tokens.keyring import KeyRing, issue_access_token
from tests.helpers.server import CONFIG, ServerProcess, write_conf


async def test_sigterm_closes_sockets_with_1001_and_exits_0(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    state_dir = tmp_path / "conf" / "var"
    assert int((state_dir / "realtime.pid").read_text()) == server.proc.pid
    ring = KeyRing.load(state_dir / "keys")
    assert oct((state_dir / "keys").stat().st_mode & 0o777) == "0o700"
    token, _ = issue_access_token(ring, issuer="https://localhost", audience="https://localhost", sub="alice",
                                  client_id="chat-app", scope=["chat:read"], ttl=60)
    host, port = bound["http"].rsplit(":", 1)
    async with open_websocket_url(f"ws://{host}:{port}/ws",
                                  extra_headers=[(b"authorization", f"Bearer {token}".encode())]) as ws:
        assert json.loads(await ws.get_message())["type"] == "welcome"
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1001
    with trio.fail_after(10):
        assert await server.proc.wait() == 0
    assert not (state_dir / "realtime.pid").exists()


async def test_no_config_starts_on_embedded_default(tmp_path: Path, nursery: trio.Nursery) -> None:
    server, bound = await ServerProcess.start(
        nursery, ["serve", "-c", str(tmp_path / "absent.toml"), "--http", "127.0.0.1:0",
                  "--https", "127.0.0.1:0", "--state-dir", str(tmp_path / "state")], tmp_path)
    assert any("embedded default" in line for line in server.lines)
    assert (tmp_path / "state" / "selfsigned.pem").exists()
    assert set(bound) == {"http", "https"}
    server.proc.send_signal(signal.SIGINT)
    with trio.fail_after(10):
        assert await server.proc.wait() == 0


async def test_sighup_reloads_and_bad_file_keeps_running_config(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    (tmp_path / "conf" / "apps.toml").write_text("[[app]\nbroken")
    reload = subprocess.run([sys.executable, "-m", "realtime", "reload", "-c", str(config)],
                            capture_output=True, text=True, cwd=tmp_path)
    # The CLI refuses to signal when the files are bad, and says why.
    assert reload.returncode == 1 and "apps.toml" in reload.stderr
    server.proc.send_signal(signal.SIGHUP)
    rejected = await server.wait_for_line("reload (SIGHUP) rejected")
    assert "apps.toml:1" in rejected
    server.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await server.proc.wait() == 0


def test_check_reports_file_line_and_key(tmp_path: Path) -> None:
    config = write_conf(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "realtime", "check", "-c", str(config)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    config.write_text(CONFIG.replace("ping_interval = 0", "ping_intervall = 0"))
    bad = subprocess.run([sys.executable, "-m", "realtime", "check", "-c", str(config)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "realtime.toml:14: websocket.ping_intervall: unknown key (did you mean 'ping_interval'?)" in bad.stderr


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "realtime", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"realtime {version('realtime')}\n"
