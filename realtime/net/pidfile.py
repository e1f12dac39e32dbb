"""The pid file in the state dir: written by ``serve``, read by the
commands that ask the running server to reload (``reload``, ``app``,
``user``, ``key``).

A pid alone is not proof: after a crash the file stays behind, and the
kernel may give its pid to any other process, which SIGHUP would most
likely kill.  So the server holds an exclusive ``flock`` on the pid file
for as long as it runs, and a reloader signals the pid only while that
lock is held by someone else.  The kernel drops the lock when the
process dies, however it dies, so a leftover file is always recognised
as stale.  (Checking ``/proc/PID/cmdline`` instead would be Linux-only
and fooled by any other ``realtime`` process, such as a second server
on another state dir.)  This module logs, so it sits in ``net``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

PID_FILE = "realtime.pid"

#: How long the server keeps trying for its lock while a reloader's probe
#: (a brief shared lock) holds the file, and how often it tries.
LOCK_WAIT = 2.0
LOCK_STEP = 0.01


log = logging.getLogger("realtime.server")


class PidFile:
    """The locked pid file of the running server; :meth:`unlink` at exit.

    ``fd`` is None when another live server on the same state dir owns
    the file: then this one leaves it alone.
    """

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def unlink(self) -> None:
        """Remove the file, then drop the lock (in that order: a reloader
        then finds no file rather than an unlocked, stale-looking one)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        finally:
            os.close(self._fd)


def _lock(fd: int, path: Path, wait: float, step: float,
          clock: Callable[[], float], pause: Callable[[float], None]) -> bool:
    """Take the exclusive lock on ``fd``; False if another server holds it.

    A server holds the lock exclusively, a reloader's probe shared and
    briefly.  So when the exclusive lock is refused, a shared one tells
    which: granted, only probes are in the way and we try again for up to
    ``wait`` seconds; refused, a server owns the file and we stop at once.
    """
    deadline = clock() + wait
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held exclusively: another server
        fcntl.flock(fd, fcntl.LOCK_UN)
        if clock() >= deadline:
            return False
        if not waiting:
            waiting = True
            log.info("%s is briefly locked by a reader (`realtime reload` or an admin command); waiting for it", path)
        pause(step)


def write(state_dir: Path, *, wait: float = LOCK_WAIT, step: float = LOCK_STEP,
          clock: Callable[[], float] = time.monotonic,
          pause: Callable[[float], None] = time.sleep) -> PidFile:
    """Record this process's pid in the pid file and lock it for life.

    Several nodes may share a state dir (SQLite WAL allows it): a second
    one finds the lock held, keeps its hands off the file, and says so;
    ``realtime reload`` then reaches the first.  A reloader probing the
    file at that moment (its shared lock) is waited for, up to ``wait``
    seconds in ``step``s, rather than mistaken for another server.
    ``clock`` and ``pause`` are for tests.  (Blocking: the server calls it
    in a thread.)
    """
    path = state_dir / PID_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            locked = _lock(fd, path, wait, step, clock, pause)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            log.warning("%s belongs to another running server (pid %s) on this state dir; "
                        "`realtime reload` signals that one, not this one (pid %d)",
                        path, read(state_dir), os.getpid())
            return PidFile(path, None)
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # a stopping server unlinked it between our open and lock: again
    data = f"{os.getpid()}\n".encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    return PidFile(path, fd)


def read(state_dir: Path) -> int | None:
    try:
        return int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def send_reload(state_dir: Path) -> tuple[int | None, str]:
    """SIGHUP the server named by the pid file.

    Returns ``(pid, outcome)`` with outcome ``"sent"``, ``"no_pid_file"``,
    ``"stale"`` (no server holds the file's lock: the pid is not ours and
    is left alone), ``"gone"`` (the pid no longer exists) or ``"denied"``.
    """
    try:
        fd = os.open(state_dir / PID_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None, "no_pid_file"
    try:
        try:
            pid = int(os.read(fd, 64).decode("ascii").strip())
        except (OSError, ValueError):
            return None, "no_pid_file"
        # The probe: held as briefly as can be, since a server starting
        # this very moment must wait for it (see write).
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: the server that wrote the file is alive
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return pid, "stale"
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return pid, "gone"
        except PermissionError:
            return pid, "denied"
        return pid, "sent"
    finally:
        os.close(fd)


def running(state_dir: Path) -> bool:
    """Whether a server holds the pid file's lock now (``realtime store copy``
    refuses to copy a live state dir)."""
    try:
        fd = os.open(state_dir / PID_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a probe's shared lock
    return False
