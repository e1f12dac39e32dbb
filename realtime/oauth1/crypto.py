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

Both the server and ``realtime app add --oauth1`` call :func:`key_for`.
A node alone uses ``state_dir/oauth1.key`` (:func:`load_or_create_key`):
whichever comes first creates the file, the other reads it (a hard link
makes creation atomic, so two racing creators agree on one key).  Nodes
on a shared store (``[store] url``) must open each other's secrets: the
key is derived from ``[store] key_file`` with HKDF under a label of its
own (:func:`shared_key`), so every node holding that file has it and
``state_dir/oauth1.key`` is not read; ``realtime store copy`` re-seals
what was sealed under the old file.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from realtime.config.sealed import NONCE_BYTES, PREFIX, SecretError, unpack
from realtime.store.keyfile import derive_key, read_key_file

__all__ = ["KEY_FILE", "PREFIX", "SHARED_LABEL", "SecretError", "consumer_context", "decrypt", "encrypt",
           "key_for", "load_key", "load_or_create_key", "reseal", "shared_key", "token_context", "unpack"]

KEY_FILE = "oauth1.key"
#: HKDF label of the OAuth 1.0a key on a shared store (from ``[store] key_file``).
SHARED_LABEL = "realtime/store/oauth1-secrets/v1"


def shared_key(store_key: bytes) -> bytes:
    """The OAuth 1.0a key of every node on a shared store (``store_key``: the key file's bytes)."""
    return derive_key(store_key, SHARED_LABEL)


def key_for(state_dir: Path, store_key_file: Path | None) -> bytes:
    """Blocking: the OAuth 1.0a key: :func:`shared_key` of ``store_key_file``
    when the store is shared (the caller passes the file only with
    ``[store] url``), else ``state_dir/oauth1.key``, created if missing.

    Raises:
        OSError: the state dir cannot be written, or the key file is
            missing or unsafe (:class:`realtime.store.keyfile.StoreKeyError`).
        SecretError: ``oauth1.key`` is damaged.
    """
    if store_key_file is not None:
        return shared_key(read_key_file(store_key_file))
    return load_or_create_key(state_dir)


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
        raise SecretError("the secret does not decrypt with this node's OAuth 1 key "
                          "(state_dir/oauth1.key, or [store] key_file on a shared store)") from None


def reseal(old_key: bytes, new_key: bytes, value: str, context: str) -> str:
    """``value`` (sealed under ``old_key`` for ``context``) sealed under ``new_key``.

    Raises:
        SecretError: ``value`` does not open under ``old_key``.
    """
    return encrypt(new_key, decrypt(old_key, value, context), context)


def consumer_context(consumer_key: str) -> str:
    return f"consumer:{consumer_key}"


def token_context(token_hash: str) -> str:
    return f"token:{token_hash}"
