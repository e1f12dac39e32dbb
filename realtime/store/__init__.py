"""The crash-safe state store: what the server writes itself.

``state_dir/state.sqlite3`` in WAL mode with ``synchronous=FULL``: a
transaction is on disk once ``COMMIT`` returns, so a grant that was
answered survives a ``kill -9`` (the grant handlers commit before they
answer).  It holds

* authorization codes (SHA-256 of the code, never the code),
* refresh tokens (SHA-256 of the token) grouped in families,
* revoked access-token ``jti`` s until their ``exp``,
* remembered consents per (sub, client_id),
* OAuth 1.0a request tokens, access tokens (hashed, secrets encrypted)
  and the nonces of the timestamp window (:mod:`realtime.oauth1`).

Codes and refresh tokens are 256-bit random values, so a plain SHA-256
is enough to make a stolen database useless for replay; argon2 is for
low-entropy secrets (passwords, client secrets).

:class:`Store` is synchronous and single-connection; every public method
is one transaction.  :class:`AsyncStore` runs those methods in one worker
thread at a time (``CapacityLimiter(1)``), which makes it the single
writer DESIGN.md §6 asks for.

RFC 6749 §10.5: "Authorization codes MUST be short lived and single-use.
If the authorization server observes multiple attempts to exchange an
authorization code for an access token, the authorization server SHOULD
attempt to revoke all access tokens already granted based on the
compromised authorization code."

The trio edge, :class:`~realtime.store.aio.AsyncStore`, is imported from
``realtime.store.aio`` by the shell alone: this face loads no trio.
"""

from realtime.store.records import (
    REVOKED_GRACE,
    CodeRecord,
    IssuedTokens,
    LoginSession,
    OAuth1AccessToken,
    OAuth1RequestToken,
    RefreshRecord,
    StoreClosed,
    StoreUnavailable,
    scope_set,
    scope_text,
    token_hash,
)
from realtime.store.schema import SCHEMA_VERSION
from realtime.store.store import Store

__all__ = [
    "CodeRecord", "IssuedTokens", "LoginSession", "OAuth1AccessToken", "OAuth1RequestToken", "REVOKED_GRACE", "RefreshRecord", "SCHEMA_VERSION",
    "Store", "StoreClosed", "StoreUnavailable", "scope_set", "scope_text", "token_hash",
]
