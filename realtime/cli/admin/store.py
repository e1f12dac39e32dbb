"""``realtime store migrate`` (SPEC §14) and the store half of ``realtime check``.

``migrate`` creates or upgrades the PostgreSQL schema that ``[store] url``
names (versioned, idempotent: :func:`realtime.store.postgres.migrate`) and
writes ``[store] key_file`` (32 random bytes, mode 0600) when it is
missing; an existing key file is never replaced, since the private keys
in the store are encrypted with it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from realtime.config.load import ConfigError, load_settings
from realtime.config.redact import redact_url
from realtime.config.settings import Settings
from realtime.store.keyfile import KEY_BYTES


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from realtime.store.postgres import SchemaMismatch, StoreUnavailable, connect, migrate

    settings = read_settings(args.config)
    if settings is None:
        return 1
    url = settings.store.url
    if url is None:
        print(f"error: {args.config} has no [store] url: the store is state_dir/state.sqlite3, "
              "which every server start migrates by itself", file=sys.stderr)
        return 1
    shown = redact_url(url)
    if settings.store.key_file is not None:
        problem = ensure_key_file(settings.store.key_file)
        if problem:
            print(f"error: [store] key_file: {problem}", file=sys.stderr)
            return 1
    try:
        with connect(url) as conn:
            found, now = migrate(conn, shown)
    except (StoreUnavailable, SchemaMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if found is None:
        print(f"{shown}: created schema version {now}")
    elif found == now:
        print(f"{shown}: schema version {now}, up to date")
    else:
        print(f"{shown}: upgraded schema version {found} to {now}")
    if settings.store.key_file is None:
        print("note: no [store] key_file: set one (realtime store migrate writes it) before the signing "
              "keys move into the store", file=sys.stderr)
    return 0


def ensure_key_file(path: Path) -> str | None:
    """Create ``path`` with 32 random bytes, mode 0600, unless it exists; a
    problem to report, or None.  An existing file must hold 32 bytes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        size = path.stat().st_size
        if size != KEY_BYTES:
            return f"{path} holds {size} bytes, not {KEY_BYTES}: not replaced (the keys in the store need it)"
        return None
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror or exc}"
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(KEY_BYTES))
        out.flush()
        os.fsync(out.fileno())
    print(f"wrote {path} ({KEY_BYTES} random bytes, mode 0600): every node on the database needs this file",
          file=sys.stderr)
    return None


def check_store(settings: Settings) -> list[str]:
    """``realtime check``: with a ``[store] url``, the database answers and is
    migrated to this version; the problems found ([] when fine)."""
    url = settings.store.url
    if url is None:
        return []
    from realtime.store.postgres import SchemaMismatch, StoreUnavailable, check_version, connect

    problems = []
    try:
        with connect(url, timeout=5.0) as conn:
            check_version(conn, redact_url(url))
    except (StoreUnavailable, SchemaMismatch) as exc:
        problems.append(f"[store] url: {exc}")
    key_file = settings.store.key_file
    if key_file is not None and not key_file.is_file():
        problems.append(f"[store] key_file: {key_file} does not exist: run `realtime store migrate`")
    return problems


def read_settings(config: Path) -> Settings | None:
    if not config.exists():
        print(f"error: {config}: no such file", file=sys.stderr)
        return None
    try:
        return load_settings(config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return None
