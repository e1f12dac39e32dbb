"""Operator commands through argparse against tmp config files."""

from __future__ import annotations

import getpass
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realtime.cli import admin
from realtime.config.apps import load_apps
from realtime.config.users import load_users
from realtime.oauth.passwords import verify_secret
from tests.helpers.operator import run_command, write_operator_conf

APPS_TOML = """\
# Registered applications (hand-written comment that must survive).

[[app]]
name = "Existing"   # trailing comment
client_id = "existing"
public = true
redirect_uris = ["https://existing.example/cb"]
scopes = ["chat:read"]
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return write_operator_conf(
        tmp_path,
        '[server]\nstate_dir = "var"\npublic_url = "https://localhost"\n\n'
        '[oauth]\napps = "apps.toml"\nusers = "users.json"\naccess_token_ttl = "15m"\n',
        APPS_TOML,
    )



def lines(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.strip().splitlines() if ": " in line)


def test_app_add_prints_once_and_stores_hash(conf: Path, capsys) -> None:
    assert run_command(conf, "app", "add", "My App", "--redirect-uri", "https://my.example/cb",
                       "http://127.0.0.1:8000/cb", "--scope", "chat:read", "chat:write") == 0
    out = lines(capsys.readouterr().out)
    client_id, secret = out["client_id"], out["client_secret"]
    text = (conf.parent / "apps.toml").read_text()
    assert "hand-written comment that must survive" in text and "# trailing comment" in text
    assert secret not in text
    apps = load_apps(conf.parent / "apps.toml")  # the real validator accepts it
    app = apps[client_id]
    assert app.client_secret_hash.startswith("$argon2id$")
    assert verify_secret(app.client_secret_hash, secret)
    assert app.redirect_uris == ("https://my.example/cb", "http://127.0.0.1:8000/cb")
    assert app.grant_types == ("authorization_code", "refresh_token")
    assert app.scopes == ("chat:read", "chat:write") and not app.public
    assert "existing" in apps


def test_app_add_public_and_grants(conf: Path, capsys) -> None:
    assert run_command(conf, "app", "add", "SPA", "--public", "--redirect-uri", "https://spa.example/cb") == 0
    out = capsys.readouterr().out
    assert "client_id: " in out and "client_secret" not in out
    client_id = lines(out)["client_id"]
    assert load_apps(conf.parent / "apps.toml")[client_id].public
    assert run_command(conf, "app", "add", "Svc", "--grant", "client_credentials", "--scope", "notify") == 0
    svc = lines(capsys.readouterr().out)["client_id"]
    assert load_apps(conf.parent / "apps.toml")[svc].grant_types == ("client_credentials",)


@pytest.mark.parametrize("argv", [
    ("app", "add", "X"),  # authorization_code without a redirect URI
    ("app", "add", "X", "--redirect-uri", "http://remote.example/cb"),
    ("app", "add", "X", "--redirect-uri", "https://x.example/cb#frag"),
    ("app", "add", "X", "--public", "--grant", "client_credentials"),
    ("app", "add", "X", "--grant", "client_credentials", "--scope", 'bad"scope'),
])
def test_app_add_refuses_bad_input(conf: Path, capsys, argv) -> None:
    before = (conf.parent / "apps.toml").read_text()
    assert run_command(conf, *argv) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert (conf.parent / "apps.toml").read_text() == before


def test_rotate_secret_keeps_old_valid_for_grace(conf: Path, capsys) -> None:
    run_command(conf, "app", "add", "Svc", "--grant", "client_credentials")
    first = lines(capsys.readouterr().out)
    before = time.time()
    assert run_command(conf, "app", "rotate-secret", first["client_id"], "--grace", "2h") == 0
    second = lines(capsys.readouterr().out)
    assert second["client_secret"] != first["client_secret"]
    app = load_apps(conf.parent / "apps.toml")[first["client_id"]]
    assert verify_secret(app.client_secret_hash, second["client_secret"])
    (old,) = app.retired_secrets
    assert verify_secret(old.hash, first["client_secret"])
    assert before + 7200 <= old.expires_at <= time.time() + 7201
    text = (conf.parent / "apps.toml").read_text()
    assert "retired_secrets = [{" in text and "hand-written comment" in text
    # Default grace 1h; an expired retired secret is dropped on the next rotation.
    assert run_command(conf, "app", "rotate-secret", first["client_id"]) == 0
    app = load_apps(conf.parent / "apps.toml")[first["client_id"]]
    assert len(app.retired_secrets) == 2
    assert run_command(conf, "app", "rotate-secret", first["client_id"], "--grace", "0") == 0
    assert len(load_apps(conf.parent / "apps.toml")[first["client_id"]].retired_secrets) == 2


def test_rotate_errors(conf: Path, capsys) -> None:
    assert run_command(conf, "app", "rotate-secret", "ghost") == 1
    err = capsys.readouterr().err
    assert "apps.toml" in err and "ghost" in err
    assert run_command(conf, "app", "rotate-secret", "existing") == 1  # public: no secret
    run_command(conf, "app", "add", "Svc", "--grant", "client_credentials")
    cid = lines(capsys.readouterr().out)["client_id"]
    assert run_command(conf, "app", "rotate-secret", cid, "--grace", "soon") == 1
    assert "grace" in capsys.readouterr().err


def test_app_remove(conf: Path, capsys) -> None:
    assert run_command(conf, "app", "remove", "existing") == 0
    text = (conf.parent / "apps.toml").read_text()
    assert "hand-written comment that must survive" in text
    assert load_apps(conf.parent / "apps.toml") == {}
    assert run_command(conf, "app", "remove", "existing") == 1


def test_creates_missing_files_with_private_mode(conf: Path, capsys, monkeypatch) -> None:
    (conf.parent / "apps.toml").unlink()
    assert run_command(conf, "app", "add", "New", "--redirect-uri", "https://n.example/cb") == 0
    path = conf.parent / "apps.toml"
    assert len(load_apps(path)) == 1
    assert path.stat().st_mode & 0o777 == 0o600
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="pw-long-enough-1\n", monkeypatch=monkeypatch) == 0
    assert (conf.parent / "users.json").stat().st_mode & 0o777 == 0o600


def test_rewrite_tightens_mode_to_0600(conf: Path, capsys, monkeypatch) -> None:
    # The files hold password and secret hashes: a 0644 file from a
    # checkout or a hand edit becomes 0600 when a command rewrites it.
    path = conf.parent / "apps.toml"
    path.chmod(0o644)
    run_command(conf, "app", "add", "New", "--redirect-uri", "https://n.example/cb")
    assert path.stat().st_mode & 0o777 == 0o600
    users = conf.parent / "users.json"
    users.write_text('{"users": []}\n')
    users.chmod(0o640)
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="pw-long-enough-1\n", monkeypatch=monkeypatch) == 0
    assert users.stat().st_mode & 0o777 == 0o600
    assert not [p for p in conf.parent.iterdir() if p.name.endswith(".tmp")]


def test_user_add_passwd_disable_enable(conf: Path, capsys, monkeypatch) -> None:
    users_path = conf.parent / "users.json"
    assert run_command(conf, "user", "add", "alice", "--password-stdin", "--scope", "chat:read", "chat:write",
                       "--display-name", "Alice", "--email", "alice@example.com",
                       stdin="correct horse\n", monkeypatch=monkeypatch) == 0
    data = json.loads(users_path.read_text())
    assert data["users"][0]["name"] == "alice" and "correct horse" not in users_path.read_text()
    assert users_path.read_text().startswith('{\n  "users": [')  # indent 2
    user = load_users(users_path)["alice"]
    assert verify_secret(user.password_hash, "correct horse")
    assert user.scopes == ("chat:read", "chat:write") and user.email == "alice@example.com"

    assert run_command(conf, "user", "passwd", "alice", "--password-stdin", stdin="battery staple\n",
                       monkeypatch=monkeypatch) == 0
    user = load_users(users_path)["alice"]
    assert verify_secret(user.password_hash, "battery staple")
    assert not verify_secret(user.password_hash, "correct horse")

    assert run_command(conf, "user", "disable", "alice") == 0
    assert load_users(users_path)["alice"].disabled
    assert run_command(conf, "user", "enable", "alice") == 0
    assert not load_users(users_path)["alice"].disabled


def test_user_errors(conf: Path, capsys, monkeypatch) -> None:
    run_command(conf, "user", "add", "alice", "--password-stdin", stdin="pw-long-enough-1\n", monkeypatch=monkeypatch)
    assert run_command(conf, "user", "add", "Alice", "--password-stdin", stdin="pw-long-enough-1\n", monkeypatch=monkeypatch) == 1
    assert run_command(conf, "user", "disable", "ghost") == 1
    assert "users.json" in capsys.readouterr().err
    assert run_command(conf, "user", "add", "bob", "--password-stdin", stdin="\n", monkeypatch=monkeypatch) == 1
    assert run_command(conf, "user", "add", "b:ob", "--password-stdin", stdin="pw-long-enough-1\n", monkeypatch=monkeypatch) == 1


def test_user_add_prompts_twice(conf: Path, capsys, monkeypatch) -> None:
    answers = iter(["secret-one-long", "secret-one-long", "a", "b"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert run_command(conf, "user", "add", "carol") == 0
    assert verify_secret(load_users(conf.parent / "users.json")["carol"].password_hash, "secret-one-long")
    assert run_command(conf, "user", "passwd", "carol") == 1  # mismatch
    assert "do not match" in capsys.readouterr().err


def test_users_toml(conf: Path, capsys, monkeypatch) -> None:
    text = conf.read_text().replace('users = "users.json"', 'users = "users.toml"')
    conf.write_text(text)
    (conf.parent / "users.toml").write_text("# people\n")
    assert run_command(conf, "user", "add", "dan", "--password-stdin", stdin="pw-long-enough-1\n", monkeypatch=monkeypatch) == 0
    assert run_command(conf, "user", "disable", "dan") == 0
    path = conf.parent / "users.toml"
    assert path.read_text().startswith("# people")
    assert load_users(path)["dan"].disabled


def test_missing_config(tmp_path: Path, capsys) -> None:
    assert run_command(tmp_path / "nope.toml", "app", "remove", "x") == 1
    assert "nope.toml" in capsys.readouterr().err


def test_notify_server_sends_sighup(conf: Path, capsys) -> None:
    state_dir = conf.parent / "var"
    state_dir.mkdir()
    # A stand-in server: it holds the pid file's lock as `serve` does.
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys, time; from pathlib import Path; from realtime.net import pidfile; "
                              # SIGHUP's default action, even under nohup (an ignored signal is inherited)
                              "signal.signal(signal.SIGHUP, signal.SIG_DFL); "
                              "held = pidfile.write(Path(sys.argv[1])); print('ready', flush=True); time.sleep(30)",
                              str(state_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert run_command(conf, "app", "remove", "existing") == 0
        assert child.wait(timeout=10) == -signal.SIGHUP
        assert "reload" in capsys.readouterr().err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_notify_without_server_is_a_note(conf: Path, capsys) -> None:
    assert admin.notify_server(conf.parent / "var") is False
    assert "no running server" in capsys.readouterr().err


def test_key_rotate(conf: Path, capsys) -> None:
    from realtime.tokens.keyring import KeyRing

    keys = conf.parent / "var" / "keys"
    KeyRing.load_or_create(keys, "RS256")
    first = KeyRing.load(keys).active.kid
    assert run_command(conf, "key", "rotate") == 0
    kid = lines(capsys.readouterr().out)["kid"]
    ring = KeyRing.load(keys)
    assert ring.active.kid == kid != first
    old = ring.keys[first]
    assert old.retire_at is not None and old.retire_at >= time.time() + 900  # ttl + leeway


@pytest.mark.parametrize("line,key", [('leeway = "abc"', "oauth.leeway"), ('signing_alg = "XX999"', "oauth.signing_alg")])
def test_key_rotate_names_file_line_and_key_of_a_bad_value(conf: Path, capsys, line: str, key: str) -> None:
    """The window comes from the loader's own [oauth] fields, so a bad value is
    reported as every config error is (file:line: key: message) and no key is made."""
    conf.write_text(conf.read_text() + line + "\n")
    bad_line = conf.read_text().splitlines().index(line) + 1
    assert run_command(conf, "key", "rotate") == 1
    err = capsys.readouterr().err
    assert f"realtime.toml:{bad_line}: {key}:" in err
    assert not (conf.parent / "var" / "keys").exists()


def test_disabling_a_provider_user_that_lives_only_in_a_shared_store_says_how(tmp_path: Path, capsys) -> None:
    conf = write_operator_conf(
        tmp_path,
        '[server]\nstate_dir = "var"\npublic_url = "https://localhost"\n\n'
        '[oauth]\napps = "apps.toml"\nusers = "users.json"\n\n'
        '[store]\nurl = "postgresql://realtime@127.0.0.1/realtime"\n',
        APPS_TOML,
    )
    assert run_command(conf, "user", "disable", "corp:alice") == 1
    err = capsys.readouterr().err
    assert "no user named 'corp:alice' in the users file" in err and "lives in the database" in err
    assert "realtime user add corp:alice" in err and "Traceback" not in err
    assert run_command(conf, "user", "enable", "ghost") == 1  # not a provider user: the usual answer
    assert "no user named 'ghost'" in capsys.readouterr().err
