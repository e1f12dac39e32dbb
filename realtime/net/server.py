"""The nursery tree of DESIGN.md §1: listeners, connection tasks, signals,
reload and graceful shutdown.

Shutdown (SIGTERM/SIGINT): the listeners close first, every WebSocket is
told 1001, idle HTTP connections are dropped, and connection tasks get
``shutdown_grace`` seconds before what remains is cancelled — the grace
is a deadline on the handler nursery, as hypercorn's ``worker_serve``
does, so a stuck peer cannot outlive it.

What the tree holds is built elsewhere: the application object by
:mod:`realtime.net.startup`, the listening sockets by
:mod:`realtime.net.listeners`, and each connection is accepted, admitted
and run by :class:`~realtime.net.connections.Connections`.
"""

from __future__ import annotations

import logging
import signal
import ssl
from typing import TYPE_CHECKING

import trio

from realtime.api import endpoints as api
from realtime.api.app import App
from realtime.config.settings import Settings
from realtime.http.router import Router
from realtime.net import control, pidfile
from realtime.net.connections import Connections
from realtime.net.hub_tick import hub_tick
from realtime.net import reload as reloading
from realtime.net import systemd
from realtime.net.fd_limit import raise_fd_limit
from realtime.net.http_connection import HttpConnection
from realtime.net.listeners import Bound, open_listeners
from realtime.net.revocation_watch import watch_revocations
from realtime.net.startup import FILE_LIMITER, build_state
from realtime.net.websocket import Session

if TYPE_CHECKING:
    from realtime.net.redis.broker import RedisBroker

log = logging.getLogger("realtime.server")

BROKER_STOP_TIMEOUT = 3.0  # unsubscribe, close, remove this node's presence (1 s of it)


class Server:
    """One running server: the application object (``state``, plain
    values the handlers receive) plus what only the trio shell touches —
    its connections (with the TLS context), the broker task, the reload
    lock and the event set when a reload finishes."""

    def __init__(self, settings: Settings, notifier: systemd.Notifier | None = None) -> None:
        self.settings = settings
        # systemd's NOTIFY_SOCKET (a no-op without one): READY, RELOADING, STOPPING, WATCHDOG.
        self.notifier = notifier if notifier is not None else systemd.Notifier.from_environ()
        self.state: App | None = None  # the application object, once started
        self.broker: "RedisBroker | None" = None
        # Set (and replaced) each time a reload finishes, whatever its result.
        self.reload_done = trio.Event()
        self.bound = Bound()
        self.router = Router()
        self.connections = Connections(self.router)
        # The connections' own sets, named here for the control socket and the tests.
        self.sessions: set[Session] = self.connections.sessions  # live WebSockets, told 1001 at shutdown
        self.http_conns: set[HttpConnection] = self.connections.http_conns
        self.stopping = trio.Event()
        self.reload_lock = trio.Lock()

    # -- signals and lifecycle --------------------------------------------------
    async def _signals(self, nursery: trio.Nursery, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()  # handlers are in place: the pid file may be announced
            async for signum in signals:
                if signum == signal.SIGHUP:
                    nursery.start_soon(self.reload, "SIGHUP")
                else:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    self.stopping.set()

    async def reload(self, trigger: str) -> bool:
        assert self.state is not None
        async with self.reload_lock:
            self.notifier.reloading()
            try:
                applied = await reloading.reload(self.state, trigger, self._set_tls)
            finally:
                # READY=1 again whatever the outcome: a rejected reload keeps
                # the running configuration, and the service is still up.
                if not self.stopping.is_set():
                    self.notifier.ready()
            # Wake whoever waits for a reload to finish (tests, `watch` debouncing).
            done, self.reload_done = self.reload_done, trio.Event()
            done.set()
            return applied

    def _set_tls(self, ssl_context: ssl.SSLContext | None) -> None:
        self.connections.ssl_context = ssl_context

    async def serve(
        self,
        *,
        install_signals: bool = True,
        task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        raise_fd_limit(self.settings.server.max_connections)
        started = await build_state(self.settings)
        self.state = self.connections.state = state = started.app
        self.broker, self.connections.ssl_context = started.broker, started.ssl_context
        api.register(self.router)
        server = self.settings.server
        listeners = open_listeners(self.settings, started.ssl_context, self.bound)
        control_sock = control.open_control_socket(server.state_dir)
        pid_path: pidfile.PidFile | None = None
        try:
            async with trio.open_nursery() as root:
                # Signals first: a SIGHUP from `realtime reload` or a SIGTERM
                # right after the pid file or the `listening` line appears
                # must find our handlers, not the default actions.
                if install_signals:
                    await root.start(self._signals, root)
                pid_path = await trio.to_thread.run_sync(pidfile.write, server.state_dir, limiter=FILE_LIMITER)
                parts = [f"{scheme}={getattr(self.bound, scheme)}" for _, scheme in listeners]
                log.info("listening %s", " ".join(parts) if parts else "(no listeners)")
                root.start_soon(reloading.housekeeping, state)
                if state.store_key is not None:  # a rotation on any node, seen here within a second
                    root.start_soon(reloading.watch_signing_keys, state)
                if self.settings.store.url is not None and self.settings.store.revocation_poll > 0:
                    # Another node's revocations, with or without a broker.
                    await root.start(watch_revocations, state, self.settings.store.revocation_poll)
                if self.settings.store.url is not None:  # users created by first logins on other nodes
                    root.start_soon(reloading.watch_provider_users, state)
                root.start_soon(hub_tick, state)  # held join/leave events
                if started.webhooks is not None:
                    await root.start(started.webhooks.run)
                if self.broker is not None:
                    await root.start(self.broker.run)
                if self.settings.server.watch:
                    await root.start(reloading.watch_files, state, self.reload)
                root.start_soon(systemd.watchdog, self.notifier)
                async with trio.open_nursery() as handlers:
                    with trio.CancelScope() as listen_scope:
                        async with trio.open_nursery() as accepting:
                            for sock, scheme in listeners:
                                accepting.start_soon(self.connections.accept_loop, sock, scheme, handlers)
                            if control_sock is not None:  # realtime connections|disconnect|revoke
                                accepting.start_soon(control.serve_control, control_sock, state, handlers,
                                                     self.http_conns)
                            task_status.started(self.bound)
                            self.notifier.ready(f"listening {' '.join(parts) if parts else '(no listeners)'}")
                            await self.stopping.wait()
                            self.notifier.stopping()
                            listen_scope.cancel()
                    self.connections.begin_shutdown()
                    handlers.cancel_scope.deadline = trio.current_time() + state.settings.server.shutdown_grace
                if self.broker is not None:
                    # The broker leaves deliberately (its pub/sub unsubscribes on
                    # a live connection) before the cancellation of the rest: a
                    # cancellation would reach coredis' pub/sub and its
                    # connection pool at once and race them.
                    await self.broker.stop(BROKER_STOP_TIMEOUT)
                root.cancel_scope.cancel()
        finally:
            self.notifier.close()
            await state.store.close()
            if pid_path is not None:
                try:
                    pid_path.unlink()
                except OSError:
                    pass
        log.info("stopped")

    def stop(self) -> None:
        self.stopping.set()
