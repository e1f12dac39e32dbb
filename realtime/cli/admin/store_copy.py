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
  ``created_at``);
- pending provider logins, re-sealed from ``oauth.key`` to the shared
  HMAC key (expired ones and ones that do not open are left behind);
- OAuth 1.0a secrets, re-sealed from ``state_dir/oauth1.key`` to the key
  nodes on a shared store derive from ``key_file``
  (:func:`realtime.oauth1.crypto.shared_key`): the token secrets in the
  copied rows and, once the database copy committed, the consumer secrets
  in the apps file, rewritten in place under its lock (comments kept; the
  file as it was is kept beside it as ``<apps file>.before-store-copy``).
  A value that does not open under ``oauth1.key`` is copied as it is and
  counted.  After the copy, run this node with ``[store] url``: its
  ``oauth1.key`` no longer opens the apps file.
"""

from __future__ import annotations

import argparse
import hmac
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import tomlkit

from realtime.cli.admin.store import read_settings
from realtime.config.edit import atomic_write, load_toml, locked
from realtime.config.redact import redact_url
from realtime.config.settings import Settings
from realtime.net import pidfile
from realtime.oauth.families import credential_fingerprint
from realtime.oauth.providers.pending import PendingSeal
from realtime.oauth1 import crypto
from realtime.oauth.services import KEY_FILE, credential_mark
from realtime.store import signing_keys
from realtime.store.keyfile import OAUTH_HMAC, StoreKeyError, derive_key, read_key_file
from realtime.store.provider_logins import PendingRow
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
    cols, rows = data["provider_logins"]
    data["provider_logins"] = (cols, rekey.provider_logins(rows, cols, time.time()))
    reseal = Reseal(crypto.load_key(state_dir), crypto.shared_key(store_key))
    for table in ("oauth1_request_tokens", "oauth1_access_tokens"):
        cols, rows = data[table]
        data[table] = (cols, [reseal.token(row, cols) for row in rows])

    target = PgStore.open(url, pool_size=1, timeout=10.0)
    try:
        target.db.write(lambda c: _fill(c, tables, data, key_rows))
    finally:
        target.close()
    if settings.oauth.apps is not None and settings.oauth.apps.is_file():
        reseal.apps_file(settings.oauth.apps)
    counts = {table: len(data[table][1]) for table in tables}
    counts["signing_keys"] = len(key_rows)
    counts["fingerprints re-keyed"] = rekey.rekeyed
    counts["fingerprints kept (no longer the user's credential)"] = rekey.kept
    counts["pending provider logins left behind (expired or not opening)"] = rekey.dropped
    counts["OAuth 1 secrets re-sealed"] = reseal.resealed
    counts["OAuth 1 secrets kept (not opening with oauth1.key)"] = reseal.kept
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
        self.rekeyed = self.kept = self.dropped = 0

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


    def provider_logins(self, rows: list[tuple[Any, ...]], cols: list[str], now: float) -> list[tuple[Any, ...]]:
        """Live pending logins sealed under the new key; the rest left behind."""
        old = PendingSeal(self.old) if self.old is not None else None
        new = PendingSeal(self.new)
        out = []
        for row in rows:
            stored = PendingRow(**dict(zip(cols, row)))
            pending = old.open(stored) if old is not None and stored.expires_at > now else None
            if pending is None:
                self.dropped += 1
                continue
            values = dict(zip(cols, row), sealed=new.seal(stored.state_hash, pending))
            out.append(tuple(values[c] for c in cols))
        return out


class Reseal:
    """OAuth 1.0a secrets from ``state_dir/oauth1.key`` to the shared store's key."""

    def __init__(self, old: bytes | None, new: bytes) -> None:
        self.old, self.new = old, new
        self.resealed = self.kept = 0

    def value(self, value: str, context: str) -> str:
        if self.old is not None:
            try:
                sealed = crypto.reseal(self.old, self.new, value, context)
            except crypto.SecretError:
                pass
            else:
                self.resealed += 1
                return sealed
        self.kept += 1
        return value

    def token(self, row: tuple[Any, ...], cols: list[str]) -> tuple[Any, ...]:
        i = cols.index("secret_enc")
        sealed = self.value(row[i], crypto.token_context(row[cols.index("token_hash")]))
        return (*row[:i], sealed, *row[i + 1:])

    def apps_file(self, path: Path) -> None:
        """Re-seal the consumer secrets of ``path`` in place, under the lock
        ``realtime app`` takes; the file as it was stays beside it."""
        with locked(path):
            doc = load_toml(path)
            apps = doc.get("app", [])
            changed = False
            for table in apps if isinstance(apps, list) else ():
                if not isinstance(table, dict):
                    continue
                sealed, consumer_key = table.get("consumer_secret_enc"), table.get("consumer_key")
                if isinstance(sealed, str) and isinstance(consumer_key, str):
                    new = self.value(sealed, crypto.consumer_context(consumer_key))
                    if new != sealed:
                        table["consumer_secret_enc"] = new
                        changed = True
            if changed:
                backup = path.with_name(path.name + ".before-store-copy")
                shutil.copy2(path, backup)
                atomic_write(path, tomlkit.dumps(doc))
