"""The pid file in the state dir: written by ``serve``, read by the
commands that ask the running server to reload (``reload``, ``app``,
``user``, ``key``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PID_FILE = "realtime.pid"


def write(state_dir: Path) -> Path:
    """Atomically record this process's pid; returns the file's path."""
    path = state_dir / PID_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)
    return path


def read(state_dir: Path) -> int | None:
    try:
        return int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def send_reload(state_dir: Path) -> tuple[int | None, str]:
    """SIGHUP the server named by the pid file.

    Returns ``(pid, outcome)`` with outcome ``"sent"``, ``"no_pid_file"``,
    ``"gone"`` (the pid no longer exists) or ``"denied"``.
    """
    pid = read(state_dir)
    if pid is None:
        return None, "no_pid_file"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return pid, "gone"
    except PermissionError:
        return pid, "denied"
    return pid, "sent"
