"""A malformed broker or public URL in an error (``realtime check``, a
reload) never shows its password; :func:`redact_url` on the forms it meets."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.config.load import ConfigError, load_settings
from realtime.config.redact import redact_url

SECRET = "s3cret-pa55"


@pytest.mark.parametrize(("section", "url"), [
    ("broker", f"http://:{SECRET}@cache:6379/0"),  # wrong scheme
    ("broker", f"user:{SECRET}@cache:6379"),  # no scheme at all
    ("broker", f"redis//:{SECRET}@cache:6379"),  # a colon missing
    ("store", f"mysql://realtime:{SECRET}@db:3306/realtime"),  # not PostgreSQL
    ("store", f"postgresql://realtime:{SECRET}@db:99999/realtime"),  # a bad port
    ("store", f"postgresql//realtime:{SECRET}@db/realtime"),  # a colon missing
    ("server", f"https://admin:{SECRET}@realtime.example"),
    ("server", f"ftp://admin:{SECRET}@realtime.example"),
])
def test_a_bad_url_error_hides_the_password(tmp_path: Path, section: str, url: str) -> None:
    key = "url" if section in ("broker", "store") else "public_url"
    conf = tmp_path / "realtime.toml"
    conf.write_text(f'[{section}]\n{key} = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(conf)
    message = str(caught.value)
    assert f"{section}.{key}" in message and "***" in message
    assert SECRET not in message


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://user:pw@host/0", "redis://user:***@host/0"),
    ("redis://user@host/0", "redis://user@host/0"),
    ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
    ("rediss://cache:6380/1", "rediss://cache:6380/1"),
    ("user:pw@host:6379", "***@host:6379"),
    ("redis://[::1:pw@host", "***@host"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
