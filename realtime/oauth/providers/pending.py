"""Pending external logins (:mod:`realtime.oauth.providers.flow`): the
authorization request a browser left for a provider, kept in the store
under the digest of the ``state`` we sent, taken at most once.

In the store (:mod:`realtime.store.provider_logins`), so a login started
on one node finishes on whichever node the provider's callback reaches
(no sticky routing), and survives a restart.  Ten minutes each, at most
:data:`MAX_PENDING_PER_ADDRESS` per browser address and
:data:`MAX_PENDING` in all (the oldest make room), expired rows pruned
on every start and by the sweep.

Secrets: the table holds SHA-256 digests of the ``state`` and of the
browser's ``rt_csrf`` cookie, and the request, redirect URI and PKCE
verifier sealed with AES-256-GCM under a key derived (HKDF) from the
server's HMAC key (``state_dir/oauth.key`` alone, ``[store] key_file``
on a shared store, the same on every node), with the state digest as
associated data, so a database dump reveals no verifier and a sealed
value moved to another row does not open.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from realtime.store.calls import StoreCalls
from realtime.store.provider_logins import PendingRow

log = logging.getLogger("realtime.oauth.providers")

PENDING_TTL = 600.0
MAX_PENDING = 10_000
#: One address holds at most a tenth of the table, so it cannot push out
#: everyone else's logins.  Behind a reverse proxy every browser has the
#: proxy's address and this is a second, lower total: 1000 logins started
#: within ten minutes.
MAX_PENDING_PER_ADDRESS = 1_000

#: HKDF label of the sealing key (derived from the server's HMAC key).
SEAL_LABEL = b"realtime/oauth/provider-logins/v1"
_NONCE = 12


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


class PendingSeal:
    """Seals and opens the private part of a pending login (AES-256-GCM, the
    state digest as associated data) under a key derived from ``key``, the
    server's HMAC key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_LABEL).derive(key))

    def seal(self, state_hash: str, pending: Pending) -> str:
        body = json.dumps({"params": pending.params, "verifier": pending.verifier,
                           "redirect_uri": pending.redirect_uri}, separators=(",", ":"))
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, body.encode("utf-8", "surrogatepass"), state_hash.encode("ascii"))
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, row: PendingRow) -> Pending | None:
        """The login of ``row``; None when it does not open (another key)."""
        try:
            raw = base64.urlsafe_b64decode(row.sealed)
            body = json.loads(self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], row.state_hash.encode("ascii")))
        except (InvalidTag, ValueError):
            return None
        return Pending(provider=row.provider, params=dict(body["params"]), binding=row.binding,
                       verifier=body["verifier"], redirect_uri=body["redirect_uri"], expires_at=row.expires_at)


class ProviderLogins:
    """Pending external logins in the store by the digest of their ``state``;
    each is taken once, on any node."""

    def __init__(self, store: StoreCalls, key: bytes) -> None:
        self.store = store
        self.sealing = PendingSeal(key)

    async def add(self, state: str, pending: Pending, *, address: str, now: float) -> None:
        state_hash = digest(state)
        row = PendingRow(state_hash=state_hash, provider=pending.provider, binding=pending.binding,
                         address=address, sealed=self.sealing.seal(state_hash, pending), created_at=now,
                         expires_at=pending.expires_at)
        evicted = await self.store.add_provider_login(row, now=now, per_address=MAX_PENDING_PER_ADDRESS,
                                                      total=MAX_PENDING)
        if evicted:
            log.warning("pending provider logins full: %d oldest dropped (address=%s)", evicted, address)

    async def take(self, state: str, now: float) -> Pending | None:
        row = await self.store.take_provider_login(digest(state), now)
        if row is None:
            return None
        pending = self.sealing.open(row)
        if pending is None:
            log.error("a pending provider login in the store does not open with this node's key "
                      "(every node needs the same [store] key_file)")
        return pending
