"""``realtime key rotate``: a new active signing key in ``state_dir/keys``,
or, with ``[store] url``, in the store every node on that database reads
(SPEC §14; each node picks it up within a second)."""

from __future__ import annotations

import argparse
import sys
import time

from realtime.cli.admin.files import AdminError, Paths, notify
from realtime.config.load import ConfigError, load_key_settings
from realtime.config.settings import Settings
from realtime.tokens.keyring import KeyRing


def cmd_key_rotate(args: argparse.Namespace) -> int:
    paths = Paths(args.config)
    try:
        # The retirement window is the server's (Settings.key_retire_after),
        # with the snapshot's own defaults, not a second computation.
        settings = load_key_settings(paths.config, paths.apps)
    except ConfigError as exc:
        raise AdminError(str(exc)) from None
    alg = settings.oauth.signing_alg
    retire_after = settings.key_retire_after
    if settings.store.url is not None:
        return _rotate_in_store(settings, alg, retire_after)
    keys_dir = paths.state_dir / "keys"
    try:
        paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise AdminError(f"{paths.state_dir}: cannot create the state dir: {exc}") from None
    now = time.time()
    ring = KeyRing.load_or_create(keys_dir, alg, retire_after=retire_after, now=now)
    new_ring = ring.rotate(keys_dir, retire_after=retire_after, now=now)
    kid = new_ring.active.kid
    print(f"kid: {kid}")
    print(f"note: old keys keep verifying for {int(retire_after)} s", file=sys.stderr)
    notify(paths)
    return 0


def _rotate_in_store(settings: Settings, alg: str, retire_after: float) -> int:
    from realtime.store.keyfile import read_key_file
    from realtime.store.postgres import PgStore, SchemaMismatch, StoreUnavailable
    from realtime.store.signing_keys import load_ring, rotate_ring

    if settings.store.key_file is None:
        raise AdminError("[store] url needs [store] key_file: the private keys in the store are encrypted with it")
    assert settings.store.url is not None
    try:
        store_key = read_key_file(settings.store.key_file)
        store = PgStore.open(settings.store.url, pool_size=1, timeout=10.0)
    except (OSError, SchemaMismatch, StoreUnavailable) as exc:
        raise AdminError(str(exc)) from None
    try:
        now = time.time()
        load_ring(store, store_key, alg, retire_after=retire_after, now=now)  # a first key if none yet
        ring = rotate_ring(store, store_key, alg, retire_after=retire_after, now=now)
    except (OSError, ValueError) as exc:
        raise AdminError(str(exc)) from None
    finally:
        store.close()
    print(f"kid: {ring.active.kid}")
    print(f"note: old keys keep verifying for {int(retire_after)} s; every node on {store.url} "
          "signs with the new key within a second", file=sys.stderr)
    return 0
