"""``post_logout_redirect_uris`` in apps.toml and `realtime app add
--post-logout-redirect-uri` (SPEC §8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.cli.main import build_parser
from realtime.config.apps import load_apps
from realtime.config.fields import ConfigError


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "realtime.toml").write_text('[server]\nstate_dir = "var"\npublic_url = "https://localhost"\n\n'
                                     '[oauth]\napps = "apps.toml"\nusers = "users.json"\n')
    (d / "apps.toml").write_text("")
    return d / "realtime.toml"


def run(conf: Path, *argv: str) -> int:
    args = build_parser().parse_args([*argv, "-c", str(conf)])
    return args.func(args)  # type: ignore[no-any-return]


def test_app_add_stores_post_logout_redirect_uris(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(conf, "app", "add", "RP", "--redirect-uri", "https://rp.example/cb", "--scope", "openid",
               "--post-logout-redirect-uri", "https://rp.example/bye", "http://127.0.0.1:8000/bye") == 0
    client_id = capsys.readouterr().out.splitlines()[0].split(": ")[1]
    app = load_apps(conf.parent / "apps.toml")[client_id]
    assert app.post_logout_redirect_uris == ("https://rp.example/bye", "http://127.0.0.1:8000/bye")
    assert app.scopes == ("openid",)


def test_app_add_refuses_a_bad_post_logout_uri(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(conf, "app", "add", "RP", "--redirect-uri", "https://rp.example/cb",
               "--post-logout-redirect-uri", "http://remote.example/bye") != 0
    assert "bad post-logout redirect URI" in capsys.readouterr().err
    assert (conf.parent / "apps.toml").read_text() == ""


def test_a_bad_post_logout_uri_in_apps_toml_names_file_line_and_key(tmp_path: Path) -> None:
    apps = tmp_path / "apps.toml"
    apps.write_text('[[app]]\nname = "RP"\nclient_id = "rp"\npublic = true\n'
                    'redirect_uris = ["https://rp.example/cb"]\n'
                    'post_logout_redirect_uris = ["https://rp.example/bye#frag"]\n')
    with pytest.raises(ConfigError, match=r"apps.toml:6: .*post_logout_redirect_uris"):
        load_apps(apps)
