"""Access-token parsing and checks: the steps :meth:`realtime.tokens.keyring.KeyRing.verify`
runs, in its fixed order, and the types it answers with.

Compact JWS parsing (size, shape, base64url, strict JSON), the header
checks (typ, crit, alg), the RFC 9068 claim checks (presence, types, iss,
aud, exp, nbf/iat), the signature check, :class:`TokenError` with its
:data:`MESSAGES`, and :class:`AccessClaims`.  Pure functions, no I/O;
:mod:`realtime.tokens.keyring` re-exports the public names.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from jwt.algorithms import Algorithm, get_default_algorithms

from realtime.tokens.keyfiles import ALGORITHMS

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

_B64_INDEX = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
# An empty signature is let through the shape check so that an unsecured
# ("alg": "none") token is refused as alg_mismatch, which is what it is.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# One pyjwt Algorithm object per JWS alg we accept: RFC 8725 §3.1 "Libraries
# MUST enable the caller to specify a supported set of algorithms and MUST
# NOT use any other algorithms".  "none" and HS* are simply not in here.
JWS_ALGS: dict[str, Algorithm] = {name: alg for name, alg in get_default_algorithms().items() if name in ALGORITHMS}

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


def json_object(segment: str) -> dict[str, Any]:
    """Decode one base64url JSON-object segment or raise ``malformed``."""
    try:
        text = _b64decode(segment).decode("utf-8")  # RFC 7515: UTF-8, no BOM sniffing
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # binascii.Error, JSONDecodeError, UnicodeDecodeError
        raise TokenError("malformed") from None
    if not isinstance(value, dict):
        raise TokenError("malformed")
    return value


def split_token(token: object) -> tuple[str, str, str]:
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
        kid = json_object(split_token(token)[0]).get("kid")
    except TokenError:
        return None
    return kid if isinstance(kid, str) else None


# -- claim checks ---------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_header(header: dict[str, Any]) -> None:
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
    if not isinstance(alg, str) or alg not in JWS_ALGS:
        raise TokenError("alg_mismatch")


def required_claims(claims: dict[str, Any]) -> None:
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


def matched_audience(aud: object, audience: str) -> str:
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


def check_times(claims: dict[str, Any], now: float, leeway: float) -> None:
    # RFC 9068 §4: "The current time MUST be before the time represented by
    # the "exp" claim. Implementers MAY provide for some small leeway,
    # usually no more than a few minutes, to account for clock skew."
    # We issue and verify on the same clock, so skew can only make a token
    # look issued in the future: the leeway widens iat/nbf, never exp (an
    # expired token must not open a socket or call an API for 5 s more).
    if now >= claims["exp"]:
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
def scope_set(text: str) -> frozenset[str]:
    # Thousands of live sessions share a handful of scope strings: one
    # frozenset each instead of one per connection (~330 B saved per socket).
    return frozenset(part for part in text.split(" ") if part)


# -- the signature --------------------------------------------------------------


def check_signature(
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
