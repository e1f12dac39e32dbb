"""``realtime key rotate``: a new active signing key in ``state_dir/keys``."""

from __future__ import annotations

import argparse
import sys
import time
import tomllib

from realtime.cli.admin.files import AdminError, Paths, notify

# -- keys ------------------------------------------------------------------------


def _max_access_ttl(paths: Paths) -> float:
    from realtime.config.units import parse_duration

    try:
        ttls = [parse_duration(paths.oauth.get("access_token_ttl", 900))]
        leeway = parse_duration(paths.oauth.get("leeway", 5))
    except ValueError as exc:
        raise AdminError(f"{paths.config}: [oauth]: {exc}") from None
    if paths.apps.is_file():
        try:
            raw = tomllib.loads(paths.apps.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AdminError(f"{paths.apps}: cannot read: {exc}") from None
        for app in raw.get("app", []) if isinstance(raw.get("app"), list) else []:
            if isinstance(app, dict) and "access_token_ttl" in app:
                try:
                    ttls.append(parse_duration(app["access_token_ttl"]))
                except ValueError as exc:
                    raise AdminError(f"{paths.apps}: access_token_ttl: {exc}") from None
    return max(ttls) + leeway


def cmd_key_rotate(args: argparse.Namespace) -> int:
    from realtime.tokens.keyring import KeyRing

    paths = Paths(args.config)
    alg = str(paths.oauth.get("signing_alg", "RS256"))
    retire_after = _max_access_ttl(paths)
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


