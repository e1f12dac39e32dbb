"""``realtime store copy --to URL [-c PATH]`` (SPEC §14): move a node's
SQLite state and key ring into a migrated, empty PostgreSQL database.

The node that PATH configures must be stopped (no server holds its pid
file's lock), and PATH must name ``[store] key_file``: the file the
PostgreSQL nodes will hold.  Everything is written in one transaction,
so a failed copy leaves the database empty:

- every table of ``state.sqlite3``, row for row, refresh-token families
  before the refresh tokens that reference them;
- the credential fingerprints of refresh families and login sessions,
  re-keyed: a node alone makes them with ``state_dir/oauth.key``, nodes
  on a shared store with a key derived from ``key_file``.  A fingerprint
  is recomputed from the users file only when it matches the user's
  credential under the old key; one that does not (the password changed
  since, or the user is gone) is kept as it is, and stays refused, as it
  would have been on the old node;
- the signing keys of ``state_dir/keys``, sealed with ``key_file``, with
  their schedule (``activated_at`` is unknown for a key file: its
  ``created_at``).
"""

from __future__ import annotations

import argparse
import hmac
import sys
from pathlib import Path
from typing import Any

from realtime.cli.admin.store import read_settings
from realtime.config.redact import redact_url
from realtime.config.settings import Settings
from realtime.net import pidfile
from realtime.oauth.families import credential_fingerprint
from realtime.oauth.services import KEY_FILE, credential_mark
from realtime.store import signing_keys
from realtime.store.keyfile import OAUTH_HMAC, StoreKeyError, derive_key, read_key_file
from realtime.store.store import Store
from realtime.tokens.keyring import KeyRing

#: Tables whose rows others reference come first.
FIRST = ("families",)
#: Not copied: the version row is the destination's own; a node alone has
#: no signing_keys rows (its ring is state_dir/keys, copied below).
SKIPPED = ("meta", "signing_keys")


class CopyError(Exception):
    pass


def cmd_store_copy(args: argparse.Namespace) -> int:
    settings = read_settings(args.config)
    if settings is None:
        return 1
    try:
        counts = copy_state(settings, args.to)
    except (CopyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = redact_url(args.to)
    for table, n in counts.items():
        print(f"{table}: {n}")
    print(f"copied {settings.server.state_dir} into {shown}", file=sys.stderr)
    return 0


def copy_state(settings: Settings, url: str) -> dict[str, int]:
    """Copy; returns rows per table.  Raises CopyError (or an OSError) with
    what is wrong: node running, no key file, database not empty..."""
    from realtime.store.postgres import PgStore

    state_dir = settings.server.state_dir
    if settings.store.key_file is None:
        raise CopyError(f"{settings.config_path} has no [store] key_file: name the file the PostgreSQL nodes "
                        "hold (realtime store migrate writes it)")
    try:
        store_key = read_key_file(settings.store.key_file)
    except StoreKeyError as exc:
        raise CopyError(str(exc)) from None
    source = state_dir / "state.sqlite3"
    if not source.is_file():
        raise CopyError(f"{source}: no such file: nothing to copy")
    if pidfile.running(state_dir):
        raise CopyError(f"a server is running on {state_dir} (pid {pidfile.read(state_dir)}): stop it first")
    old_key = _old_key(state_dir)
    new_key = derive_key(store_key, OAUTH_HMAC)
    keys_dir = state_dir / "keys"
    ring = KeyRing.load(keys_dir) if keys_dir.is_dir() and any(keys_dir.glob("*.json")) else None
    key_rows = [] if ring is None else [
        signing_keys.seal(store_key, key, activated_at=key.created_at) for key in ring.keys.values()
    ]
    sqlite = Store.open(source)
    try:
        tables = _tables(sqlite)
        data = {table: _rows(sqlite, table) for table in tables}
    finally:
        sqlite.close()
    rekey = Rekey(settings, old_key, new_key)
    cols, rows = data["families"]
    data["families"] = (cols, [rekey.family(row, cols) for row in rows])
    cols, rows = data["login_sessions"]
    data["login_sessions"] = (cols, [rekey.session(row, cols) for row in rows])

    target = PgStore.open(url, pool_size=1, timeout=10.0)
    try:
        target.db.write(lambda c: _fill(c, tables, data, key_rows))
    finally:
        target.close()
    counts = {table: len(data[table][1]) for table in tables}
    counts["signing_keys"] = len(key_rows)
    counts["fingerprints re-keyed"] = rekey.rekeyed
    counts["fingerprints kept (no longer the user's credential)"] = rekey.kept
    return counts


def _old_key(state_dir: Path) -> bytes | None:
    try:
        data = (state_dir / KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return data[:32] if len(data) >= 32 else None


def _tables(store: Store) -> list[str]:
    names = [r[0] for r in store.db.read("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    names = [n for n in names if n not in SKIPPED and not n.startswith("sqlite_")]
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def _rows(store: Store, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cols = [r[1] for r in store.db.read(f"PRAGMA table_info({table})")]
    return cols, store.db.read(f"SELECT {', '.join(cols)} FROM {table}")


def _fill(c: Any, tables: list[str], data: dict[str, tuple[list[str], list[tuple[Any, ...]]]],
          key_rows: list[signing_keys.KeyRow]) -> None:
    for table in [*tables, "signing_keys"]:
        if c.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            raise CopyError(f"the database already holds {table} rows: copy only into a new, migrated database")
    for table in tables:
        cols, rows = data[table]
        if rows:
            marks = ", ".join("?" for _ in cols)
            c.executemany(f"INSERT INTO {table}({', '.join(cols)}) VALUES ({marks})", rows)
    signing_keys.insert_rows(c, key_rows)


class Rekey:
    """Credential fingerprints from ``oauth.key`` to the key derived from ``key_file``."""

    def __init__(self, settings: Settings, old: bytes | None, new: bytes) -> None:
        self.users = settings.users
        self.old, self.new = old, new
        self.rekeyed = self.kept = 0

    def family(self, row: tuple[Any, ...], cols: list[str]) -> tuple[Any, ...]:
        i = cols.index("credential")
        credential, user = row[i], self.users.get(row[cols.index("sub")])
        if credential is None or self.old is None or user is None:
            self.kept += credential is not None
            return row
        if not hmac.compare_digest(credential, credential_fingerprint(self.old, user)):
            self.kept += 1
            return row
        self.rekeyed += 1
        return (*row[:i], credential_fingerprint(self.new, user), *row[i + 1:])

    def session(self, row: tuple[Any, ...], cols: list[str]) -> tuple[Any, ...]:
        i = cols.index("credential")
        credential, user = row[i], self.users.get(row[cols.index("sub")])
        if self.old is None or user is None or not hmac.compare_digest(credential, credential_mark(self.old, user)):
            self.kept += 1
            return row
        self.rekeyed += 1
        return (*row[:i], credential_mark(self.new, user), *row[i + 1:])

