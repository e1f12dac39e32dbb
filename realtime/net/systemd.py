"""systemd integration without libsystemd: readiness and watchdog
notifications (``sd_notify(3)``) and socket activation (``sd_listen_fds(3)``).

Notifications go as datagrams to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (a path, or an abstract name written with a leading
``@``).  Without ``NOTIFY_SOCKET`` every call is a no-op, so the server
runs the same under systemd (``Type=notify``) and anywhere else.

Socket activation: systemd passes ``LISTEN_FDS`` listening sockets from
fd 3 on, with ``LISTEN_PID`` (ours, or they are not for us) and
optionally ``LISTEN_FDNAMES`` (colon-separated ``FileDescriptorName=``
values).  A socket named ``http`` or ``https`` becomes that listener;
the others fill the listeners not named, in order: first ``http``, then
``https``.  The three variables are removed from the environment once
read, so no child process takes the sockets for its own.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

import attrs
import trio

__all__ = ["LISTENER_NAMES", "Notifier", "SocketActivationError", "assign_listeners", "inherited_listeners", "watchdog"]

log = logging.getLogger("realtime.systemd")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START
LISTENER_NAMES = ("http", "https")  # the FileDescriptorName= values the server maps


class SocketActivationError(OSError):
    """The inherited sockets cannot be used (``realtime serve`` logs
    "cannot start" and exits 1)."""


@attrs.define
class Notifier:
    """Sends ``sd_notify`` messages to ``address`` (None: do nothing).

    Args:
        address: the ``NOTIFY_SOCKET`` value.
        watchdog_usec: ``WATCHDOG_USEC`` when it is meant for this process.
    """

    address: str | None = None
    watchdog_usec: int | None = None
    _sock: socket.socket | None = attrs.field(default=None, init=False, repr=False)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> "Notifier":
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw_usec, raw_pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if raw_usec:
            try:
                usec = int(raw_usec)
                # WATCHDOG_PID, when set, names the process the watchdog is for.
                if raw_pid and int(raw_pid) != os.getpid():
                    usec = None
            except ValueError:
                log.warning("systemd: ignoring WATCHDOG_USEC=%r / WATCHDOG_PID=%r (not integers)", raw_usec, raw_pid)
                usec = None
            if usec is not None and usec <= 0:
                usec = None
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *fields: str) -> None:
        """Send ``fields`` (``KEY=value``) as one message; never raises
        (a lost notification must not take the server down) and never
        blocks (the socket is non-blocking; a full queue drops it)."""
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("systemd: cannot notify %s: %s", self.address, exc.strerror or exc)

    def ready(self, status: str | None = None) -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        """Before a reload; ``MONOTONIC_USEC`` lets systemd (``Type=notify-reload``)
        match this message to the reload it asked for."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog(notifier: Notifier) -> None:
    """Send ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` until cancelled.

    It runs in the server's event loop, so a loop stuck in a blocking call
    misses its pings and systemd restarts the service, as intended."""
    interval = notifier.watchdog_interval
    if interval is None:
        return
    while True:
        notifier.notify("WATCHDOG=1")
        await trio.sleep(interval)


def inherited_listeners(environ: MutableMapping[str, str] | None = None) -> dict[str, socket.socket] | None:
    """The listening sockets systemd handed us, by listener name, or None
    when there are none for this process.  Removes ``LISTEN_PID``,
    ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` from ``environ`` (default
    ``os.environ``) whatever the outcome.

    Raises:
        SocketActivationError: more sockets than listeners, two for one
            name, or an fd that is not a listening TCP socket.
    """
    env = os.environ if environ is None else environ
    raw_pid, raw_fds, raw_names = (env.pop(k, None) for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"))
    if raw_pid is None or raw_fds is None:
        return None
    try:
        pid, count = int(raw_pid), int(raw_fds)
    except ValueError:
        raise SocketActivationError(f"socket activation: LISTEN_PID={raw_pid!r} LISTEN_FDS={raw_fds!r} are not integers") from None
    if pid != os.getpid() or count <= 0:
        return None  # meant for another process (or none at all)
    fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + count))
    names = raw_names.split(":") if raw_names else []
    socks = [_adopt(fd) for fd in fds]
    try:
        return assign_listeners(socks, names)
    except SocketActivationError:
        for sock in socks:
            sock.close()
        raise


def _adopt(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise SocketActivationError(f"socket activation: fd {fd} is not a socket ({exc.strerror or exc})") from None
    ok = (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
          and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    if not ok:
        sock.detach()
        raise SocketActivationError(f"socket activation: fd {fd} is not a listening TCP socket "
                                    "(use ListenStream= with an address and port)")
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def assign_listeners(socks: list[socket.socket], names: list[str]) -> dict[str, socket.socket]:
    """Named sockets take their listener; the rest fill the free ones in order."""
    if len(socks) > len(LISTENER_NAMES):
        raise SocketActivationError(f"socket activation: {len(socks)} sockets passed; "
                                    f"at most {len(LISTENER_NAMES)} (http, https)")
    chosen: dict[str, socket.socket] = {}
    rest: list[socket.socket] = []
    for index, sock in enumerate(socks):
        name = names[index] if index < len(names) else ""
        if name in LISTENER_NAMES:
            if name in chosen:
                raise SocketActivationError(f"socket activation: two sockets named {name!r}")
            chosen[name] = sock
        else:
            rest.append(sock)
    free = [name for name in LISTENER_NAMES if name not in chosen]
    for name, sock in zip(free, rest):
        chosen[name] = sock
    return {name: chosen[name] for name in LISTENER_NAMES if name in chosen}
