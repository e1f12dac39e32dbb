"""OpenID Connect ID Tokens: issue (Core §2, §3.1.3.6) and verify a hint.

An ID Token is a JWT signed by the key ring's active key (header ``kid``,
``typ: JWT``) for one client: ``aud`` and ``azp`` are its client_id.
``at_hash`` binds it to the access token of the same answer (Core
§3.1.3.6: "the base64url encoding of the left-most half of the hash of
the octets of the ASCII representation of the access_token value, where
the hash algorithm used is the hash algorithm used in the alg Header
Parameter"; SHA-512 for EdDSA with Ed25519, as OpenID's errata and the
common libraries do).

``id_token_hint`` at logout (RP-Initiated Logout §2) is checked against
our own keys and issuer; an expired one is still a good hint there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

import attrs
import jwt

from realtime.oauth.common import OPENID
from realtime.tokens.keyring import KeyRing

__all__ = ["OPENID", "IdTokenHint", "at_hash", "issue_id_token", "verify_hint"]
ID_TOKEN_TYP = "JWT"
MAX_HINT = 8192  # characters; ours are well under 2 KiB

_HASHES = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "EdDSA": hashlib.sha512}


def at_hash(access_token: str, alg: str) -> str:
    digest = _HASHES[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def issue_id_token(
    ring: KeyRing,
    *,
    issuer: str,
    client_id: str,
    sub: str,
    access_token: str,
    auth_time: float | None,
    sid: str | None,
    nonce: str | None,
    ttl: float,
    now: float,
) -> str:
    """Sign an ID Token; ``nonce`` exactly as the authorization request sent it
    (None on refresh: Core §12.2 "it SHOULD NOT have a nonce Claim")."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": client_id,
        "azp": client_id,
        "exp": math.floor(now + ttl),
        "iat": math.floor(now),
        "at_hash": at_hash(access_token, ring.active.alg),
    }
    if auth_time is not None:
        claims["auth_time"] = math.floor(auth_time)
    if sid is not None:
        claims["sid"] = sid
    if nonce is not None:
        claims["nonce"] = nonce
    return ring.sign(claims, typ=ID_TOKEN_TYP)


@attrs.frozen
class IdTokenHint:
    sub: str
    client_id: str  # the ``aud``
    sid: str | None


def verify_hint(ring: KeyRing, token: str, *, issuer: str) -> IdTokenHint | None:
    """An ``id_token_hint`` we issued (signature by a key of our ring, our
    issuer, ``typ: JWT``), expired or not; None for anything else."""
    if not token or len(token) > MAX_HINT:
        return None
    try:
        header = jwt.get_unverified_header(token)
        key = ring.keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
        if key is None or header.get("alg") != key.alg or header.get("typ") != ID_TOKEN_TYP:
            return None
        claims = jwt.decode(
            token, key.private_key.public_key(), algorithms=[key.alg], issuer=issuer,
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False,
                     "require": ["iss", "sub", "aud", "exp"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError, json.JSONDecodeError):
        return None
    aud = claims.get("aud")
    if isinstance(aud, list):
        aud = aud[0] if len(aud) == 1 else None
    sub, sid = claims.get("sub"), claims.get("sid")
    if not isinstance(aud, str) or not isinstance(sub, str) or not (sid is None or isinstance(sid, str)):
        return None
    return IdTokenHint(sub=sub, client_id=aud, sid=sid)
