"""RFC 9068 access tokens: issue, verify, the key ring, JWKS, revocations.

Sans-I/O on the hot path: :meth:`KeyRing.verify` runs on every WebSocket
handshake, refresh and bearer request, so it works from public-key
objects prepared once per ring (no PEM parsing, no JWK conversion) and
does its own compact-JWS parsing so the checks run in one fixed order and
each failure carries a precise :attr:`TokenError.reason`.  Only the
key-file methods (``load_or_create``, ``load``, ``rotate``, ``prune``)
touch the disk; they are synchronous and the server runs them in a worker
thread.  Key generation and files live in :mod:`realtime.keys`.
"""

from __future__ import annotations

import base64
import functools
import heapq
import json
import math
import re
import secrets
import time
import types
from pathlib import Path
from typing import Any, Container, Iterable, Mapping

import attrs
from cryptography.exceptions import InvalidSignature
from jwt.algorithms import Algorithm, get_default_algorithms

from realtime import keys as keyfiles
from realtime.keys import ALGORITHMS, SigningKey

__all__ = [
    "AccessClaims",
    "KeyRing",
    "RevokedSet",
    "SigningKey",
    "TokenError",
    "issue_access_token",
    "unverified_kid",
]

#: A bigger token is refused before any parsing: ours are well under 2 KiB,
#: and a 100 KB "token" is an attack on the parser, not a credential.
MAX_TOKEN_CHARS = 16 * 1024

# RFC 9068 §4: "The resource server MUST verify that the "typ" header value
# is "at+jwt" or "application/at+jwt" and reject tokens carrying any other
# value."  Media types are case-insensitive (RFC 7515 §4.1.9).
ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})

#: RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti are REQUIRED; we
#: always issue ``scope`` too (§2.2.3) and require it back.
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope")
_STRING_CLAIMS = ("iss", "sub", "jti", "client_id")

_HEADER_CACHE_SIZE = 64  # verified header segments kept per ring
_B64_INDEX = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
# An empty signature is let through the shape check so that an unsecured
# ("alg": "none") token is refused as alg_mismatch, which is what it is.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# One pyjwt Algorithm object per JWS alg we accept: RFC 8725 §3.1 "Libraries
# MUST enable the caller to specify a supported set of algorithms and MUST
# NOT use any other algorithms".  "none" and HS* are simply not in here.
_ALGS: dict[str, Algorithm] = {name: alg for name, alg in get_default_algorithms().items() if name in ALGORITHMS}

MESSAGES = {
    "malformed": "malformed token",
    "bad_signature": "invalid token signature",
    "unknown_kid": "token signed by an unknown key",
    "expired": "token expired",
    "not_yet_valid": "token not yet valid",
    "wrong_issuer": "token from another issuer",
    "wrong_audience": "token for another audience",
    "wrong_typ": "not an access token (typ)",
    "revoked": "token revoked",
    "missing_claim": "token lacks a required claim",
    "alg_mismatch": "token algorithm not accepted",
}


class TokenError(Exception):
    """A token was refused.  ``reason`` is one of :data:`MESSAGES`' keys.

    ``str(exc)`` is a fixed, short message: it never contains the token or
    anything read from it (a ``kid`` or ``iss`` is attacker-chosen text and
    would end up in a ``WWW-Authenticate`` header).
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        if reason not in MESSAGES:
            raise ValueError(f"unknown TokenError reason {reason!r}")
        self.reason = reason
        super().__init__(message or MESSAGES[reason])


@attrs.frozen
class AccessClaims:
    """The verified claims of an access token (RFC 9068 §2.2)."""

    iss: str
    sub: str
    aud: str  # the audience we verified against (one of the token's ``aud``)
    exp: int
    iat: int
    jti: str
    client_id: str
    scope: frozenset[str]
    kid: str

    @property
    def scope_str(self) -> str:
        """The ``scope`` claim's form: space-separated, sorted for stable output."""
        return " ".join(sorted(self.scope))


# -- compact JWS parsing --------------------------------------------------------


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 7515 §5.2: a duplicate member name makes the JOSE header invalid;
    we apply the same to the claims so two readers can never disagree."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member")
    return obj


def _json_object(segment: str) -> dict[str, Any]:
    """Decode one base64url JSON-object segment or raise ``malformed``."""
    try:
        text = _b64decode(segment).decode("utf-8")  # RFC 7515: UTF-8, no BOM sniffing
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # binascii.Error, JSONDecodeError, UnicodeDecodeError
        raise TokenError("malformed") from None
    if not isinstance(value, dict):
        raise TokenError("malformed")
    return value


def _split(token: object) -> tuple[str, str, str]:
    """(header segment, payload segment, signature segment), or ``malformed``.

    The size check comes first so a huge input costs one ``len()``.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
        raise TokenError("malformed")
    header, payload, signature = token.split(".")
    return header, payload, signature


def unverified_kid(token: str) -> str | None:
    """The header's ``kid`` without verifying anything; never raises.

    For logs and metrics only (which key do failing tokens name?), never
    for a decision.
    """
    try:
        kid = _json_object(_split(token)[0]).get("kid")
    except TokenError:
        return None
    return kid if isinstance(kid, str) else None


# -- claim checks ---------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_header(header: dict[str, Any]) -> None:
    """typ, crit and alg, in that order, before any key is looked up."""
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
        raise TokenError("wrong_typ")
    # RFC 7515 §4.1.11: "If any of the listed extension Header Parameters are
    # not understood and supported by the recipient, then the JWS is
    # invalid."  We support none.
    if "crit" in header:
        raise TokenError("malformed", "token uses unsupported critical header parameters")
    # RFC 9068 §4: "The resource server MUST reject any JWT in which the
    # value of "alg" is "none"."  Likewise HS* (the public key is not a
    # secret) and anything else we do not sign with.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _ALGS:
        raise TokenError("alg_mismatch")


def _required(claims: dict[str, Any]) -> None:
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            raise TokenError("missing_claim", f"token lacks the '{name}' claim")
    for name in _STRING_CLAIMS:
        value = claims[name]
        if not isinstance(value, str):
            raise TokenError("malformed", f"token claim '{name}' must be a string")
        if not value:
            raise TokenError("missing_claim", f"token claim '{name}' is empty")
    if not isinstance(claims["scope"], str):
        # RFC 8693 §4.2: "The value of the scope claim is a JSON string
        # containing a space-separated list of scopes".
        raise TokenError("malformed", "token claim 'scope' must be a string")
    for name in ("exp", "iat"):
        if not _is_number(claims[name]):
            raise TokenError("malformed", f"token claim '{name}' must be a number")


def _matched_audience(aud: object, audience: str) -> str:
    """RFC 9068 §4: "The resource server MUST validate that the "aud" claim
    contains a resource indicator value corresponding to an identifier the
    resource server expects for itself. The JWT access token MUST be
    rejected if "aud" does not contain a resource indicator of the current
    resource server as a valid audience."  (RFC 7519 §4.1.3: a string or
    an array of strings.)"""
    if isinstance(aud, str):
        if aud == audience:
            return audience
    elif isinstance(aud, list):
        if not all(isinstance(item, str) for item in aud):
            raise TokenError("malformed", "token claim 'aud' must be a string or strings")
        if audience in aud:
            return audience
    else:
        raise TokenError("malformed", "token claim 'aud' must be a string or strings")
    raise TokenError("wrong_audience")


def _check_times(claims: dict[str, Any], now: float, leeway: float) -> None:
    # RFC 9068 §4: "The current time MUST be before the time represented by
    # the "exp" claim. Implementers MAY provide for some small leeway,
    # usually no more than a few minutes, to account for clock skew."
    if now >= claims["exp"] + leeway:
        raise TokenError("expired")
    nbf = claims.get("nbf")
    if nbf is not None and not _is_number(nbf):
        raise TokenError("malformed", "token claim 'nbf' must be a number")
    # RFC 7519 §4.1.5: nbf "identifies the time before which the JWT MUST
    # NOT be accepted".  An ``iat`` beyond the leeway is a clock gone wrong
    # or a forged lifetime: refuse it the same way.
    if (nbf is not None and now + leeway < nbf) or now + leeway < claims["iat"]:
        raise TokenError("not_yet_valid")


@functools.lru_cache(maxsize=1024)
def _scopes(text: str) -> frozenset[str]:
    # Thousands of live sessions share a handful of scope strings: one
    # frozenset each instead of one per connection (~330 B saved per socket).
    return frozenset(part for part in text.split(" ") if part)


# -- the key ring ---------------------------------------------------------------


class KeyRing:
    """An immutable set of signing keys with one active key.

    Rotation and pruning return a new ring, so a reload can build one off
    the hot path and swap the reference (DESIGN.md §7), and a verify that
    started against the old ring finishes against it.
    """

    __slots__ = ("_keys", "_active", "_verifiers", "_jwks", "_headers")

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
            kid: (key.alg, _ALGS[key.alg], key.private_key.public_key()) for kid, key in by_kid.items()
        }
        self._jwks: tuple[dict[str, str], ...] = tuple(keyfiles.public_jwk(key) for key in by_kid.values())
        # Header segments that already verified: ours repeat byte for byte.
        self._headers: dict[str, tuple[str, Algorithm, Any]] = {}

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
        signature = _ALGS[key.alg].sign(signing_input.encode("ascii"), key.private_key)
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
        parse and checks next time; the signature is checked every time.
        """
        header_b64, payload_b64, signature_b64 = _split(token)
        cached = self._headers.get(header_b64)
        kid, algorithm, public_key = cached or self._header_key(header_b64)
        # RFC 9068 §4: "The resource server MUST validate the signature of all
        # incoming JWT access tokens according to [RFC7515] using the
        # algorithm specified in the JWT "alg" Header Parameter. ... The
        # resource server MUST use the keys provided by the authorization
        # server."
        _check_signature(algorithm, public_key, token, header_b64, payload_b64, signature_b64)
        if cached is None and len(self._headers) < _HEADER_CACHE_SIZE:
            # The signature covers the header, so only headers we signed get
            # here: a handful per key, never an attacker's variety.
            self._headers[header_b64] = (kid, algorithm, public_key)
        claims = _json_object(payload_b64)
        _required(claims)
        # RFC 9068 §4: "The issuer identifier for the authorization server
        # (which is typically obtained during discovery) MUST exactly match
        # the value of the "iss" claim."
        if claims["iss"] != issuer:
            raise TokenError("wrong_issuer")
        aud = _matched_audience(claims["aud"], audience)
        _check_times(claims, time.time() if now is None else now, leeway)
        if revoked is not None and claims["jti"] in revoked:
            raise TokenError("revoked")
        return AccessClaims(
            iss=issuer, sub=claims["sub"], aud=aud, exp=int(claims["exp"]), iat=int(claims["iat"]),
            jti=claims["jti"], client_id=claims["client_id"], scope=_scopes(claims["scope"]), kid=kid,
        )

    def _header_key(self, header_b64: str) -> tuple[str, Algorithm, Any]:
        """Check a header not seen before; return (kid, algorithm, public key)."""
        header = _json_object(header_b64)
        _check_header(header)
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
        :func:`realtime.keys.public_jwk_members`), including keys scheduled
        for retirement, because tokens they signed are still live.
        """
        return {"keys": [dict(jwk) for jwk in self._jwks]}


def _b64json(obj: dict[str, Any]) -> str:
    return keyfiles.b64url(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _check_signature(
    algorithm: Algorithm, public_key: Any, token: str, header_b64: str, payload_b64: str, signature_b64: str
) -> None:
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    try:
        ok = _canonical(signature_b64) and algorithm.verify(signing_input, public_key, _b64decode(signature_b64))
    except (InvalidSignature, ValueError, TypeError):  # e.g. a signature of an impossible length
        ok = False
    if not ok:
        raise TokenError("bad_signature")


def _canonical(segment: str) -> bool:
    """Are the spare low bits of the last base64url character zero?

    Otherwise one signature has several spellings and a token is malleable
    (RFC 4648 §3.5: "encoders MUST set the pad bits to zero").
    """
    spare = {0: 0, 2: 0xF, 3: 0x3}.get(len(segment) % 4)
    if spare is None:
        return False  # a length of 4n+1 is no base64 at all
    return spare == 0 or not _B64_INDEX[segment[-1]] & spare


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


# -- revocations ----------------------------------------------------------------


class RevokedSet:
    """Revoked ``jti``s, in memory, for the O(1) check on the hot path.

    The store keeps the durable copy (DESIGN.md §6) and fills this set at
    startup.  An entry is kept ``grace`` seconds past its ``exp`` because
    :meth:`KeyRing.verify` accepts a token until ``exp + leeway``; dropping
    it at ``exp`` would let a revoked token back in for the leeway.
    """

    __slots__ = ("_exp", "_heap", "grace")

    def __init__(self, grace: float = 300.0) -> None:
        self._exp: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # (exp, jti), possibly stale
        self.grace = grace

    def add(self, jti: str, exp: float) -> None:
        """Remember a revocation; a later ``exp`` for the same jti wins."""
        if self._exp.get(jti, -math.inf) >= exp:
            return
        self._exp[jti] = exp
        heapq.heappush(self._heap, (exp, jti))

    def load(self, items: Iterable[tuple[str, float]]) -> None:
        for jti, exp in items:
            self.add(jti, exp)

    def __contains__(self, jti: object) -> bool:
        return isinstance(jti, str) and jti in self._exp

    def __len__(self) -> int:
        return len(self._exp)

    def sweep(self, now: float | None = None) -> int:
        """Forget entries whose token can no longer verify; return how many.

        Pops from a heap ordered by ``exp``, so a sweep costs only the
        entries it drops.
        """
        horizon = (time.time() if now is None else now) - self.grace
        dropped = 0
        while self._heap and self._heap[0][0] < horizon:
            exp, jti = heapq.heappop(self._heap)
            if self._exp.get(jti) == exp:  # else a stale entry for a re-added jti
                del self._exp[jti]
                dropped += 1
        return dropped
