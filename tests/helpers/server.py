"""The server harnesses.

:class:`Running` is a real :class:`~realtime.net.server.Server` on
``127.0.0.1:0`` in this process: started in the test's own trio run
(:meth:`Running.start`, what the ``start_server`` and ``running`` fixtures
use), or in a thread of its own with its own ``trio.run``
(:meth:`Running.in_thread`) for sync tests such as hypothesis examples,
which talk to it over blocking sockets.

:class:`ServerProcess` is the real command, ``python -m realtime serve``,
in a subprocess: for what only a process has (signals, the pid file, the
exit code, the log line that tells the bound address).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import attrs
import trio

from realtime.config.settings import Addr, Settings
from realtime.net.server import Server
from realtime.tokens.keyring import issue_access_token

# -- in this process ----------------------------------------------------------


@attrs.define(eq=False)
class Running:
    server: Server
    # Set by start(): the test's nursery the server runs in (tests start
    # their own helper tasks there too).
    nursery: trio.Nursery | None = None
    # Set by in_thread(): the server's own trio.run in a daemon thread.
    thread: threading.Thread | None = None
    trio_token: trio.lowlevel.TrioToken | None = None
    crash: BaseException | None = None
    # Set once serve() has returned (a restart on the same port waits for it).
    stopped: trio.Event = attrs.field(factory=trio.Event)

    @classmethod
    async def start(cls, nursery: trio.Nursery, settings: Settings) -> "Running":
        """Serve ``settings`` in ``nursery`` (this trio run) until :meth:`stop`."""
        self = cls(Server(settings), nursery)

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await self.server.serve(install_signals=False, task_status=task_status)
            finally:
                self.stopped.set()

        await nursery.start(serve)
        return self

    @classmethod
    def in_thread(cls, settings: Settings, timeout: float = 30) -> "Running":
        """Serve ``settings`` in a daemon thread with its own ``trio.run``.

        Anything that ends that ``trio.run`` is kept in :attr:`crash`.
        """
        self = cls(Server(settings))
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                self.trio_token = trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as nursery:
                    await nursery.start(lambda task_status: self.server.serve(install_signals=False,
                                                                              task_status=task_status))
                    ready.set()

            try:
                trio.run(main)
            except BaseException as exc:  # noqa: BLE001 - kept for the test to report
                self.crash = exc
            finally:
                ready.set()

        self.thread = threading.Thread(target=run, name="test-server", daemon=True)
        self.thread.start()
        assert ready.wait(timeout), "server did not start"
        assert self.crash is None, self.crash
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop serving; for a server in its own thread, also wait for the thread."""
        if self.thread is None:
            self.server.stop()
            return
        if self.trio_token is not None and self.thread.is_alive():
            trio.from_thread.run_sync(self.server.stop, trio_token=self.trio_token)
        self.thread.join(timeout)

    @property
    def state(self):  # noqa: ANN201
        assert self.server.state is not None
        return self.server.state

    @property
    def http(self) -> Addr:
        assert self.server.bound.http is not None
        return self.server.bound.http

    @property
    def https(self) -> Addr:
        assert self.server.bound.https is not None
        return self.server.bound.https

    def url(self, path: str = "/", scheme: str = "http") -> str:
        addr = self.http if scheme in ("http", "ws") else self.https
        return f"{scheme}://{addr.host}:{addr.port}{path}"

    def mint(self, sub: str = "alice", scope: str = "chat:read chat:write", ttl: float = 60.0,
             client_id: str = "chat-app", **kw: Any) -> str:
        token, _ = issue_access_token(
            self.state.keyring, issuer=self.state.settings.issuer, audience=self.state.settings.audience,
            sub=sub, client_id=client_id, scope=scope.split(), ttl=ttl, **kw,
        )
        return token


# -- in a subprocess ----------------------------------------------------------

def server_config(*, server: str = "", oauth: str = "", websocket: str = "", channels: str = "",
                  public_url: str = "https://localhost", shutdown_grace: str = "3s") -> str:
    """A realtime.toml for a server process: HTTP on a free port, state in
    var/, apps.toml and users.json beside it, no pings, one chat:* channel.
    Each keyword adds lines to its table; ``channels`` adds tables at the end."""
    return f"""
[server]
http = "127.0.0.1:0"
{server}state_dir = "var"
public_url = "{public_url}"
shutdown_grace = "{shutdown_grace}"

[oauth]
apps = "apps.toml"
users = "users.json"
{oauth}
[websocket]
ping_interval = 0
{websocket}
[[channel]]
pattern = "chat:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
{channels}"""


CONFIG = server_config(server='https = "127.0.0.1:0"\n')

APPS_TOML = """
[[app]]
name = "Chat"
client_id = "chat-app"
public = true
redirect_uris = ["http://127.0.0.1/cb"]
scopes = ["chat:read", "chat:write"]
"""


def write_conf(root: Path) -> Path:
    conf = root / "conf"
    conf.mkdir()
    (conf / "realtime.toml").write_text(CONFIG)
    (conf / "apps.toml").write_text(APPS_TOML)
    (conf / "users.json").write_text(json.dumps({"users": [{"name": "alice", "scopes": ["chat:read"]}]}))
    return conf / "realtime.toml"


def realtime_cli(conf: Path, *args: str, stdin: str | None = None) -> str:
    """Run ``python -m realtime ARGS -c CONF``; it must exit 0.  Its stdout."""
    done = subprocess.run([sys.executable, "-m", "realtime", *args, "-c", str(conf)],
                          capture_output=True, text=True, input=stdin, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


class ServerProcess:
    def __init__(self, proc: trio.Process, lines: list[str], new_line: list[trio.Event]) -> None:
        self.proc = proc
        self.lines = lines
        self._new_line = new_line

    async def wait_for_count(self, needle: str, count: int, timeout: float = 10) -> None:
        """Wait until ``count`` log lines contain ``needle``."""
        with trio.fail_after(timeout):
            while sum(needle in line for line in self.lines) < count:
                await self._new_line[0].wait()

    async def wait_for_line(self, needle: str, timeout: float = 10) -> str:
        """Wait (on the log pump's event, not a sleep) for a log line."""
        with trio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                await self._new_line[0].wait()

    @classmethod
    async def start(cls, nursery: trio.Nursery, args: list[str], cwd: Path, *, launcher: list[str] | None = None,
                    pass_fds: tuple[int, ...] = ()) -> tuple["ServerProcess", dict[str, str]]:
        """``launcher`` goes before ``python -m realtime ARGS`` (a wrapper
        that ``exec``s it, e.g. to set ``LISTEN_PID=$$``); ``pass_fds`` are
        handed to the child as in :class:`subprocess.Popen`."""
        # Started through nursery.start(run_process): when the test ends, or
        # fails, the nursery's cancellation kills the server process too.
        proc = await nursery.start(functools.partial(
            trio.run_process, [*(launcher or []), sys.executable, "-m", "realtime", *args], cwd=cwd,
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False, pass_fds=pass_fds,
        ))
        lines: list[str] = []
        new_line = [trio.Event()]
        listening = trio.Event()
        bound: dict[str, str] = {}

        async def pump() -> None:
            buf = b""
            assert proc.stderr is not None
            async for chunk in proc.stderr:
                buf += chunk
                *done, buf = buf.split(b"\n")
                for raw in done:
                    line = raw.decode(errors="replace")
                    lines.append(line)
                    new_line[0].set()
                    new_line[0] = trio.Event()
                    match = re.search(r"listening (.*)$", line)
                    if match:
                        bound.update(part.split("=", 1) for part in match.group(1).split())
                        listening.set()

        nursery.start_soon(pump)
        with trio.fail_after(20):
            await listening.wait()
        return cls(proc, lines, new_line), bound
