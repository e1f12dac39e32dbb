"""The state store on PostgreSQL (``[store] url``, SPEC §14), through psycopg 3.

Blocking calls over a :class:`psycopg_pool.ConnectionPool`, run in worker
threads by the trio edge like the SQLite store: psycopg's async API is
written for asyncio, and the server runs on trio.
"""

from realtime.store.postgres.database import POOL_SIZE, PgDatabase, StoreUnavailable, connect
from realtime.store.postgres.schema import PG_SCHEMA_VERSION, SchemaMismatch, check_version, migrate, schema_version
from realtime.store.postgres.store import PgStore

__all__ = [
    "PG_SCHEMA_VERSION", "POOL_SIZE", "PgDatabase", "PgStore", "SchemaMismatch", "StoreUnavailable",
    "check_version", "connect", "migrate", "schema_version",
]
