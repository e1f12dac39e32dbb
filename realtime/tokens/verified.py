"""Access tokens whose signature and claims already verified, so a client
that reconnects with the same token costs a keyed digest and a dict
lookup instead of a second RSA or ECDSA verify and JSON parse.

What is cached is only what cannot change for a given token string: the
signature held under this ring's key and the claims it carries.  Whatever
can change is checked again on every use by
:meth:`realtime.tokens.keyring.KeyRing.verify`: ``exp`` and ``nbf``/``iat``
against the clock, the revoked ``jti`` set and the cut-offs, and (by its
callers) whether the app and user still exist.  Each key ring has its own
cache, and a rotation, prune or reload builds a new ring, so a retired
key's tokens fall out with it.

Entries are keyed by a BLAKE2b digest of the token under a random key
made per ring: the token itself is not kept, and nobody outside the
process can aim two tokens at one entry.  The number of entries is
bounded; the oldest goes first.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import attrs

from realtime.tokens.jws import AccessClaims

#: Entries per key ring: each is ~0.3 KB besides the claims, which a live
#: session holds anyway.  Enough for every client of a busy node to
#: reconnect without a second signature check.
VERIFIED_TOKENS = 4096


@attrs.frozen
class Verified:
    """One token that verified: its claims, what it was checked against,
    and its time claims as signed (``times``: exp, iat and nbf)."""

    claims: AccessClaims
    issuer: str
    audience: str
    times: dict[str, Any]


class VerifiedTokens:
    """A bounded map from a keyed digest of a token to its :class:`Verified`."""

    __slots__ = ("_key", "_entries", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, Verified] = {}
        self.limit = VERIFIED_TOKENS if limit is None else limit

    def __len__(self) -> int:
        return len(self._entries)

    def digest(self, token: str) -> bytes:
        """The cache key of ``token`` (an ASCII compact JWS)."""
        return hashlib.blake2b(token.encode("ascii"), key=self._key, digest_size=16).digest()

    def get(self, digest: bytes) -> Verified | None:
        return self._entries.get(digest)

    def put(self, digest: bytes, entry: Verified) -> None:
        entries = self._entries
        if self.limit <= 0:
            return
        while len(entries) >= self.limit:
            # Insertion order: the oldest entry goes first.
            try:
                del entries[next(iter(entries))]
            except (StopIteration, RuntimeError, KeyError):
                break
        entries[digest] = entry

    def discard(self, digest: bytes) -> None:
        self._entries.pop(digest, None)
