"""Stored-record types and the hashing rule of the state store.

Plain values: every backend returns these, so the oauth layers never see
a row or a connection.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import attrs

#: Revocations are kept this long past ``exp``: verification accepts a token
#: until ``exp + leeway`` (as :class:`realtime.tokens.keyring.RevokedSet` does).
REVOKED_GRACE = 300.0


def token_hash(value: str) -> str:
    """SHA-256 hex of a high-entropy token or code: the only form stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def scope_text(scope: Iterable[str]) -> str:
    return " ".join(sorted(set(scope)))


def scope_set(text: str | None) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


@attrs.frozen
class CodeRecord:
    code_hash: str
    client_id: str
    redirect_uri: str | None
    code_challenge: str | None
    sub: str
    scope: frozenset[str]
    expires_at: float
    used_at: float | None
    sid: str | None = None  # the login session it was issued in (OIDC)
    nonce: str | None = None  # the authorization request's OIDC nonce, echoed in the id_token
    auth_time: float | None = None  # when that session's user signed in


@attrs.frozen
class RefreshRecord:
    token_hash: str
    family_id: str
    client_id: str
    sub: str
    scope: frozenset[str]
    issued_at: float
    expires_at: float
    used_at: float | None
    family_revoked: bool
    access_jti: str | None = None
    access_exp: float | None = None
    family_created_at: float = 0.0  # when the family's first token was issued
    credential: str | None = None  # the family's credential fingerprint; None: not bound yet
    retries: int = 0  # answers given again within the reuse grace
    superseded: bool = False  # its answer was replaced by a retry's (and revoked)
    sid: str | None = None  # the family's login session (OIDC), None: none
    auth_time: float | None = None  # when that session's user signed in


@attrs.frozen
class IssuedTokens:
    """What one grant answered with, as the store records it."""

    access_jti: str
    access_exp: float
    refresh_hash: str | None = None
    refresh_expires_at: float | None = None
    family_id: str | None = None  # None: a new family is made when refresh_hash is set
    client_id: str = ""
    sub: str = ""
    scope: frozenset[str] = frozenset()
    # The user's credential fingerprint: a new family is bound to it, and a
    # family from before fingerprints (NULL) is bound at its first rotation.
    credential: str | None = None
    # A new family's login session and sign-in time (OIDC: logout revokes by sid).
    sid: str | None = None
    auth_time: float | None = None


@attrs.frozen
class LoginSession:
    """A browser login session (OIDC).  The cookie holds a random id whose
    SHA-256 is ``id_hash``; ``sid`` is the public id put in id_tokens."""

    id_hash: str
    sid: str
    sub: str
    credential: str  # the user's credential mark at sign-in: a password change ends it
    auth_time: float
    expires_at: float


@attrs.frozen
class OAuth1RequestToken:
    """A temporary credential (RFC 5849 §2.1) and, once the user approved
    it, who did and the verifier's hash (§2.2)."""

    token_hash: str
    client_id: str
    secret_enc: str
    callback: str  # an absolute URI or "oob"
    scope: frozenset[str]
    expires_at: float
    sub: str | None
    verifier_hash: str | None
    used_at: float | None


@attrs.frozen
class OAuth1AccessToken:
    """Token credentials (RFC 5849 §2.3); ``token_id`` is the principal's ``jti``."""

    token_hash: str
    token_id: str
    client_id: str
    sub: str
    scope: frozenset[str]
    secret_enc: str
    issued_at: float
    expires_at: float | None  # None: until revoked
    revoked_at: float | None


class StoreClosed(RuntimeError):
    """A call reached the store after :meth:`close` (a late request at shutdown)."""


class StoreUnavailable(OSError):
    """The store's database did not answer (PostgreSQL down, unreachable, or
    every pooled connection busy past the wait).  At start "cannot start";
    on a request, 503 ``temporarily_unavailable``: nothing was answered, and
    the node keeps serving what needs no store (live sockets stay open)."""

