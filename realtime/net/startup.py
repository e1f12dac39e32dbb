"""Everything built once before the first accept: the state directory,
the store, the key ring, the OAuth keys, the broker, the TLS context,
webhooks, and the application object that composes them.

Apart from :mod:`realtime.net.server` because it is a sequence of reads
and wirings that runs once and returns plain values (:class:`Started`);
the server only decides which tasks run where, around what this builds.
"""

from __future__ import annotations

import functools
import os
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from realtime.api import admin_ops
from realtime.api.app import App
from realtime.config.settings import Settings
from realtime.hub import Hub
from realtime.net import reload as reloading
from realtime.net.provider_http import PROVIDER_HTTP
from realtime.net.tls import build_tls_context
from realtime.net.webhooks import Webhooks
from realtime.net.workers import ARGON2_THREADS, CLIENT_ARGON2_THREADS, thread_offload
from realtime.oauth import services as oauth
from realtime.oauth.passwords import Hasher
from realtime.oauth.providers import users as provider_users
from realtime.oauth1 import credentials as oauth1
from realtime.oauth1 import crypto as oauth1_crypto
from realtime.store.aio import AsyncStore
from realtime.store.keyfile import OAUTH_HMAC, derive_key, read_key_file
from realtime.tokens.keyring import KeyRing, RevokedSet

if TYPE_CHECKING:
    from realtime.net.redis.broker import RedisBroker

# The files of the state directory (keys, the pid file) are read and
# written in a worker thread, one at a time.
FILE_LIMITER = trio.CapacityLimiter(1)


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
    await trio.to_thread.run_sync(prepare_state_dir, server.state_dir, limiter=FILE_LIMITER)
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
        store_key = await trio.to_thread.run_sync(read_key_file, settings.store.key_file, limiter=FILE_LIMITER)
        oauth_key = derive_key(store_key, OAUTH_HMAC)
        # The signing key ring is in the store too (the first node creates its first key).
        keyring = await reloading.store_keyring(store, store_key, settings)
    else:
        store_key = None
        oauth_key = await trio.to_thread.run_sync(oauth.load_or_create_key, server.state_dir,
                                                  limiter=FILE_LIMITER)
        keyring = await trio.to_thread.run_sync(reloading.load_keyring, settings, limiter=FILE_LIMITER)
    if store_key is not None:  # shared store: every node opens every node's OAuth 1 secrets
        oauth1_key = oauth1_crypto.shared_key(store_key)
    else:
        oauth1_key = await trio.to_thread.run_sync(oauth1_crypto.load_or_create_key, server.state_dir,
                                                   limiter=FILE_LIMITER)
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
