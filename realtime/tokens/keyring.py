"""RFC 9068 access tokens: issue, verify, the key ring, JWKS, revocations.

Sans-I/O on the hot path: :meth:`KeyRing.verify` runs on every WebSocket
handshake, refresh and bearer request, so it works from public-key
objects prepared once per ring (no PEM parsing, no JWK conversion) and
does its own compact-JWS parsing so the checks run in one fixed order and
each failure carries a precise :attr:`TokenError.reason`.  Only the
key-file methods (``load_or_create``, ``load``, ``rotate``, ``prune``)
touch the disk; they are synchronous and the server runs them in a worker
thread.  Key generation and files live in :mod:`realtime.tokens.keyfiles`.

Parsing and claim checks are in :mod:`realtime.tokens.jws`, the revocation
set in :mod:`realtime.tokens.revoked`; their public names are re-exported
here.
"""

from __future__ import annotations

import json
import math
import secrets
import time
import types
from pathlib import Path
from typing import Any, Container, Iterable, Mapping

from jwt.algorithms import Algorithm

from realtime.tokens import keyfiles
from realtime.tokens.keyfiles import SigningKey
from realtime.tokens.jws import (
    JWS_ALGS,
    MAX_TOKEN_CHARS,
    MESSAGES,
    AccessClaims,
    TokenError,
    check_header,
    check_signature,
    check_times,
    json_object,
    matched_audience,
    required_claims,
    scope_set,
    split_token,
    unverified_kid,
)
from realtime.tokens.revoked import RevokedSet
from realtime.tokens.verified import Verified, VerifiedTokens

__all__ = [
    "MAX_TOKEN_CHARS",
    "MESSAGES",
    "AccessClaims",
    "KeyRing",
    "RevokedSet",
    "SigningKey",
    "TokenError",
    "issue_access_token",
    "unverified_kid",
]

_HEADER_CACHE_SIZE = 64  # verified header segments kept per ring


# -- the key ring ---------------------------------------------------------------


class KeyRing:
    """An immutable set of signing keys with one active key.

    Rotation and pruning return a new ring, so a reload can build one off
    the hot path and swap the reference (DESIGN.md §7), and a verify that
    started against the old ring finishes against it.
    """

    __slots__ = ("_keys", "_active", "_verifiers", "_jwks", "_headers", "_verified")

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        by_kid = {key.kid: key for key in sorted(keys, key=lambda key: (key.created_at, key.kid))}
        for key in by_kid.values():
            keyfiles.check_alg(key.alg)
        candidates = [key for key in by_kid.values() if key.retire_at is None]
        if not candidates:
            raise ValueError("no active signing key: every key is scheduled for retirement")
        self._keys: Mapping[str, SigningKey] = types.MappingProxyType(by_kid)
        self._active: SigningKey = candidates[-1]  # the newest unscheduled key
        # Prepared once per ring: the hot path never touches a PEM or a JWK.
        self._verifiers: dict[str, tuple[str, Algorithm, Any]] = {
            kid: (key.alg, JWS_ALGS[key.alg], key.private_key.public_key()) for kid, key in by_kid.items()
        }
        self._jwks: tuple[dict[str, str], ...] = tuple(keyfiles.public_jwk(key) for key in by_kid.values())
        # Header segments that already verified: ours repeat byte for byte.
        self._headers: dict[str, tuple[str, Algorithm, Any]] = {}
        # Tokens that verified under this ring (a new ring starts empty).
        self._verified = VerifiedTokens()

    def __repr__(self) -> str:
        return f"KeyRing(active={self._active.kid!r}, keys={list(self._keys)!r})"

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def keys(self) -> Mapping[str, SigningKey]:
        """Every key that still verifies, by ``kid``, oldest first."""
        return self._keys

    # -- files --------------------------------------------------------------

    @classmethod
    def load(cls, keys_dir: Path) -> "KeyRing":
        """Read the ring without writing anything (reload, CLI helpers).

        Raises:
            FileNotFoundError: no key directory, or no keys in it.
            ValueError: a key file is broken (the message names it), or no
                key is active.
        """
        found = keyfiles.read_keys(keys_dir)
        if not found:
            raise FileNotFoundError(f"{keys_dir}: no signing keys (start the server once to create one)")
        try:
            return cls(found)
        except ValueError as exc:
            raise ValueError(f"{keys_dir}: {exc}") from None

    @classmethod
    def load_or_create(
        cls, keys_dir: Path, alg: str, *, retire_after: float = 86400.0, now: float | None = None
    ) -> "KeyRing":
        """The server's startup ring: read the keys, create what is missing.

        A first start generates a key.  If ``alg`` is not the active key's
        algorithm (the operator changed ``[oauth] signing_alg``), a new key
        of ``alg`` becomes active and the old one verifies for
        ``retire_after`` more seconds (the longest access-token lifetime
        plus leeway), so no token in flight breaks.  Any other unscheduled
        key (a rotation interrupted between its two writes) is scheduled
        the same way.  Idempotent: a restart with the same ``alg`` changes
        nothing and keeps the same ``kid``.
        """
        now = time.time() if now is None else now
        return cls(keyfiles.settle(keys_dir, alg, retire_at=now + retire_after, now=now))

    def rotate(
        self, keys_dir: Path, *, retire_after: float, now: float | None = None, alg: str | None = None
    ) -> "KeyRing":
        """A new active key; the old one verifies until ``now + retire_after``.

        ``retire_after`` must cover the longest access-token lifetime plus
        the leeway: the old key stays in JWKS and verifies until the last
        token it signed has expired (issue 6 item 4).  ``alg`` defaults to
        the current active key's.
        """
        now = time.time() if now is None else now
        found = keyfiles.add_active(
            keys_dir, list(self._keys.values()), alg or self._active.alg, retire_at=now + retire_after, now=now
        )
        return type(self)(found)

    def prune(self, keys_dir: Path, *, now: float | None = None) -> "KeyRing":
        """Drop (and delete the files of) keys whose ``retire_at`` has passed.

        Never the active key.  Returns ``self`` when nothing is due, so the
        caller can tell "no change" by identity.
        """
        now = time.time() if now is None else now
        due = [
            key for key in self._keys.values()
            if key.retire_at is not None and key.retire_at <= now and key.kid != self._active.kid
        ]
        if not due:
            return self
        keyfiles.delete_keys(keys_dir, [key.kid for key in due])
        gone = {key.kid for key in due}
        return type(self)(key for key in self._keys.values() if key.kid not in gone)

    # -- tokens -------------------------------------------------------------

    def sign(self, claims: dict[str, Any], *, typ: str = "at+jwt") -> str:
        """A compact JWS of ``claims`` with the active key.

        RFC 9068 §2.1: "JWT access tokens MUST include this media type in
        the "typ" header parameter ... the "typ" value used SHOULD be
        "at+jwt"."  The header also names the key (``kid``) so a verifier
        picks it without trying each one.
        """
        key = self._active
        header = {"alg": key.alg, "typ": typ, "kid": key.kid}
        signing_input = f"{_b64json(header)}.{_b64json(claims)}"
        signature = JWS_ALGS[key.alg].sign(signing_input.encode("ascii"), key.private_key)
        return f"{signing_input}.{keyfiles.b64url(signature)}"

    def verify(
        self,
        token: str,
        *,
        issuer: str,
        audience: str,
        leeway: float = 5.0,
        now: float | None = None,
        revoked: Container[str] | None = None,
    ) -> AccessClaims:
        """Validate an access token per RFC 9068 §4, or raise :class:`TokenError`.

        Fixed order: size and shape (malformed) → typ (wrong_typ) → alg is
        one we sign with (alg_mismatch) → kid is in the ring (unknown_kid) →
        alg is that key's alg (alg_mismatch) → signature (bad_signature) →
        claims present and typed (missing_claim, malformed) → iss → aud →
        exp → nbf/iat → revoked.  Nothing from the payload is trusted, or
        even parsed, before the signature holds.

        Hot path: public keys are prepared per ring, and a header segment
        that has verified once (ours repeat byte for byte) skips its JSON
        parse and checks next time.  A whole token that verified under
        this ring (a client reconnecting with the token it has) skips the
        signature and the claims' parse (:mod:`realtime.tokens.verified`);
        exp, nbf/iat, the revoked set and the cut-offs are checked on
        every call.
        """
        now = time.time() if now is None else now
        digest = None
        if isinstance(token, str) and token.isascii() and len(token) <= MAX_TOKEN_CHARS:
            # Looked up before any parsing: a hit is byte for byte a token
            # that passed every check below once.
            digest = self._verified.digest(token)
            seen = self._verified.get(digest)
            if seen is not None and seen.issuer == issuer and seen.audience == audience:
                return self._still_valid(seen, digest, now, leeway, revoked)
        header_b64, payload_b64, signature_b64 = split_token(token)
        cached = self._headers.get(header_b64)
        kid, algorithm, public_key = cached or self._header_key(header_b64)
        # RFC 9068 §4: "The resource server MUST validate the signature of all
        # incoming JWT access tokens according to [RFC7515] using the
        # algorithm specified in the JWT "alg" Header Parameter. ... The
        # resource server MUST use the keys provided by the authorization
        # server."
        check_signature(algorithm, public_key, token, header_b64, payload_b64, signature_b64)
        if cached is None and len(self._headers) < _HEADER_CACHE_SIZE:
            # The signature covers the header, so only headers we signed get
            # here: a handful per key, never an attacker's variety.
            self._headers[header_b64] = (kid, algorithm, public_key)
        claims = json_object(payload_b64)
        required_claims(claims)
        # RFC 9068 §4: "The issuer identifier for the authorization server
        # (which is typically obtained during discovery) MUST exactly match
        # the value of the "iss" claim."
        if claims["iss"] != issuer:
            raise TokenError("wrong_issuer")
        aud = matched_audience(claims["aud"], audience)
        check_times(claims, now, leeway)
        _check_revoked(revoked, claims["jti"], claims["sub"], claims["client_id"], claims["iat"])
        access = AccessClaims(
            iss=issuer, sub=claims["sub"], aud=aud, exp=int(claims["exp"]), iat=int(claims["iat"]),
            jti=claims["jti"], client_id=claims["client_id"], scope=scope_set(claims["scope"]), kid=kid,
        )
        times = {"exp": claims["exp"], "iat": claims["iat"], "nbf": claims.get("nbf")}
        if digest is not None:
            self._verified.put(digest, Verified(access, issuer, audience, times))
        return access

    def _still_valid(self, seen: Verified, digest: bytes, now: float, leeway: float,
                     revoked: Container[str] | None) -> AccessClaims:
        """A token that verified before under this ring: the checks that
        depend on time and on revocations, in :meth:`verify`'s order."""
        claims = seen.claims
        try:
            check_times(seen.times, now, leeway)
            _check_revoked(revoked, claims.jti, claims.sub, claims.client_id, seen.times["iat"])
        except TokenError as exc:
            if exc.reason != "not_yet_valid":  # expired or revoked: for good
                self._verified.discard(digest)
            raise
        return claims

    def _header_key(self, header_b64: str) -> tuple[str, Algorithm, Any]:
        """Check a header not seen before; return (kid, algorithm, public key)."""
        header = json_object(header_b64)
        check_header(header)
        kid = header.get("kid")
        entry = self._verifiers.get(kid) if isinstance(kid, str) else None
        if entry is None:
            raise TokenError("unknown_kid")
        alg, algorithm, public_key = entry
        # RFC 8725 §3.1: "each key MUST be used with exactly one algorithm".
        if header["alg"] != alg:
            raise TokenError("alg_mismatch")
        return kid, algorithm, public_key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set for ``/oauth2/jwks``: every key that still verifies.

        Public members only (built from the public key; see
        :func:`realtime.tokens.keyfiles.public_jwk_members`), including keys scheduled
        for retirement, because tokens they signed are still live.
        """
        return {"keys": [dict(jwk) for jwk in self._jwks]}


def _check_revoked(revoked: Container[str] | None, jti: str, sub: str, client_id: str, iat: float) -> None:
    if revoked is not None and jti in revoked:
        raise TokenError("revoked")
    if isinstance(revoked, RevokedSet) and revoked.cut_off(sub, client_id, iat):
        raise TokenError("revoked")  # POST /api/revoke: every token of this sub issued before


def _b64json(obj: dict[str, Any]) -> str:
    return keyfiles.b64url(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


# -- issuing --------------------------------------------------------------------


def issue_access_token(
    ring: KeyRing,
    *,
    issuer: str,
    audience: str,
    sub: str,
    client_id: str,
    scope: Iterable[str],
    ttl: float,
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, AccessClaims]:
    """Sign a new RFC 9068 access token with the ring's active key.

    ``iat`` and ``exp`` are whole seconds rounded down, so a token never
    lives longer than ``ttl``.  ``extra`` adds claims but may not replace
    a registered one.
    """
    now = time.time() if now is None else now
    scopes = frozenset(scope)
    if any(not item or " " in item for item in scopes):
        raise ValueError("a scope must be non-empty and contain no space")
    access = AccessClaims(
        iss=issuer, sub=sub, aud=audience, exp=math.floor(now + ttl), iat=math.floor(now),
        jti=secrets.token_urlsafe(16), client_id=client_id, scope=scopes, kid=ring.active.kid,
    )
    claims: dict[str, Any] = {
        "iss": access.iss, "sub": access.sub, "aud": access.aud, "exp": access.exp, "iat": access.iat,
        "jti": access.jti, "client_id": access.client_id,
        # RFC 9068 §2.2.3 refers to RFC 8693 §4.2: "The value of the scope
        # claim is a JSON string containing a space-separated list of scopes".
        "scope": access.scope_str,
    }
    if extra:
        clash = claims.keys() & extra.keys()
        if clash:
            raise ValueError(f"extra claims may not replace {sorted(clash)}")
        claims.update(extra)
    return ring.sign(claims), access
