"""The process limits that decide how many connections one server holds:
the listen backlog (a reconnect storm's SYNs wait there) and the open file
limit (one descriptor per connection)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import trio

from realtime.config.settings import Addr, ServerSettings
from realtime.net.fd_limit import FD_HEADROOM
from realtime.net.listeners import open_listener
from tests.helpers.server import ServerProcess, write_conf


def listen_backlog(port: int) -> int:
    """The accept queue's size as the kernel holds it: ``ss`` shows it as
    the Send-Q of a listening socket."""
    ss = shutil.which("ss")
    assert ss is not None, "ss not found: install the Debian package iproute2"
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


def test_listener_backlog_is_the_kernel_maximum() -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    sock = open_listener(Addr("127.0.0.1", 0))
    try:
        assert listen_backlog(sock.getsockname()[1]) == min(somaxconn, 65535)
    finally:
        sock.close()


def nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files line")


def prlimit(soft: int, hard: int) -> list[str]:
    path = shutil.which("prlimit")
    assert path is not None, "prlimit not found: install the Debian package util-linux"
    return [path, f"--nofile={soft}:{hard}"]  # then execs the server: same pid


async def test_server_lifts_its_soft_fd_limit_to_the_hard_one(tmp_path: Path, nursery: trio.Nursery) -> None:
    # systemd's default for services: 1024 soft; here 512 soft, 16384 hard.
    server, _ = await ServerProcess.start(nursery, ["serve", "-c", str(write_conf(tmp_path))], tmp_path,
                                          launcher=prlimit(512, 16384))
    assert nofile(server.proc.pid) == (16384, 16384)
    assert not any("open file limit" in line for line in server.lines)
    server.proc.terminate()


async def test_server_warns_when_the_hard_fd_limit_is_below_max_connections(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    config.write_text(config.read_text().replace("[server]\n", "[server]\nmax_connections = 5000\n", 1))
    server, _ = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path,
                                          launcher=prlimit(1024, 2048))
    assert nofile(server.proc.pid) == (2048, 2048)
    line = await server.wait_for_line("open file limit")
    assert "WARNING" in line and "max_connections = 5000" in line and "limit is 2048" in line
    assert "LimitNOFILE" in line
    server.proc.terminate()


def test_systemd_units_allow_a_storm_of_max_connections() -> None:
    """The unit's open file limit covers old and new sockets in a reconnect
    storm at the default max_connections, and the socket units ask for
    more than the kernel's default accept queue (4096) so a raised
    somaxconn takes effect."""
    contrib = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(contrib / "realtime.service")
    assert int(service["Service"]["LimitNOFILE"]) >= 2 * ServerSettings().max_connections + FD_HEADROOM
    for path in contrib.glob("*.socket"):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read(path)
        assert int(unit["Socket"]["Backlog"]) > 4096, path.name
