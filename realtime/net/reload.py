"""Reload (DESIGN.md §7): build a whole new snapshot off the hot path, swap
it only if every file is valid, then close the live connections that lost
their right to exist — found through the hub's indexes, not a scan.

The functions here change the application object (settings, key ring,
the last reload's outcome); the server keeps its own trio state (the TLS
context it is handed through ``set_tls``, the reload-done event).
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Awaitable, Callable

import attrs
import trio

from realtime.api.app import App
from realtime.config.load import ConfigError, load_settings
from realtime.config.settings import Settings
from realtime.protocol.close import CloseCode
from realtime.net.store_poll import poll_store
from realtime.net.tls import build_tls_context
from realtime.oauth.providers import users as provider_users
from realtime.oauth1.resource import OAUTH1_KID, withdraw_oauth1
from realtime.protocol import replies
from realtime.store import signing_keys
from realtime.store.calls import StoreCalls
from realtime.tokens.keyring import KeyRing

log = logging.getLogger("realtime.reload")

HOUSEKEEPING_INTERVAL = 30.0
KEY_POLL_INTERVAL = 0.25  # seconds between two looks at the shared key ring


def _load(settings: Settings) -> Settings:
    assert settings.config_path is not None
    return load_settings(settings.config_path)


async def reload(state: App, trigger: str, set_tls: Callable[[ssl.SSLContext | None], None]) -> bool:
    """Re-read every file; True when the new snapshot is in force.

    ``set_tls`` receives the new TLS context when the snapshot is applied.
    """
    applied = await _reload(state, trigger, set_tls)
    state.metrics.reloads[state.last_reload.get("result", "error")] += 1
    return applied


async def _reload(state: App, trigger: str, set_tls: Callable[[ssl.SSLContext | None], None]) -> bool:
    old = state.settings
    started = time.time()
    if old.config_path is None:
        log.warning("reload (%s): running on the embedded default; nothing to re-read", trigger)
        state.last_reload = {"result": "skipped", "time": started, "trigger": trigger}
        return False
    try:
        from_files = await trio.to_thread.run_sync(_load, old)
        new = _keep_listeners(from_files, old)
        ssl_context = await trio.to_thread.run_sync(build_tls_context, new)
        if state.store_key is not None:
            keyring = await store_keyring(state.store, state.store_key, new)
        else:
            keyring = await trio.to_thread.run_sync(load_keyring, new)
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("reload (%s) rejected: %s", trigger, issue)
        state.last_reload = {"result": "error", "time": started, "trigger": trigger,
                             "errors": [str(i) for i in exc.issues]}
        return False
    except (OSError, ValueError) as exc:
        log.error("reload (%s) rejected: %s", trigger, exc)
        state.last_reload = {"result": "error", "time": started, "trigger": trigger, "errors": [str(exc)]}
        return False
    if (from_files.server.http, from_files.server.https) != (old.server.http, old.server.https):
        log.warning("reload: listener addresses changed in the file; they apply after a restart")
    # Users a provider's first login put in a shared store stay (the file's win).
    new = provider_users.merged(new, state.oauth.provider_users.users)
    state.settings = new
    set_tls(ssl_context)
    state.keyring = keyring
    for conn, channel in state.hub.update_rules(new.channels, new.websocket):
        conn.send_obj(replies.error(None, "subscription_revoked", f"no longer allowed on {channel}"))
    closed = (withdraw_lost_access(state, old, new) + withdraw_retired_keys(state)
              + withdraw_oauth1(state.hub.connections, old, new))
    log.info("reload (%s) applied: %d apps, %d users, %d channel rules; %d connections closed",
             trigger, len(new.apps), len(new.users), len(new.channels), closed)
    state.last_reload = {"result": "ok", "time": started, "trigger": trigger}
    return True


def load_keyring(settings: Settings) -> KeyRing:
    """Blocking: the ring as the files say now (``realtime key rotate`` writes
    them), creating a key of a newly configured ``signing_alg`` if needed."""
    return KeyRing.load_or_create(
        settings.server.state_dir / "keys",
        settings.oauth.signing_alg,
        retire_after=settings.key_retire_after,
    )


async def store_keyring(store: StoreCalls, store_key: bytes, settings: Settings) -> KeyRing:
    """The ring in the shared store, with a key of ``signing_alg`` active
    (created there if missing: the first node to start makes the first key)."""
    return await store.call(signing_keys.load_ring, store.sync, store_key, settings.oauth.signing_alg,
                            retire_after=settings.key_retire_after, now=time.time())


async def watch_signing_keys(state: App, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """With the ring in the store: poll its ``(kid, retire_at)`` list every
    :data:`KEY_POLL_INTERVAL` and take the new ring when it changed, so a
    ``realtime key rotate`` on any node (or a pruning) is seen here within
    a second.  A failed poll (database down) is retried at the next tick."""
    store_key = state.store_key
    assert store_key is not None

    async def step() -> None:
        stamp = await state.store.call(state.store.sync.signing_key_stamp)
        if stamp == signing_keys.ring_stamp(state.keyring):
            return
        ring = await state.store.call(signing_keys.load_ring, state.store.sync, store_key, now=time.time())
        if ring.active.kid != state.keyring.active.kid:
            log.info("signing key %s is active (from the store)", ring.active.kid)
        state.keyring = ring
        withdraw_retired_keys(state)

    task_status.started()
    await poll_store(log, "the signing keys", KEY_POLL_INTERVAL, step, errors=(OSError, ValueError))


async def watch_provider_users(state: App, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """On a shared store: poll the users other nodes' first provider logins
    created, every :data:`~realtime.oauth.providers.users.POLL_INTERVAL`,
    and merge them into the snapshot.  A failed poll is retried at the next tick."""
    async def step() -> None:
        if await provider_users.refresh(state):
            log.info("provider users from the store: %d", len(state.oauth.provider_users.users))

    task_status.started()
    await poll_store(log, "the provider users", provider_users.POLL_INTERVAL, step)


def _keep_listeners(new: Settings, old: Settings) -> Settings:
    """Listener addresses and the state dir need a restart: keep the running ones."""
    server = attrs.evolve(new.server, http=old.server.http, https=old.server.https,
                          state_dir=old.server.state_dir)
    return attrs.evolve(new, server=server)


def withdraw_lost_access(state: App, old: Settings, new: Settings) -> int:
    """Close with 4003 every connection whose app or user is gone or disabled."""
    index = state.hub.connections
    doomed = []
    for client_id in old.apps.keys() - new.apps.keys():
        doomed.extend(index.by_client(client_id))
    for name, user in new.users.items():
        if user.disabled and not (old.users.get(name) and old.users[name].disabled):
            doomed.extend(index.by_sub(name))
    for name in old.users.keys() - new.users.keys():
        doomed.extend(index.by_sub(name))
    for conn in doomed:
        conn.withdraw(CloseCode.REVOKED, "access withdrawn")
    return len(doomed)


def withdraw_retired_keys(state: App) -> int:
    closed = 0
    live = set(state.keyring.keys) | {OAUTH1_KID}  # OAuth 1 principals carry no signing key
    for kid in list(state.hub.connections.kids()):
        if kid not in live:
            for conn in list(state.hub.connections.by_kid(kid)):
                conn.withdraw(CloseCode.REVOKED, "signing key retired")
                closed += 1
    return closed


async def housekeeping(state: App) -> None:
    """Periodic: forget expired revocations, retire old signing keys."""
    while True:
        await trio.sleep(HOUSEKEEPING_INTERVAL)
        state.revoked.sweep()
        keys_dir = state.settings.server.state_dir / "keys"
        try:
            if state.store_key is not None:
                ring = await state.store.call(signing_keys.prune_ring, state.store.sync, state.store_key,
                                              time.time())
            else:
                ring = await trio.to_thread.run_sync(state.keyring.prune, keys_dir)
        except (OSError, ValueError) as exc:
            log.error("key pruning failed: %s", exc)
            continue
        if set(ring.keys) != set(state.keyring.keys):
            state.keyring = ring
            withdraw_retired_keys(state)


async def watch_files(
    state: App,
    do_reload: Callable[[str], Awaitable[bool]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """With ``watch = true``: poll the config files' (mtime, size, inode) once
    a second and reload after they settle (an editor's write-then-rename
    shows up as a new inode)."""
    def stamp() -> tuple:
        out = []
        for path in state.settings.sources:
            try:
                st = path.stat()
                out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((str(path), None))
        return tuple(out)

    last = await trio.to_thread.run_sync(stamp)
    task_status.started()  # the baseline is taken: any later edit is seen
    while True:
        await trio.sleep(1.0)
        now = await trio.to_thread.run_sync(stamp)
        if now != last:
            await trio.sleep(0.3)  # debounce a burst of writes
            last = await trio.to_thread.run_sync(stamp)
            await do_reload("watch")
