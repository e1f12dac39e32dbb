"""``realtime connections | disconnect | revoke`` as real commands against a
running server, through its control socket (no token)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.helpers.server import Running
from tests.helpers.ws import connect, recv


async def realtime(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([sys.executable, "-m", "realtime", *args], capture_stdout=True,
                                  capture_stderr=True, check=False)


def state_dir(running: Running) -> str:
    return str(running.state.settings.server.state_dir)


async def test_the_control_socket_is_the_operators_only(running: Running) -> None:
    sock = Path(state_dir(running)) / "control.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600


async def test_connections_disconnect_revoke(running: Running) -> None:
    with trio.fail_after(30):
        async with connect(running) as alice, connect(running, "bob", "chat:read"):
            listed = await realtime("connections", "--state-dir", state_dir(running))
            assert listed.returncode == 0, listed.stderr
            out = listed.stdout.decode()
            assert out.splitlines()[0].split()[:3] == ["ID", "SUB", "CLIENT_ID"]
            assert " alice " in out and " bob " in out
            only_bob = (await realtime("connections", "--sub", "bob", "--state-dir", state_dir(running))).stdout
            assert b" alice " not in only_bob and b" bob " in only_bob

            done = await realtime("disconnect", "--sub", "alice", "--state-dir", state_dir(running))
            assert done.returncode == 0 and done.stdout == b"disconnected: 1\n"
            with pytest.raises(ConnectionClosed) as closed:
                await recv(alice)
            assert closed.value.reason.code == 4003

        async with connect(running) as alice:
            done = await realtime("revoke", "--sub", "alice", "--client-id", "chat-app",
                                  "--state-dir", state_dir(running))
            assert done.returncode == 0 and done.stdout == b"revoked_families: 0\nclosed: 1\n"
            with pytest.raises(ConnectionClosed) as closed:
                await recv(alice)
            assert closed.value.reason.code == 4003


async def test_without_a_server_the_command_says_so(tmp_path: Path) -> None:
    done = await realtime("connections", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.decode().strip() == f"error: no running server: no control socket at {tmp_path}/control.sock"
    both = await realtime("disconnect", "--sub", "a", "--client-id", "b", "--state-dir", str(tmp_path))
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr
