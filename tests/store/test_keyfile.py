"""``[store] key_file``: read strictly, and keys derived per purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.store.keyfile import OAUTH_HMAC, StoreKeyError, derive_key, read_key_file


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_a_good_key_file_is_read_and_derives_stable_distinct_keys(tmp_path: Path) -> None:
    key = read_key_file(write(tmp_path / "k", bytes(range(32))))
    assert key == bytes(range(32))
    assert derive_key(key, OAUTH_HMAC) == derive_key(bytes(range(32)), OAUTH_HMAC)  # every node agrees
    assert derive_key(key, OAUTH_HMAC) != derive_key(key, "another purpose") != key
    assert len(derive_key(key, OAUTH_HMAC)) == 32


@pytest.mark.parametrize(("data", "mode", "message"), [
    (None, 0o600, "does not exist: run `realtime store migrate`"),
    (b"x" * 31, 0o600, "holds 31 bytes, not 32"),
    (b"x" * 32, 0o644, "readable by others (mode 0644)"),
])
def test_a_bad_key_file_is_refused(tmp_path: Path, data: bytes | None, mode: int, message: str) -> None:
    path = tmp_path / "k"
    if data is not None:
        write(path, data, mode)
    with pytest.raises(StoreKeyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_key_file(path)
