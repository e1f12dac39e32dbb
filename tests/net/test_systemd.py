"""systemd integration: ``sd_notify`` readiness, reload,
stop and watchdog messages to a real AF_UNIX datagram socket, and socket
activation with real listening sockets handed to a real server process."""

from __future__ import annotations

import configparser
import fcntl
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from realtime.net import systemd
from tests.helpers.server import ServerProcess, write_conf

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


class NotifyListener:
    """The test's end of ``NOTIFY_SOCKET``: every datagram, split in fields."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    async def bind(self) -> None:
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        await self.sock.bind(target)

    async def next(self, timeout: float = 15) -> dict[str, str]:
        with trio.fail_after(timeout):
            data = await self.sock.recv(4096)
        return dict(line.split("=", 1) for line in data.decode().split("\n"))

    async def until(self, key: str, seen: list[dict[str, str]]) -> dict[str, str]:
        """Read messages (kept in ``seen``) until one carries ``key``."""
        while True:
            message = await self.next()
            seen.append(message)
            if key in message:
                return message


@pytest.mark.parametrize("where", ["path", "abstract"])
async def test_ready_reloading_stopping_and_watchdog(tmp_path: Path, nursery: trio.Nursery,
                                                    monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    address = str(tmp_path / "notify.sock") if where == "path" else f"@realtime-test-{os.getpid()}-{id(tmp_path)}"
    listener = NotifyListener(address)
    await listener.bind()
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = write_conf(tmp_path)
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    seen: list[dict[str, str]] = []
    ready = await listener.until("READY", seen)
    # Sent once the listeners are up: its status names the bound ports.
    assert ready["READY"] == "1" and f"http={bound['http']}" in ready["STATUS"]
    assert seen == [ready]  # nothing before it
    # WATCHDOG=1 keeps coming while the server runs.
    for _ in range(2):
        assert (await listener.until("WATCHDOG", seen))["WATCHDOG"] == "1"

    server.proc.send_signal(signal.SIGHUP)
    reloading = await listener.until("RELOADING", seen)
    assert int(reloading["MONOTONIC_USEC"]) <= time_monotonic_usec()
    assert (await listener.until("READY", seen))["READY"] == "1"
    await server.wait_for_line("reload (SIGHUP) applied")

    server.proc.send_signal(signal.SIGTERM)
    assert (await listener.until("STOPPING", seen))["STOPPING"] == "1"
    with trio.fail_after(10):
        assert await server.proc.wait() == 0


def time_monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_watchdog_pid_of_another_process_turns_the_watchdog_off() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert systemd.Notifier.from_environ(env).watchdog_interval is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert systemd.Notifier.from_environ(env).watchdog_interval == 0.5
    assert systemd.Notifier.from_environ({"WATCHDOG_USEC": "1000000"}).watchdog_interval is None  # no socket


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def activation_launcher(count: int, names: str | None, fds: list[int]) -> list[str]:
    """``bash`` (dash takes one-digit fds only) moves the passed fds to 3,
    4 ... (as systemd does), sets ``LISTEN_PID`` to its own pid and
    ``exec``s the server, which keeps that pid."""
    moves = " ".join(f"{3 + i}<&{fd} {fd}<&-" for i, fd in enumerate(fds))
    names_env = f"LISTEN_FDNAMES={names} " if names is not None else ""
    return ["bash", "-c", f'LISTEN_PID=$$ LISTEN_FDS={count} {names_env}exec "$@" {moves}', "bash"]


async def test_socket_activation_names_pick_the_listener(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    first, second = listening_socket(), listening_socket()
    # Passed in the order https, http: the names decide, not the order.
    # Copies numbered 10 and up, so the shell's 3<& and 4<& cannot clobber a source.
    high = [fcntl_dup_high(os.dup(first.fileno())), fcntl_dup_high(os.dup(second.fileno()))]
    launcher = activation_launcher(2, "https:http", high)
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path,
                                              launcher=launcher, pass_fds=tuple(high))
    for fd in high:
        os.close(fd)
    https_port, http_port = first.getsockname()[1], second.getsockname()[1]
    assert bound == {"http": f"127.0.0.1:{http_port}", "https": f"127.0.0.1:{https_port}"}
    assert any("socket activation: using the inherited socket(s) (http, https)" in line for line in server.lines)
    first.close()
    second.close()  # the server holds its own copies
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    async with httpx.AsyncClient(verify=insecure) as http:
        assert (await http.get(f"http://127.0.0.1:{http_port}/healthz")).status_code == 200
        assert (await http.get(f"https://127.0.0.1:{https_port}/healthz")).status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await server.proc.wait() == 0


async def test_socket_activation_unnamed_socket_is_http(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)  # it sets both http and https on port 0: neither is bound
    sock = listening_socket()
    high = [fcntl_dup_high(os.dup(sock.fileno()))]
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path,
                                              launcher=activation_launcher(1, None, high), pass_fds=tuple(high))
    os.close(high[0])
    port = sock.getsockname()[1]
    sock.close()
    assert bound == {"http": f"127.0.0.1:{port}"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await server.proc.wait() == 0


def fcntl_dup_high(fd: int) -> int:
    """``fd`` moved to a number of 10 or more (closing the original)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


def test_socket_activation_rules_and_environment_cleanup() -> None:
    a, b, c = (socket.socket() for _ in range(3))
    try:
        assert systemd.assign_listeners([a, b], ["https", "http"]) == {"http": b, "https": a}
        assert systemd.assign_listeners([a, b], []) == {"http": a, "https": b}
        assert systemd.assign_listeners([a, b], ["realtime.socket", "https"]) == {"http": a, "https": b}
        assert systemd.assign_listeners([a], ["https"]) == {"https": a}
        with pytest.raises(systemd.SocketActivationError, match="at most 2"):
            systemd.assign_listeners([a, b, c], [])
        with pytest.raises(systemd.SocketActivationError, match="two sockets named 'http'"):
            systemd.assign_listeners([a, b], ["http", "http"])
    finally:
        for s in (a, b, c):
            s.close()
    # Meant for another process: not used, and removed so no child inherits them.
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http", "OTHER": "x"}
    assert systemd.inherited_listeners(env) is None
    assert env == {"OTHER": "x"}


def test_socket_activation_of_a_non_listening_fd_exits_1(tmp_path: Path) -> None:
    config = write_conf(tmp_path)
    r, w = os.pipe()
    high = fcntl_dup_high(r)
    try:
        done = subprocess.run([*activation_launcher(1, "http", [high]), sys.executable, "-m", "realtime", "serve",
                               "-c", str(config)], pass_fds=(high,), capture_output=True, text=True, cwd=tmp_path,
                              timeout=60)
    finally:
        os.close(high)
        os.close(w)
    assert done.returncode == 1
    assert "cannot start: socket activation: fd 3 is not a socket" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_unit_files_name_only_what_the_server_supports() -> None:
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read(CONTRIB / "realtime.service")
    assert service["Service"]["Type"] == "notify"
    assert "WatchdogSec" in service["Service"]
    assert "NotifyAccess" not in service["Service"] or service["Service"]["NotifyAccess"] == "main"
    exec_start = service["Service"]["ExecStart"].split()
    assert exec_start[1] == "serve" and set(exec_start[2:]) <= {"-c", "/etc/realtime/realtime.toml"}
    assert "CAP_NET_BIND_SERVICE" in service["Service"]["AmbientCapabilities"]
    names = []
    for path in sorted(CONTRIB.glob("*.socket")):
        sock = configparser.ConfigParser(strict=False, interpolation=None)
        sock.optionxform = str  # type: ignore[assignment,method-assign]
        sock.read(path)
        names.append(sock["Socket"]["FileDescriptorName"])
        assert sock["Socket"].get("Service", "realtime.service") == "realtime.service" or path.stem == "realtime"
    assert sorted(names) == sorted(systemd.LISTENER_NAMES)
