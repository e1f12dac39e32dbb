"""The nursery tree of DESIGN.md §1: listeners, connection tasks, signals,
reload and graceful shutdown.

Shutdown (SIGTERM/SIGINT): the listeners close first, every WebSocket is
told 1001, idle HTTP connections are dropped, and connection tasks get
``shutdown_grace`` seconds before what remains is cancelled — the grace
is a deadline on the handler nursery, as hypercorn's ``worker_serve``
does, so a stuck peer cannot outlive it.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from realtime.api import admin_ops
from realtime.api import endpoints as api
from realtime.api.app import App
from realtime.config.settings import Addr, Settings
from realtime.http.router import Router
from realtime.hub import Hub
from realtime.net import control, pidfile
from realtime.net.hub_tick import hub_tick
from realtime.net import reload as reloading
from realtime.net import systemd
from realtime.net.fd_limit import raise_fd_limit
from realtime.net.http_connection import HttpConnection
from realtime.net.provider_http import PROVIDER_HTTP
from realtime.net.revocation_watch import watch_revocations
from realtime.net.tls import build_tls_context
from realtime.net.transport import Transport
from realtime.net.webhooks import Webhooks
from realtime.net.websocket import Session
from realtime.net.workers import ARGON2_THREADS, CLIENT_ARGON2_THREADS, thread_offload
from realtime.oauth import services as oauth
from realtime.oauth.passwords import Hasher
from realtime.oauth.providers import users as provider_users
from realtime.oauth1 import credentials as oauth1
from realtime.oauth1 import crypto as oauth1_crypto
from realtime.protocol.close import CloseCode
from realtime.store.aio import AsyncStore
from realtime.store.keyfile import OAUTH_HMAC, derive_key, read_key_file
from realtime.tokens.keyring import KeyRing, RevokedSet

if TYPE_CHECKING:
    from realtime.net.redis.broker import RedisBroker

log = logging.getLogger("realtime.server")

ACCEPT_BATCH = 64
# The kernel caps the accept queue at net.core.somaxconn (4096 since Linux
# 5.4): ask for the most and let that sysctl decide.  A fixed 1024 dropped
# SYNs (a second's retry each) in a reconnect storm of 100,000 clients.
LISTEN_BACKLOG = 65535
BROKER_STOP_TIMEOUT = 3.0  # unsubscribe, close, remove this node's presence (1 s of it)
_file_limiter = trio.CapacityLimiter(1)


@attrs.define
class Bound:
    """What the listeners actually bound (port 0 resolved)."""

    http: Addr | None = None
    https: Addr | None = None


def open_listener(addr: Addr) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr.host, addr.port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bound(sock: socket.socket) -> Addr:
    host, port = sock.getsockname()[:2]
    return Addr(host, port)


def prepare_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(state_dir, 0o700)
    except OSError:
        pass


@attrs.frozen
class Started:
    """What :func:`build_state` makes: the application object (plain
    values) and the trio-side things the server keeps for itself."""

    app: App
    broker: "RedisBroker | None"
    ssl_context: ssl.SSLContext | None
    webhooks: Webhooks | None = None


def compose_app(settings: Settings, keyring: KeyRing, store: AsyncStore, revoked: RevokedSet,
                broker: "RedisBroker | None" = None, *, oauth_key: bytes, oauth1_key: bytes) -> App:
    """The application object from values already read (no I/O): the
    services with their worker-thread offloads (argon2: ``ARGON2_THREADS``
    at once; the users file: one writer) and the provider HTTP client."""
    services = oauth.build_services(
        settings, store, oauth_key,
        hasher=Hasher(thread_offload(trio.CapacityLimiter(ARGON2_THREADS), settings.oauth.hash_queue)),
        client_hasher=Hasher(thread_offload(trio.CapacityLimiter(CLIENT_ARGON2_THREADS),
                                            settings.oauth.hash_queue)),
        provider_http=PROVIDER_HTTP,
        users_offload=thread_offload(trio.CapacityLimiter(1)),
    )
    return App(
        settings=settings,
        keyring=keyring,
        revoked=revoked,
        hub=Hub(settings.channels, settings.websocket, broker),
        store=store,
        oauth=services,
        oauth1=oauth1.build_services(store, oauth1_key),
    )


async def build_state(settings: Settings) -> Started:
    """Everything a request needs, built once before the first accept."""
    server = settings.server
    await trio.to_thread.run_sync(prepare_state_dir, server.state_dir, limiter=_file_limiter)
    broker = None
    if settings.broker.url is not None:
        # Imported here: coredis costs ~0.4 s of start-up, and only a [broker] url needs it.
        from realtime.net.redis.broker import RedisBroker

        broker = RedisBroker(settings.broker.url, node_ttl=settings.broker.node_ttl)
        await broker.check()  # unreachable at start: BrokerUnavailable (an OSError), exit 1
    ssl_context = await trio.to_thread.run_sync(build_tls_context, settings)
    if settings.store.url is not None:  # SPEC §14: the OAuth state shared by every node on the database
        store = await AsyncStore.open_url(settings.store.url, pool_size=settings.store.pool_size)
    else:
        store = await AsyncStore.open(server.state_dir / "state.sqlite3")
    revoked = RevokedSet()
    revoked.load(await store.revoked_jtis(time.time()))
    if settings.store.key_file is not None and settings.store.url is not None:
        # Shared store: sessions, CSRF tokens and family fingerprints must verify on every node.
        store_key = await trio.to_thread.run_sync(read_key_file, settings.store.key_file, limiter=_file_limiter)
        oauth_key = derive_key(store_key, OAUTH_HMAC)
        # The signing key ring is in the store too (the first node creates its first key).
        keyring = await reloading.store_keyring(store, store_key, settings)
    else:
        store_key = None
        oauth_key = await trio.to_thread.run_sync(oauth.load_or_create_key, server.state_dir,
                                                  limiter=_file_limiter)
        keyring = await trio.to_thread.run_sync(reloading.load_keyring, settings, limiter=_file_limiter)
    if store_key is not None:  # shared store: every node opens every node's OAuth 1 secrets
        oauth1_key = oauth1_crypto.shared_key(store_key)
    else:
        oauth1_key = await trio.to_thread.run_sync(oauth1_crypto.load_or_create_key, server.state_dir,
                                                   limiter=_file_limiter)
    app = compose_app(settings, keyring, store, revoked, broker, oauth_key=oauth_key, oauth1_key=oauth1_key)
    app.store_key = store_key
    await app.oauth.start()
    await provider_users.refresh(app)  # users a provider's first login put in the store
    for sub, client_id, issued_before, _ in await store.live_cutoffs(time.time()):
        revoked.cut(sub, client_id, issued_before)  # POST /api/revoke survives a restart
    if settings.webhooks:  # SPEC §12: events go to a bounded outbox, delivered by its own tasks
        webhooks = Webhooks(app, settings.webhooks)
        app.webhook_sink = webhooks.emit
        app.hub.on_event = app.emit
    if broker is not None:
        broker.on_revoke = lambda jti, exp: app.revoke_access(jti, exp, share=False)
        app.node = broker.state.node
        broker.on_control = functools.partial(admin_ops.run_local, app)  # server API from other nodes
        broker.state.on_cutoff = functools.partial(admin_ops.revoke, app)  # cut-offs made while away
        from realtime.net.redis.streams import RedisStreams, RedisTickets, parse_refresh
        from realtime.net.sse import refresh_from_another_node

        # SSE (SPEC §13): tickets single use across nodes; refreshes reach the stream's node.
        app.tickets = RedisTickets(broker.state)
        app.stream_directory = RedisStreams(broker.state)
        broker.state.on_stream_refresh = lambda data: refresh_from_another_node(app, parse_refresh(data))
    return Started(app, broker, ssl_context, webhooks if settings.webhooks else None)


class Server:
    """One running server: the application object (``state``, plain
    values the handlers receive) plus what only the trio shell touches —
    the TLS context, the live sessions, the broker task, the reload lock
    and the event set when a reload finishes."""

    def __init__(self, settings: Settings, notifier: systemd.Notifier | None = None) -> None:
        self.settings = settings
        # systemd's NOTIFY_SOCKET (a no-op without one): READY, RELOADING, STOPPING, WATCHDOG.
        self.notifier = notifier if notifier is not None else systemd.Notifier.from_environ()
        self.state: App | None = None  # the application object, once started
        self.broker: "RedisBroker | None" = None
        self.ssl_context: ssl.SSLContext | None = None  # replaced by a reload
        self.sessions: set[Session] = set()  # live WebSockets, told 1001 at shutdown
        # Set (and replaced) each time a reload finishes, whatever its result.
        self.reload_done = trio.Event()
        self.bound = Bound()
        self.router = Router()
        self.http_conns: set[HttpConnection] = set()
        self.per_ip: dict[str, int] = {}
        self.stopping = trio.Event()
        self.reload_lock = trio.Lock()

    # -- accept ---------------------------------------------------------------
    async def _accept_loop(self, lsock: socket.socket, scheme: str, nursery: trio.Nursery) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(lsock)
                # Take the whole queue per wake-up (bounded, so a connection
                # storm still yields): one epoll round trip per batch, not
                # per connection.
                for _ in range(ACCEPT_BATCH):
                    try:
                        sock, peer = lsock.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            log.error("accept failed (%s); backing off", exc.strerror)
                            await trio.sleep(0.1)
                            break
                        raise
                    nursery.start_soon(self._handle, sock, peer[0], scheme)
        finally:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()

    async def _handle(self, sock: socket.socket, host: str, scheme: str) -> None:
        assert self.state is not None
        limits = self.state.settings.server
        total = len(self.http_conns)
        if total >= limits.max_connections or self.per_ip.get(host, 0) >= limits.max_connections_per_ip:
            await self._refuse(sock)
            return
        ctx = self.ssl_context if scheme == "https" else None
        transport = Transport(sock, ctx)
        conn = HttpConnection(transport, self.state, self.router, scheme, self.sessions, client_host=host)
        self.http_conns.add(conn)
        self.per_ip[host] = self.per_ip.get(host, 0) + 1
        try:
            await conn.run()
        except Exception:  # noqa: BLE001 - one connection's bug must not end the server
            log.exception("connection task from %s failed", host)
            transport.close()
        finally:
            self.http_conns.discard(conn)
            left = self.per_ip[host] - 1
            if left:
                self.per_ip[host] = left
            else:
                del self.per_ip[host]

    async def _refuse(self, sock: socket.socket) -> None:
        """Over the connection limit: a plain 503 and close (no TLS needed
        to say no; a TLS client simply sees the connection drop)."""
        body = b'{"error":"server_busy","error_description":"too many connections"}'
        try:
            sock.setblocking(False)
            sock.send(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        except OSError:
            pass
        finally:
            sock.close()
        await trio.lowlevel.checkpoint()

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
        self.ssl_context = ssl_context

    def _begin_shutdown(self) -> None:
        assert self.state is not None
        for session in list(self.sessions):
            session.withdraw(CloseCode.GOING_AWAY, "server shutting down")
        for conn in list(self.http_conns):
            conn.shutdown()

    async def serve(
        self,
        *,
        install_signals: bool = True,
        task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        raise_fd_limit(self.settings.server.max_connections)
        started = await build_state(self.settings)
        self.state = state = started.app
        self.broker, self.ssl_context = started.broker, started.ssl_context
        api.register(self.router)
        server = self.settings.server
        listeners = self._open_listeners()
        control_sock = control.open_control_socket(server.state_dir)
        pid_path: pidfile.PidFile | None = None
        try:
            async with trio.open_nursery() as root:
                # Signals first: a SIGHUP from `realtime reload` or a SIGTERM
                # right after the pid file or the `listening` line appears
                # must find our handlers, not the default actions.
                if install_signals:
                    await root.start(self._signals, root)
                pid_path = await trio.to_thread.run_sync(pidfile.write, server.state_dir, limiter=_file_limiter)
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
                                accepting.start_soon(self._accept_loop, sock, scheme, handlers)
                            if control_sock is not None:  # realtime connections|disconnect|revoke
                                accepting.start_soon(control.serve_control, control_sock, state, handlers,
                                                     self.http_conns)
                            task_status.started(self.bound)
                            self.notifier.ready(f"listening {' '.join(parts) if parts else '(no listeners)'}")
                            await self.stopping.wait()
                            self.notifier.stopping()
                            listen_scope.cancel()
                    self._begin_shutdown()
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

    def _open_listeners(self) -> list[tuple[socket.socket, str]]:
        """The listening sockets: those systemd passed (socket activation),
        else bound from the settings.  Fills :attr:`bound`."""
        server = self.settings.server
        inherited = systemd.inherited_listeners()
        if inherited is not None:
            if "https" in inherited and self.ssl_context is None:
                for sock in inherited.values():
                    sock.close()
                raise systemd.SocketActivationError(
                    "socket activation: an https socket was passed but [server] https is off, "
                    "so there is no TLS certificate to serve it with")
            log.info("socket activation: using the inherited socket(s) (%s); [server] http/https are not bound",
                     ", ".join(inherited))
            wanted = list(inherited.items())
        else:
            wanted = [(scheme, addr) for scheme, addr in (("http", server.http), ("https", server.https))
                      if addr is not None]
        listeners: list[tuple[socket.socket, str]] = []
        try:
            for scheme, source in wanted:
                sock = source if isinstance(source, socket.socket) else open_listener(source)
                listeners.append((sock, scheme))
                setattr(self.bound, scheme, _bound(sock))
        except OSError:
            for sock, _ in listeners:
                sock.close()
            raise
        return listeners
