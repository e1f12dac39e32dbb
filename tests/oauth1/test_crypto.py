"""Secrets at rest: AES-GCM under state_dir/oauth1.key (mode 0600)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from realtime.oauth1 import crypto


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    key = crypto.load_or_create_key(tmp_path / "state")
    path = tmp_path / "state" / crypto.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.load_or_create_key(tmp_path / "state") == key and len(key) == 32
    assert [p.name for p in path.parent.iterdir()] == [crypto.KEY_FILE]  # no temp file left


def test_roundtrip_and_binding(tmp_path: Path) -> None:
    key = crypto.load_or_create_key(tmp_path)
    sealed = crypto.encrypt(key, "s3cret", crypto.consumer_context("ck-1"))
    assert sealed.startswith(crypto.PREFIX) and "s3cret" not in sealed
    assert crypto.decrypt(key, sealed, crypto.consumer_context("ck-1")) == "s3cret"
    with pytest.raises(crypto.SecretError):
        crypto.decrypt(key, sealed, crypto.consumer_context("ck-2"))  # copied onto another consumer
    with pytest.raises(crypto.SecretError):
        crypto.decrypt(bytes(32), sealed, crypto.consumer_context("ck-1"))  # another state dir's key
    with pytest.raises(crypto.SecretError):
        crypto.unpack("plain text secret")


def test_damaged_key_file(tmp_path: Path) -> None:
    (tmp_path / crypto.KEY_FILE).write_bytes(b"short")
    with pytest.raises(crypto.SecretError):
        crypto.load_or_create_key(tmp_path)
