"""argon2id for passwords and client secrets, off the event loop.

argon2 verification costs tens of milliseconds of CPU by design, so the
async helpers hand it to an injected :class:`Offload` (a worker thread
behind a small limiter, built by :mod:`realtime.net.workers`; DESIGN.md
§6): a burst of logins cannot starve the WebSocket fan-out of its core
for long, and cannot spawn unbounded threads.  argon2 never runs on the
event loop.

Unknown users and clients are checked against a dummy hash so the answer
takes as long as for a known name (no existence oracle by timing).

:class:`SecretCache` remembers *successful* client-secret checks for a
minute under ``HMAC-SHA256(process key, client_id, secret)``: the secret
itself is never kept, and a dump of the cache without the process key
does not help guess it.  ``client_credentials`` then costs one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from functools import partial
from typing import Iterable

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from realtime.oauth.offload import Offload

# argon2-cffi's defaults follow RFC 9106's second recommendation
# (argon2id, t=3, m=64 MiB, p=4).
_hasher = PasswordHasher(type=Type.ID)
_dummy_hash: str | None = None


def hash_secret(secret: str) -> str:
    """argon2id hash (PHC string) of a password or client secret."""
    return _hasher.hash(secret)


def verify_secret(hashed: str | None, secret: str) -> bool:
    """True if ``secret`` matches ``hashed``; never raises for bad input.

    ``hashed`` None (unknown user, or a user without a password) still
    spends the same work on a dummy hash and answers False.
    """
    if not isinstance(secret, str):
        return False
    if hashed is None or not hashed.startswith("$argon2"):
        _verify(dummy_hash(), secret)
        return False
    return _verify(hashed, secret)


def _verify(hashed: str, secret: str) -> bool:
    try:
        return _hasher.verify(hashed, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False


def dummy_hash() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


class Hasher:
    """Async argon2: hashing and verifying through ``offload`` (worker
    threads behind a limiter)."""

    def __init__(self, offload: Offload) -> None:
        self.offload = offload

    async def verify(self, hashed: str | None, secret: str) -> bool:
        return await self.offload(partial(verify_secret, hashed, secret))

    async def verify_any(self, hashes: Iterable[str], secret: str) -> str | None:
        """The first of ``hashes`` that ``secret`` matches, or None.

        With no hashes at all a dummy verification runs, so an unknown
        client costs the same as a known one with a wrong secret.
        """
        hashes = list(hashes)
        if not hashes:
            await self.verify(None, secret)
            return None
        for hashed in hashes:
            if await self.verify(hashed, secret):
                return hashed
        return None

    async def hash(self, secret: str) -> str:
        return await self.offload(partial(hash_secret, secret))


class SecretCache:
    """Short-lived memory of successful client-secret checks.

    Entries map ``HMAC(key, client_id NUL secret)`` to (deadline, hash that
    matched).  A hit only counts while that hash is still one of the app's
    valid hashes, so rotating, retiring or removing a secret (a reload
    that changes the app's hash set) invalidates the entry at once.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 10_000, key: bytes | None = None) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = key or secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[float, str]] = {}

    def _digest(self, client_id: str, secret: str) -> bytes:
        msg = client_id.encode("utf-8", "surrogatepass") + b"\0" + secret.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def lookup(self, client_id: str, secret: str, valid_hashes: Iterable[str], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        digest = self._digest(client_id, secret)
        entry = self._entries.get(digest)
        if entry is None:
            return False
        deadline, matched = entry
        if deadline <= now or not any(hmac.compare_digest(matched, h) for h in valid_hashes):
            self._entries.pop(digest, None)
            return False
        return True

    def remember(self, client_id: str, secret: str, matched_hash: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[self._digest(client_id, secret)] = (now + self.ttl, matched_hash)

    def __len__(self) -> int:
        return len(self._entries)


def credential_hmac(key: bytes, label: str, name: str, password_hash: str) -> bytes:
    """HMAC-SHA256 under the server key of a user's name and password hash:
    what a login session (``services.credential_mark``) and a refresh
    family (``families.credential_fingerprint``) carry to notice a password
    change, never the hash itself.  ``label`` keeps the uses apart, so one
    cannot be passed off as the other."""
    msg = "\x1f".join((label, name, password_hash)).encode("utf-8", "surrogatepass")
    return hmac.new(key, msg, hashlib.sha256).digest()
