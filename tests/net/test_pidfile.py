"""The pid file: a real server holds its lock, so `realtime reload` (and
the operator commands) signal it; a file left behind that names some
other live process is recognised as stale and that process is left alone.

"Not signalled" is proved without a sleep: ``kill()`` makes a signal
pending before it returns, and Linux delivers the lowest-numbered pending
standard signal first, so a child that then dies of our SIGTERM (15) had
no SIGHUP (1) pending.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

from realtime.net import pidfile
from tests.helpers.server import ServerProcess, write_conf


def realtime(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "realtime", *argv], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def bystander() -> subprocess.Popen[bytes]:
    """A live process that is not our server (as after PID reuse)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def assert_not_hupped(child: subprocess.Popen[bytes]) -> None:
    assert child.poll() is None  # alive
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == -signal.SIGTERM  # and no SIGHUP was pending before it


def test_reload_refuses_a_stale_pid_file_and_leaves_the_process_alone(tmp_path: Path) -> None:
    config = write_conf(tmp_path)
    state_dir = config.parent / "var"
    state_dir.mkdir()
    child = bystander()
    try:
        (state_dir / "realtime.pid").write_text(f"{child.pid}\n")
        result = realtime("reload", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 1
        assert "stale pid file" in result.stderr and str(child.pid) in result.stderr
        assert_not_hupped(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_operator_command_does_not_signal_a_stale_pid(tmp_path: Path) -> None:
    config = write_conf(tmp_path)
    state_dir = config.parent / "var"
    state_dir.mkdir()
    child = bystander()
    try:
        (state_dir / "realtime.pid").write_text(f"{child.pid}\n")
        result = realtime("app", "remove", "chat-app", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "stale pid file" in result.stderr
        assert_not_hupped(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_reload_signals_the_running_server(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    server, _ = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    result = await trio.to_thread.run_sync(lambda: realtime("reload", "-c", str(config), cwd=tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"reload requested (pid {server.proc.pid})" in result.stdout
    await server.wait_for_line("reload (SIGHUP) applied")
    # A second node on the same state dir leaves the pid file to the first.
    second, _ = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    await second.wait_for_line("belongs to another running server")
    second.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await second.proc.wait() == 0
    assert int((config.parent / "var" / "realtime.pid").read_text()) == server.proc.pid
    assert pidfile.send_reload(config.parent / "var") == (server.proc.pid, "sent")
    await server.wait_for_count("reload (SIGHUP) applied", 2)
    server.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await server.proc.wait() == 0
    assert pidfile.send_reload(config.parent / "var") == (None, "no_pid_file")


def test_the_lock_lives_as_long_as_the_pid_file_object(tmp_path: Path) -> None:
    held = pidfile.write(tmp_path)
    assert pidfile.read(tmp_path) is not None
    # flock locks belong to an open file description: a second one, even in
    # this process, finds it held and leaves the file alone.
    pidfile.write(tmp_path).unlink()
    assert (tmp_path / "realtime.pid").exists()
    held.unlink()
    assert not (tmp_path / "realtime.pid").exists()
    assert pidfile.send_reload(tmp_path) == (None, "no_pid_file")
    pidfile.write(tmp_path).unlink()  # free again
