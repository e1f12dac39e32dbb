"""The stored form of a secret kept encrypted at rest (``aesgcm1:`` +
base64url of nonce ‖ ciphertext ‖ tag): a format check, no key.

The loader checks an app's ``consumer_secret_enc`` with :func:`unpack`
when it reads ``apps.toml``; decrypting it (with ``state_dir/oauth1.key``)
is :mod:`realtime.oauth1.crypto`'s job, which builds on this module.
"""

from __future__ import annotations

import base64
import binascii

PREFIX = "aesgcm1:"
NONCE_BYTES = 12
TAG_BYTES = 16


class SecretError(ValueError):
    """A stored secret does not decrypt: wrong key file, or a damaged value."""


def unpack(value: str) -> bytes:
    """The raw bytes of an ``aesgcm1:`` value (a format check only).

    Raises:
        SecretError: not of that form.
    """
    if not isinstance(value, str) or not value.startswith(PREFIX):
        raise SecretError(f"expected an encrypted value ('{PREFIX}...'), not a clear-text secret")
    body = value[len(PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SecretError("the encrypted value is not base64url") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES + 1:
        raise SecretError("the encrypted value is too short")
    return raw
