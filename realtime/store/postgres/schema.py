"""The PostgreSQL schema of the shared state store, and its migrations.

The tables and columns are the SQLite store's (:mod:`realtime.store.schema`,
version 5), so the same table functions run on both; only the types
differ: timestamps are ``DOUBLE PRECISION`` (PostgreSQL's ``REAL`` is a
4-byte float, too coarse for epoch seconds) and the OAuth 1.0a
timestamp is ``BIGINT``.

PostgreSQL has its own version numbers (``meta`` row ``schema``):
:data:`PG_SCHEMA_VERSION` is the newest, :data:`PG_MIGRATIONS` ``[n]``
takes a database from ``n - 1`` to ``n``.  :func:`migrate` runs in one
transaction under an advisory lock, so two nodes (or two operators)
migrating one database at once do it once, and a failed step leaves the
database as it was.  Servers never migrate: they refuse to open a
database whose version is not theirs (``realtime store migrate`` first).
"""

from __future__ import annotations

from typing import Any

PG_SCHEMA_VERSION = 4

#: Any fixed number: the advisory lock that serialises migrations.
_MIGRATE_LOCK = 0x7265616C74696D65  # "realtime"

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT,
    code_challenge TEXT,
    sub            TEXT NOT NULL,
    scope          TEXT NOT NULL,
    expires_at     DOUBLE PRECISION NOT NULL,
    used_at        DOUBLE PRECISION,
    family_id      TEXT,
    access_jti     TEXT,
    access_exp     DOUBLE PRECISION,
    sid            TEXT,
    nonce          TEXT,
    auth_time      DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS codes_by_sid ON codes(sid);
CREATE INDEX IF NOT EXISTS codes_by_family ON codes(family_id);
CREATE TABLE IF NOT EXISTS families (
    family_id  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    credential TEXT,
    sid        TEXT,
    auth_time  DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS families_by_sid ON families(sid);
CREATE INDEX IF NOT EXISTS families_by_sub ON families(sub, client_id);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES families(family_id),
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    issued_at  DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at    DOUBLE PRECISION,
    access_jti TEXT,
    access_exp DOUBLE PRECISION,
    successor  TEXT,
    retries    INTEGER NOT NULL DEFAULT 0,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS refresh_by_family ON refresh_tokens(family_id);
CREATE TABLE IF NOT EXISTS revoked (
    jti TEXT PRIMARY KEY,
    exp DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    sub        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sub, client_id)
);
CREATE TABLE IF NOT EXISTS oauth1_request_tokens (
    token_hash    TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    secret_enc    TEXT NOT NULL,
    callback      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    expires_at    DOUBLE PRECISION NOT NULL,
    sub           TEXT,
    verifier_hash TEXT,
    used_at       DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS oauth1_access_tokens (
    token_hash TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    issued_at  DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS oauth1_nonces (
    consumer_key TEXT NOT NULL,
    token        TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    timestamp    BIGINT NOT NULL,
    expires_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (consumer_key, token, nonce, timestamp)
);
CREATE INDEX IF NOT EXISTS oauth1_nonces_expiry ON oauth1_nonces(expires_at);
CREATE TABLE IF NOT EXISTS login_sessions (
    id_hash    TEXT PRIMARY KEY,
    sid        TEXT NOT NULL UNIQUE,
    sub        TEXT NOT NULL,
    credential TEXT NOT NULL,
    auth_time  DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS login_sessions_expiry ON login_sessions(expires_at);
CREATE TABLE IF NOT EXISTS device_codes (
    device_hash TEXT PRIMARY KEY,
    user_hash   TEXT NOT NULL UNIQUE,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    interval    DOUBLE PRECISION NOT NULL,
    last_poll   DOUBLE PRECISION,
    status      TEXT NOT NULL,
    sub         TEXT,
    decided_at  DOUBLE PRECISION,
    family_id   TEXT,
    access_jti  TEXT,
    access_exp  DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS device_codes_by_sub ON device_codes(sub, client_id);
"""

#: Version 2: revocation cut-offs by sub (POST /api/revoke), which the
#: SQLite store gained while version 1 was written.
PG_CUTOFFS = """CREATE TABLE IF NOT EXISTS cutoffs (
    sub           TEXT NOT NULL,
    client_id     TEXT NOT NULL DEFAULT '',
    issued_before DOUBLE PRECISION NOT NULL,
    keep_until    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sub, client_id)
)"""
PG_SCHEMA += PG_CUTOFFS + ";\n"

#: Version 2 too: the shared signing key ring (SQLite schema 4's table).
PG_SIGNING_KEYS = """CREATE TABLE IF NOT EXISTS signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    private_enc  TEXT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    activated_at DOUBLE PRECISION NOT NULL,
    retire_at    DOUBLE PRECISION
)"""
PG_SCHEMA += PG_SIGNING_KEYS + ";\n"

#: Version 3: pending provider logins and provider-created users (SQLite schema 5).
PG_PROVIDER_TABLES = """
CREATE TABLE IF NOT EXISTS provider_logins (
    state_hash TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    binding    TEXT NOT NULL,
    address    TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS provider_logins_expiry ON provider_logins(expires_at);
CREATE INDEX IF NOT EXISTS provider_logins_by_address ON provider_logins(address, created_at);
CREATE TABLE IF NOT EXISTS provider_users (
    name         TEXT PRIMARY KEY,
    name_key     TEXT NOT NULL UNIQUE,
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    display_name TEXT,
    email        TEXT,
    created_at   DOUBLE PRECISION NOT NULL
);
"""
PG_SCHEMA += PG_PROVIDER_TABLES

#: Version 4: one random marker row per write transaction (PostgreSQL
#: only: :mod:`realtime.store.postgres.database`).  A COMMIT whose answer
#: was lost is judged by whether its marker is there; a transaction id
#: cannot serve, PostgreSQL hands the same one out again after a crash.
#: ``written_at`` is the database's clock, so the sweep never depends on
#: a node's.
PG_COMMIT_MARKERS = """CREATE TABLE IF NOT EXISTS commit_markers (
    marker     TEXT PRIMARY KEY,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
PG_SCHEMA += PG_COMMIT_MARKERS + ";\n"

#: Version 4 too: when each revocation was written (the database's
#: clock), so another node's revocation watcher reads only what is new
#: (:mod:`realtime.store.postgres.revocations`).  The shared SQL never
#: names the column: its default fills it.
PG_REVOKED_AT = (
    "ALTER TABLE revoked ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMPTZ NOT NULL DEFAULT now()",
    "CREATE INDEX IF NOT EXISTS revoked_by_time ON revoked(revoked_at)",
)
PG_SCHEMA += "".join(statement + ";\n" for statement in PG_REVOKED_AT)

#: Tables and columns the SQLite store has no counterpart for.
PG_ONLY_TABLES = frozenset({"commit_markers"})
PG_ONLY_COLUMNS = frozenset({("revoked", "revoked_at")})

#: ``PG_MIGRATIONS[n]`` takes a database from version ``n - 1`` to ``n``
#: (version 1 is the first PostgreSQL layout).
PG_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (PG_CUTOFFS, PG_SIGNING_KEYS),
    3: (PG_PROVIDER_TABLES,),
    4: (PG_COMMIT_MARKERS, *PG_REVOKED_AT),
}


class SchemaMismatch(OSError):
    """The database is not at this server's schema version (not migrated,
    or migrated by a newer server).  An OSError, as an unreadable state dir
    is: ``realtime serve`` reports it as "cannot start: ..." and exits 1."""


def schema_version(conn: Any) -> int | None:
    """The version recorded in the database; None when it was never migrated."""
    row = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if row is None else int(row[0])


def check_version(conn: Any, shown: str) -> None:
    """Raise :class:`SchemaMismatch` unless the database is at :data:`PG_SCHEMA_VERSION`."""
    found = schema_version(conn)
    if found is None:
        raise SchemaMismatch(f"{shown} has no realtime tables: run `realtime store migrate` first")
    if found < PG_SCHEMA_VERSION:
        raise SchemaMismatch(f"{shown} has schema version {found}, this server needs {PG_SCHEMA_VERSION}:"
                             " run `realtime store migrate` first")
    if found > PG_SCHEMA_VERSION:
        raise SchemaMismatch(f"{shown} has schema version {found}, written by a newer server;"
                             f" this one knows versions up to {PG_SCHEMA_VERSION}")


def migrate(conn: Any, shown: str = "the database") -> tuple[int | None, int]:
    """Create or upgrade the tables on ``conn`` (an autocommit psycopg
    connection) in one transaction; returns ``(version found, version now)``,
    found None for an empty database.  Idempotent: a migrated database is
    left as it is."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        found = schema_version(conn)
        if found is not None and found > PG_SCHEMA_VERSION:
            raise SchemaMismatch(f"{shown} has schema version {found}, written by a newer server;"
                                 f" this one knows versions up to {PG_SCHEMA_VERSION}")
        if found is None:
            conn.execute(PG_SCHEMA)
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema', %s)", (str(PG_SCHEMA_VERSION),))
        else:
            for version in range(found + 1, PG_SCHEMA_VERSION + 1):
                for statement in PG_MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (str(PG_SCHEMA_VERSION),))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found, PG_SCHEMA_VERSION
