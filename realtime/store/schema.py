"""The SQLite schema of the state store (``state_dir/state.sqlite3``).

:data:`SCHEMA` is the newest layout; every statement is ``IF NOT EXISTS``
so a new file gets it whole and an existing one keeps its tables.  The
``meta`` row ``schema`` says which layout a file has; :func:`upgrade`
brings an older file forward with the steps of :data:`MIGRATIONS`, in
the same transaction as the rest of the opening, so a state dir written
by an older server opens in place.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 5

#: Device authorization grant (RFC 8628, schema 3): one row per request,
#: by SHA-256 of the device code and of the normalised user code
#: (realtime.store.devices).
DEVICE_TABLES = """
CREATE TABLE IF NOT EXISTS device_codes (
    device_hash TEXT PRIMARY KEY,
    user_hash   TEXT NOT NULL UNIQUE,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    interval    REAL NOT NULL,
    last_poll   REAL,
    status      TEXT NOT NULL,
    sub         TEXT,
    decided_at  REAL,
    family_id   TEXT,
    access_jti  TEXT,
    access_exp  REAL
);
CREATE INDEX IF NOT EXISTS device_codes_by_sub ON device_codes(sub, client_id);
"""
#: Schema 3's device statements as migration steps (no-ops after SCHEMA made them).
DEVICE_STEPS = tuple(statement.strip() for statement in DEVICE_TABLES.split(";") if statement.strip())

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT,
    code_challenge TEXT,
    sub            TEXT NOT NULL,
    scope          TEXT NOT NULL,
    expires_at     REAL NOT NULL,
    used_at        REAL,
    family_id      TEXT,
    access_jti     TEXT,
    access_exp     REAL,
    sid            TEXT,  -- the login session it was issued in (3)
    nonce          TEXT,  -- OIDC nonce of the authorization request (3)
    auth_time      REAL   -- when that session's user signed in (3)
);
CREATE TABLE IF NOT EXISTS families (
    family_id  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    credential TEXT,  -- fingerprint of the user's password when the family began (2)
    sid        TEXT,  -- the login session its code was issued in (3)
    auth_time  REAL   -- when that session's user signed in (3)
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES families(family_id),
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL,
    access_jti TEXT,
    access_exp REAL,
    successor  TEXT,                        -- hash of the refresh token its last answer carried (2)
    retries    INTEGER NOT NULL DEFAULT 0,  -- answers given again within the reuse grace (2)
    superseded INTEGER NOT NULL DEFAULT 0   -- 1: its answer was replaced by a retry's, so revoked (2)
);
CREATE INDEX IF NOT EXISTS refresh_by_family ON refresh_tokens(family_id);
CREATE TABLE IF NOT EXISTS revoked (
    jti TEXT PRIMARY KEY,
    exp REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    sub        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (sub, client_id)
);
-- OAuth 1.0a (RFC 5849).  Tokens are stored as SHA-256 of the token, their
-- shared secrets AES-GCM-encrypted under state_dir/oauth1.key.
CREATE TABLE IF NOT EXISTS oauth1_request_tokens (
    token_hash    TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    secret_enc    TEXT NOT NULL,
    callback      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    expires_at    REAL NOT NULL,
    sub           TEXT,
    verifier_hash TEXT,
    used_at       REAL
);
CREATE TABLE IF NOT EXISTS oauth1_access_tokens (
    token_hash TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS oauth1_nonces (
    consumer_key TEXT NOT NULL,
    token        TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    timestamp    INTEGER NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (consumer_key, token, nonce, timestamp)
);
CREATE INDEX IF NOT EXISTS oauth1_nonces_expiry ON oauth1_nonces(expires_at);
-- Browser login sessions (OIDC): the cookie holds a random id,
-- stored here only as its SHA-256; sid is the public id (id_token "sid").
CREATE TABLE IF NOT EXISTS login_sessions (
    id_hash    TEXT PRIMARY KEY,
    sid        TEXT NOT NULL UNIQUE,
    sub        TEXT NOT NULL,
    credential TEXT NOT NULL,
    auth_time  REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_sessions_expiry ON login_sessions(expires_at);
""" + DEVICE_TABLES

#: Indexes on columns a migration adds: made after the migration steps,
#: since :data:`SCHEMA` runs first and an old file lacks those columns.
LATE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS codes_by_sid ON codes(sid)",
    "CREATE INDEX IF NOT EXISTS families_by_sid ON families(sid)",
)

# Revocation cut-offs by sub (and client_id) for POST /api/revoke.
CUTOFFS_TABLE = """CREATE TABLE IF NOT EXISTS cutoffs (
    sub           TEXT NOT NULL,
    client_id     TEXT NOT NULL DEFAULT '',  -- '': every app
    issued_before REAL NOT NULL,
    keep_until    REAL NOT NULL,
    PRIMARY KEY (sub, client_id)
)"""
SCHEMA += CUTOFFS_TABLE + ";\n"

# The signing key ring when the store is shared ([store] url, schema 4):
# one row per key, the private key sealed with AES-GCM under a key derived
# from [store] key_file (realtime.store.signing_keys).  A node on its own
# keeps its ring in state_dir/keys; `realtime store copy` fills this table.
SIGNING_KEYS_TABLE = """CREATE TABLE IF NOT EXISTS signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,  -- the JWKS entry (JSON)
    private_enc  TEXT NOT NULL,  -- PKCS#8 DER, AES-GCM, the kid as associated data
    created_at   REAL NOT NULL,
    activated_at REAL NOT NULL,
    retire_at    REAL            -- NULL: not scheduled (the newest such key is active)
)"""
SCHEMA += SIGNING_KEYS_TABLE + ";\n"

# What a node must share with the others on a shared store (schema 5):
# provider logins waiting for the provider's answer, by SHA-256 of the
# state sent (realtime.store.provider_logins), and the users a provider's
# first login created (realtime.store.provider_users).
PROVIDER_TABLES = """
CREATE TABLE IF NOT EXISTS provider_logins (
    state_hash TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    binding    TEXT NOT NULL,  -- SHA-256 of the browser's rt_csrf cookie
    address    TEXT NOT NULL,  -- the browser's address (the per-address cap)
    sealed     TEXT NOT NULL,  -- the request, redirect URI and PKCE verifier, AES-GCM
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS provider_logins_expiry ON provider_logins(expires_at);
CREATE INDEX IF NOT EXISTS provider_logins_by_address ON provider_logins(address, created_at);
CREATE TABLE IF NOT EXISTS provider_users (
    name         TEXT PRIMARY KEY,      -- the local user name, PROVIDER:ID
    name_key     TEXT NOT NULL UNIQUE,  -- casefold(name)
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,         -- the provider's profile id
    scopes       TEXT NOT NULL,
    display_name TEXT,
    email        TEXT,
    created_at   REAL NOT NULL
);
"""
PROVIDER_STEPS = tuple(statement.strip() for statement in PROVIDER_TABLES.split(";") if statement.strip())
SCHEMA += PROVIDER_TABLES

#: The steps from each version to the next: ``MIGRATIONS[n]`` takes a
#: file from ``n - 1`` to ``n``.  Columns only ever get added, with
#: defaults that keep an old row's meaning.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # NULL: the family began before fingerprints; its first refresh binds it.
        "ALTER TABLE families ADD COLUMN credential TEXT",
        "ALTER TABLE refresh_tokens ADD COLUMN successor TEXT",
        "ALTER TABLE refresh_tokens ADD COLUMN retries INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE refresh_tokens ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0",
    ),
    3: (
        # OIDC login sessions: the login_sessions table itself is in SCHEMA
        # (IF NOT EXISTS).  NULL: issued before sessions, in none.
        "ALTER TABLE codes ADD COLUMN sid TEXT",
        "ALTER TABLE codes ADD COLUMN nonce TEXT",
        "ALTER TABLE codes ADD COLUMN auth_time REAL",
        "ALTER TABLE families ADD COLUMN sid TEXT",
        "ALTER TABLE families ADD COLUMN auth_time REAL",
        # Device codes (also in SCHEMA: no-ops by then, kept so the step
        # names every table version 3 brings).
        *DEVICE_STEPS,
        # Revocation cut-offs (POST /api/revoke).
        CUTOFFS_TABLE,
    ),
    4: (SIGNING_KEYS_TABLE,),
    5: PROVIDER_STEPS,
}


class SchemaTooNew(OSError):
    """The file was written by a newer server; this one must not guess its meaning.

    An OSError, as an unreadable state dir is: ``realtime serve`` reports it
    as "cannot start: ..." and exits 1.
    """


def upgrade(conn: sqlite3.Connection, name: str = "the state store") -> int:
    """Create what is missing and migrate an older file; returns the version it had.

    One ``BEGIN IMMEDIATE`` transaction, so two processes opening one old
    file migrate it once and a failed step leaves the file as it was.
    """
    conn.executescript("BEGIN IMMEDIATE;\n" + SCHEMA)  # executescript keeps the transaction open
    try:
        found = _migrate(conn, name)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def _migrate(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None:  # a new file: SCHEMA made the newest layout
        conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        _late_indexes(conn)
        return SCHEMA_VERSION
    found = int(row[0])
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{name} has schema version {found}, written by a newer server;"
            f" this one knows versions up to {SCHEMA_VERSION}"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version]:
            if not _column_exists(conn, statement):
                conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
    _late_indexes(conn)
    return found


def _column_exists(conn: sqlite3.Connection, statement: str) -> bool:
    """Whether ``ALTER TABLE t ADD COLUMN c ...`` would add a column that is
    there already: a table missing from an old file was just made whole by
    :data:`SCHEMA`, so the steps that add its newer columns are skipped."""
    words = statement.split()
    if words[:2] != ["ALTER", "TABLE"] or words[3:5] != ["ADD", "COLUMN"]:
        return False
    table, column = words[2], words[5]
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _late_indexes(conn: sqlite3.Connection) -> None:
    for statement in LATE_INDEXES:
        conn.execute(statement)
