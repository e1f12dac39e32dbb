"""``realtime app add --oauth1`` and the ``oauth1`` keys of apps.toml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from realtime.cli.main import build_parser
from realtime.config.apps import load_apps
from realtime.config.fields import ConfigError
from realtime.oauth1 import crypto
from tests.helpers.oauth1 import public_pem


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "realtime.toml").write_text('[server]\nstate_dir = "var"\n\n[oauth]\napps = "apps.toml"\n')
    return d / "realtime.toml"


def run(conf: Path, *argv: str) -> int:
    args = build_parser().parse_args([*argv, "-c", str(conf)])
    return args.func(args)


def lines(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.strip().splitlines() if ": " in line)


def test_app_add_oauth1_prints_once_and_stores_encrypted(conf: Path, capsys: pytest.CaptureFixture[str],
                                                          rsa_private_pem: str) -> None:
    pem = conf.parent / "consumer.pub"
    pem.write_text(public_pem(rsa_private_pem))
    assert run(conf, "app", "add", "Legacy", "--oauth1", "--scope", "chat:read",
               "--rsa-public-key", str(pem)) == 0
    out = lines(capsys.readouterr().out)
    assert set(out) == {"client_id", "client_secret", "consumer_key", "consumer_secret"}
    text = (conf.parent / "apps.toml").read_text()
    assert out["consumer_secret"] not in text and "consumer_secret_enc" in text
    app = load_apps(conf.parent / "apps.toml")[out["client_id"]]
    assert app.oauth1 and app.consumer_key == out["consumer_key"] and app.grant_types == ()
    assert app.rsa_public_key is not None and "BEGIN PUBLIC KEY" in app.rsa_public_key
    # The server reads the same key: state_dir from the config, relative to it.
    key = crypto.load_key(conf.parent / "var")
    assert key is not None
    assert crypto.decrypt(key, app.consumer_secret_enc, crypto.consumer_context(app.consumer_key)) == out["consumer_secret"]


def test_rsa_key_needs_oauth1(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(conf, "app", "add", "X", "--redirect-uri", "https://x.example/cb", "--rsa-public-key", "nope") == 1
    assert "--oauth1" in capsys.readouterr().err


def apps(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "apps.toml"
    path.write_text(textwrap.dedent(body))
    return path


def messages(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_apps(path)
    return [str(issue) for issue in info.value.issues]


def test_oauth1_validation(tmp_path: Path) -> None:
    errors = messages(apps(tmp_path, """
        [[app]]
        name = "a"
        client_id = "a"
        public = true
        grant_types = []
        oauth1 = true

        [[app]]
        name = "b"
        client_id = "b"
        public = true
        grant_types = []
        consumer_key = "ck"
        consumer_secret_enc = "plain secret"

        [[app]]
        name = "c"
        client_id = "c"
        public = true
        grant_types = []
        oauth1 = true
        consumer_key = "ck-c"
        rsa_public_key = "not a key"
    """))
    text = "\n".join(errors)
    assert "needs a consumer_key" in text
    assert "needs consumer_secret_enc or rsa_public_key" in text
    assert "consumer_key is used only with oauth1 = true" in text
    assert "not a clear-text secret" in text
    assert "PEM RSA public key" in text


def test_duplicate_consumer_key(tmp_path: Path) -> None:
    enc = "aesgcm1:" + "A" * 60
    errors = messages(apps(tmp_path, f"""
        [[app]]
        name = "a"
        client_id = "a"
        public = true
        grant_types = []
        oauth1 = true
        consumer_key = "ck"
        consumer_secret_enc = "{enc}"

        [[app]]
        name = "b"
        client_id = "b"
        public = true
        grant_types = []
        oauth1 = true
        consumer_key = "ck"
        consumer_secret_enc = "{enc}"
    """))
    assert any("duplicate consumer_key" in e for e in errors)
