"""Users created by a first login through an external provider
(:mod:`realtime.oauth.providers.users`), kept in the store so that every
node on a shared store knows them.

One row per user: the local name (``PROVIDER:ID``), ``name_key`` (its
casefold, UNIQUE: no two stored users differ only in case), the provider
and the provider's profile id, the scopes and profile fields it was
created with.  The users file stays the operator's: the oauth layer
merges these rows under it (a user in the file wins).
"""

from __future__ import annotations

import sqlite3

import attrs

from realtime.store.database import Database
from realtime.store.records import scope_set, scope_text

__all__ = ["StoredUser", "add_provider_user", "provider_user_rows", "provider_users_stamp"]

_COLUMNS = "name, provider, subject, scopes, display_name, email, created_at"


@attrs.frozen
class StoredUser:
    name: str  # the local user name, PROVIDER:ID
    provider: str
    subject: str  # the provider's profile id
    scopes: frozenset[str]
    display_name: str | None
    email: str | None
    created_at: float


def _record(row: tuple[object, ...]) -> StoredUser:
    name, provider, subject, scopes, display_name, email, created_at = row
    return StoredUser(str(name), str(provider), str(subject), scope_set(str(scopes)),
                      None if display_name is None else str(display_name),
                      None if email is None else str(email), float(created_at))  # type: ignore[arg-type]


def add_provider_user(db: Database, user: StoredUser) -> StoredUser:
    """Store ``user`` unless a user of the same name, in any case, is stored
    already; returns the stored one (the caller's, or the one another node
    or request stored first: compare its ``name``)."""

    def run(c: sqlite3.Connection) -> StoredUser:
        c.execute(
            f"INSERT INTO provider_users({_COLUMNS}, name_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (user.name, user.provider, user.subject, scope_text(user.scopes), user.display_name, user.email,
             user.created_at, user.name.casefold()),
        )
        return _record(c.execute(f"SELECT {_COLUMNS} FROM provider_users WHERE name_key = ?",
                                 (user.name.casefold(),)).fetchone())

    return db.write(run)


def provider_user_rows(db: Database) -> list[StoredUser]:
    """Every stored user, oldest first."""
    return [_record(r) for r in db.read(f"SELECT {_COLUMNS} FROM provider_users ORDER BY created_at, name")]


def provider_users_stamp(db: Database) -> tuple[int, float]:
    """``(count, newest created_at)``: cheap to poll, changes when a user is added or removed."""
    count, newest = db.read("SELECT count(*), max(created_at) FROM provider_users")[0]
    return int(count), float(newest or 0.0)
