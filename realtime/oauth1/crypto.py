"""The key that keeps OAuth 1.0a shared secrets encrypted at rest.

HMAC-SHA1 and HMAC-SHA256 (RFC 5849 §3.4.2) need the consumer secret and
the token secret themselves on the server, so they cannot be stored as
hashes.  They are stored AES-256-GCM-encrypted (``aesgcm1:`` followed by
base64url of nonce ‖ ciphertext ‖ tag) under a 32-byte key in
``state_dir/oauth1.key`` (mode 0600).  The associated data binds each
ciphertext to what it belongs to (a consumer key or a token hash), so a
value copied onto another entry does not decrypt.

``apps.toml`` and the state store alone reveal no secret; whoever holds
the key file too can read them all, so back it up apart from them.

Both the server and ``realtime app add --oauth1`` call
:func:`load_or_create_key`; whichever comes first creates the file, the
other reads it (a hard link makes creation atomic, so two racing
creators agree on one key).
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from realtime.config.sealed import NONCE_BYTES, PREFIX, SecretError, unpack

__all__ = ["KEY_FILE", "PREFIX", "SecretError", "consumer_context", "decrypt", "encrypt",
           "load_key", "load_or_create_key", "token_context", "unpack"]

KEY_FILE = "oauth1.key"


def load_key(state_dir: Path) -> bytes | None:
    """The key in ``state_dir/oauth1.key``, or None when there is none yet."""
    try:
        data = (state_dir / KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != 32:
        raise SecretError(f"{state_dir / KEY_FILE}: expected 32 bytes, found {len(data)}")
    return data


def load_or_create_key(state_dir: Path) -> bytes:
    """Read the key, creating it (mode 0600) when it does not exist.

    Raises:
        OSError: the state dir cannot be written.
        SecretError: the key file is damaged.
    """
    key = load_key(state_dir)
    if key is not None:
        return key
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / KEY_FILE
    tmp = state_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    key = load_key(state_dir)
    assert key is not None
    return key


def encrypt(key: bytes, plaintext: str, context: str) -> str:
    """``aesgcm1:...`` for ``plaintext``, bound to ``context``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")


def decrypt(key: bytes, value: str, context: str) -> str:
    """The plaintext of an :func:`encrypt` value made for ``context``.

    Raises:
        SecretError: wrong key, wrong context, or a damaged value.
    """
    raw = unpack(value)
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8")).decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise SecretError("the secret does not decrypt with this state dir's oauth1.key") from None


def consumer_context(consumer_key: str) -> str:
    return f"consumer:{consumer_key}"


def token_context(token_hash: str) -> str:
    return f"token:{token_hash}"
