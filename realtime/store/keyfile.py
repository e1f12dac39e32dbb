"""``[store] key_file``: the 32 random bytes every node on a shared store holds.

Written once by ``realtime store migrate`` (mode 0600).  Keys the nodes
must agree on are derived from it with HKDF-SHA256, one label each, so a
key derived for one purpose says nothing about another: today the HMAC
key of login sessions, CSRF tokens and refresh-family credential
fingerprints (which a node kept in ``state_dir/oauth.key`` until the
store was shared), and the key that encrypts the signing key ring in the
store (:mod:`realtime.store.signing_keys`, its own label).
"""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KEY_BYTES", "StoreKeyError", "derive_key", "read_key_file"]

KEY_BYTES = 32

#: HKDF labels of the derived keys.
OAUTH_HMAC = "realtime/store/oauth-hmac/v1"


class StoreKeyError(OSError):
    """The key file is missing, of the wrong size, or readable by others
    (an OSError: ``realtime serve`` says "cannot start: ..." and exits 1)."""


def read_key_file(path: Path) -> bytes:
    """The 32 bytes in ``path``.

    Raises:
        StoreKeyError: missing (run ``realtime store migrate``), not 32
            bytes, or readable by group or others.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreKeyError(f"[store] key_file {path} does not exist: run `realtime store migrate`, "
                            "then copy the file to every node") from None
    if len(data) != KEY_BYTES:
        raise StoreKeyError(f"[store] key_file {path} holds {len(data)} bytes, not {KEY_BYTES}")
    if stat.S_IMODE(mode) & 0o077:
        raise StoreKeyError(f"[store] key_file {path} is readable by others (mode {stat.S_IMODE(mode):04o}):"
                            " chmod 600 it")
    return data


def derive_key(key: bytes, label: str) -> bytes:
    """A 32-byte key for ``label`` (HKDF-SHA256, no salt: ``key`` is uniformly random)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(key)
