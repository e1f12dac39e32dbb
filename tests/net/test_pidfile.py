"""The pid file: a real server holds its lock, so `realtime reload` (and
the operator commands) signal it; a file left behind that names some
other live process is recognised as stale and that process is left alone.

"Not signalled" is proved without a sleep: ``kill()`` makes a signal
pending before it returns, and Linux delivers the lowest-numbered pending
standard signal first, so a child that then dies of our SIGTERM (15) had
no SIGHUP (1) pending.
"""

from __future__ import annotations

import fcntl
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
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


# -- a reloader's probe at the moment the server starts ---------------------------


class Steps:
    """``write``'s clock and pause: time moves only when it pauses."""

    def __init__(self, on_pause: Callable[[], None] = lambda: None) -> None:
        self.now = 0.0
        self.pauses = 0
        self.on_pause = on_pause

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self.now += seconds
        self.on_pause()


def hold(path: Path, how: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, how | fcntl.LOCK_NB)
    return fd


def test_the_server_waits_out_a_probe_and_owns_the_file(tmp_path: Path) -> None:
    probe = hold(tmp_path / "realtime.pid", fcntl.LOCK_SH)  # a reloader's probe
    steps = Steps(on_pause=lambda: os.close(probe))  # released after the first refusal
    held = pidfile.write(tmp_path, clock=steps.clock, pause=steps.pause)
    try:
        assert steps.pauses == 1
        assert pidfile.read(tmp_path) == os.getpid()
        with pytest.raises(BlockingIOError):  # the server's lock is on
            os.close(hold(tmp_path / "realtime.pid", fcntl.LOCK_SH))
    finally:
        held.unlink()
    assert not (tmp_path / "realtime.pid").exists()


def test_a_probe_that_never_ends_is_waited_for_a_bounded_time(tmp_path: Path) -> None:
    probe = hold(tmp_path / "realtime.pid", fcntl.LOCK_SH)
    try:
        steps = Steps()
        pidfile.write(tmp_path, wait=2.0, step=0.01, clock=steps.clock, pause=steps.pause).unlink()
        assert 2.0 <= steps.now < 2.02 and steps.pauses >= 200
        assert (tmp_path / "realtime.pid").exists()  # left alone
    finally:
        os.close(probe)


def test_another_servers_lock_is_not_waited_for(tmp_path: Path) -> None:
    server = hold(tmp_path / "realtime.pid", fcntl.LOCK_EX)
    try:
        def never(seconds: float) -> None:
            raise AssertionError("an exclusive lock is another server: no waiting")
        pidfile.write(tmp_path, pause=never).unlink()
        assert (tmp_path / "realtime.pid").exists()
    finally:
        os.close(server)


async def test_a_server_started_during_a_reload_probe_owns_the_pid_file(tmp_path: Path) -> None:
    """A real server starts while a reloader holds its shared probe lock;
    the probe ends when the server says it waits (its log, not a sleep):
    the server owns the pid file and a later reload reaches it."""
    config = write_conf(tmp_path)
    state_dir = config.parent / "var"
    state_dir.mkdir()
    probe: int | None = hold(state_dir / "realtime.pid", fcntl.LOCK_SH)
    lines: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(
                trio.run_process, [sys.executable, "-m", "realtime", "serve", "-c", str(config)], cwd=tmp_path,
                stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False))
            try:
                assert proc.stderr is not None
                buf = b""

                async def line_with(needle: str) -> str:
                    nonlocal buf
                    while True:
                        for i, line in enumerate(lines):
                            if needle in line:
                                del lines[:i + 1]
                                return line
                        chunk = await proc.stderr.receive_some(65536)
                        assert chunk, f"server ended before {needle!r}"
                        buf += chunk
                        *done, buf = buf.split(b"\n")
                        lines.extend(raw.decode(errors="replace") for raw in done)

                await line_with("waiting for it")
                os.close(probe)
                probe = None
                await line_with("listening")
                assert not any("another running server" in line for line in lines)
                assert pidfile.read(state_dir) == proc.pid
                result = await trio.to_thread.run_sync(lambda: realtime("reload", "-c", str(config), cwd=tmp_path))
                assert result.returncode == 0, result.stderr
                assert f"reload requested (pid {proc.pid})" in result.stdout
                await line_with("reload (SIGHUP) applied")
            finally:
                if probe is not None:
                    os.close(probe)
                proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
