"""Pending external logins (:mod:`realtime.oauth.providers.flow`): the
authorization request a browser left for a provider, kept under the
digest of the ``state`` we sent, taken at most once.

They live in this process's memory (single use, ten minutes, at most
:data:`MAX_PENDING`); a restart or a callback reaching another node asks
the user to start again.
"""

from __future__ import annotations

import hashlib

import attrs

PENDING_TTL = 600.0
MAX_PENDING = 10_000


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@attrs.frozen
class Pending:
    provider: str
    params: dict[str, str]  # our authorization request, as the login form carried it
    binding: str  # sha256 of the browser's rt_csrf cookie
    verifier: str | None  # PKCE code_verifier (RFC 7636 §4.1)
    redirect_uri: str
    expires_at: float


class ProviderLogins:
    """Pending external logins by the digest of their ``state``; each is taken once."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, state: str, pending: Pending, now: float) -> None:
        for key in [k for k, p in self._pending.items() if p.expires_at <= now]:
            del self._pending[key]
        while len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]  # the oldest
        self._pending[digest(state)] = pending

    def take(self, state: str, now: float) -> Pending | None:
        pending = self._pending.pop(digest(state), None)
        if pending is None or pending.expires_at <= now:
            return None
        return pending
