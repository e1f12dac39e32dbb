"""A real ``redis-server`` for the broker tests: a free loopback port, a
temp dir, no persistence.  A missing binary fails the test (never skips),
naming the Debian package."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from realtime.config.settings import BrokerSettings, Settings

PACKAGE = "redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Start, stop and restart (same port) one redis-server."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail(
                f"redis-server is not installed: the broker tests need the Debian package {PACKAGE!r} "
                f"(apt-get install {PACKAGE}; tools/test.sh installs it)",
                pytrace=False,
            )
        self.exe = exe
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and return once the server says it accepts connections."""
        assert self.proc is None
        proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", "", "--daemonize", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # ends at EOF if the server dies
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            proc.wait()
            raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))
        # Keep draining its output so it never blocks on a full pipe.
        self._drain = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
        self.proc = proc

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(10)
        self._drain.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def redis_node_settings(make_settings: Callable[..., Settings], redis: RedisServer, node_ttl: float = 1.0,
                  **kw: Any) -> Settings:
    """Settings for one of several nodes sharing ``redis``: a short node TTL,
    no pings and a publish rate no test reaches (``websocket`` keys in
    ``kw`` are added to those)."""
    websocket = {"ping_interval": 0, "publish_rate": "1000/s", **kw.pop("websocket", {})}
    return make_settings(broker=BrokerSettings(url=redis.url, node_ttl=node_ttl), websocket=websocket, **kw)
