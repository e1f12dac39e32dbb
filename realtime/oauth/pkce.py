"""PKCE (RFC 7636), S256 only.

RFC 7636 §4.1: "code_verifier = high-entropy cryptographic random STRING
using the unreserved characters [A-Z] / [a-z] / [0-9] / "-" / "." / "_" /
"~" from Section 2.3 of [RFC3986], with a minimum length of 43 characters
and a maximum length of 128 characters."

RFC 7636 §4.2: "S256: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))".

``plain`` is refused (RFC 9700 §2.1.1: "Authorization servers MUST support
PKCE ... If PKCE is used, ... the S256 method SHOULD be used"; a plain
challenge protects nothing once the authorization request leaks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

SUPPORTED_METHODS = ("S256",)

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# BASE64URL of a 32-byte digest without padding: exactly 43 characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def valid_verifier(verifier: str) -> bool:
    return isinstance(verifier, str) and _VERIFIER.fullmatch(verifier) is not None


def valid_challenge(challenge: str) -> bool:
    return isinstance(challenge, str) and _CHALLENGE.fullmatch(challenge) is not None


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: "If the values are equal, the token endpoint MUST
    continue processing as normal ... If the values are not equal, an error
    response indicating "invalid_grant" ... MUST be returned."
    """
    if not valid_verifier(verifier) or not valid_challenge(challenge):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
