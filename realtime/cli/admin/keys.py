"""``realtime key rotate``: a new active signing key in ``state_dir/keys``."""

from __future__ import annotations

import argparse
import sys
import time

from realtime.cli.admin.files import AdminError, Paths, notify
from realtime.config.load import ConfigError, load_key_settings
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
