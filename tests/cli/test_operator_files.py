"""The operator's files under concurrent edits, their modes, the password
policy, the one namespace of token subjects (users and client_ids), and
the client CLI's refresh-token file.  Concurrency runs real `realtime`
processes against one file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.cli.client import write_secret_file
from realtime.config.apps import load_apps
from realtime.config.users import load_users
from realtime.config.load import ConfigError, load_settings
from realtime.oauth.passwords import hash_secret, verify_secret
from tests.helpers.operator import run_command, write_operator_conf

PASSWORD = "a long enough pw"  # 16 characters

CONFIG = """\
[server]
state_dir = "var"
public_url = "https://localhost"

[oauth]
apps = "apps.toml"
users = "users.json"
"""

APPS_TOML = """\
# hand-written
[[app]]
name = "Existing"
client_id = "existing"
public = true
redirect_uris = ["https://existing.example/cb"]
scopes = ["chat:read"]
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    conf = write_operator_conf(tmp_path, CONFIG, APPS_TOML)
    (conf.parent / "users.json").write_text('{"users": []}\n')
    (conf.parent / "users.json").chmod(0o600)
    return conf



def realtime(*argv: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "realtime", *argv], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def start_all(commands: list[tuple[list[str], str]]) -> list[tuple[int, str]]:
    """Start every command before waiting for any: real concurrent writers."""
    procs = [subprocess.Popen([sys.executable, "-m", "realtime", *argv], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, _ in commands]
    results = []
    for proc, (_, stdin) in zip(procs, commands):
        out, err = proc.communicate(stdin, timeout=120)
        results.append((proc.returncode, out + err))
    return results


# -- item 7: concurrent edits ------------------------------------------------------


def test_twenty_concurrent_user_adds_keep_every_user(conf: Path) -> None:
    names = [f"user{n:02d}" for n in range(20)]
    results = start_all([(["user", "add", name, "--password-stdin", "-c", str(conf)], PASSWORD + "\n")
                         for name in names])
    assert [code for code, _ in results] == [0] * 20, results
    users_file = conf.parent / "users.json"
    json.loads(users_file.read_text())  # still one valid document
    users = load_users(users_file)  # and the real validator accepts it
    assert sorted(users) == names
    assert verify_secret(users["user07"].password_hash, PASSWORD)


def test_concurrent_app_adds_keep_every_app(conf: Path) -> None:
    results = start_all([(["app", "add", f"App {n}", "--redirect-uri", "https://a.example/cb", "-c", str(conf)], "")
                         for n in range(10)])
    assert [code for code, _ in results] == [0] * 10, results
    ids = [line.split(": ", 1)[1] for _, out in results for line in out.splitlines()
           if line.startswith("client_id: ")]
    apps = load_apps(conf.parent / "apps.toml")
    assert set(apps) == {"existing", *ids} and len(ids) == 10
    assert (conf.parent / "apps.toml").read_text().startswith("# hand-written")


def test_the_lock_is_a_sidecar_that_outlives_the_rename(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n", monkeypatch=monkeypatch) == 0
    lock = conf.parent / ".users.json.lock"
    assert lock.is_file() and lock.stat().st_mode & 0o777 == 0o600


# -- I7: file modes ----------------------------------------------------------------


def test_written_files_are_0600_and_a_rewrite_tightens(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apps, users = conf.parent / "apps.toml", conf.parent / "users.json"
    apps.chmod(0o644)
    assert run_command(conf, "app", "add", "New", "--redirect-uri", "https://n.example/cb") == 0
    assert apps.stat().st_mode & 0o777 == 0o600
    users.unlink()
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n", monkeypatch=monkeypatch) == 0
    assert users.stat().st_mode & 0o777 == 0o600  # a new file
    users.chmod(0o664)
    assert run_command(conf, "user", "disable", "alice") == 0
    assert users.stat().st_mode & 0o777 == 0o600


def users_with_hash(path: Path, name: str = "alice") -> None:
    path.write_text(json.dumps({"users": [{"name": name, "password_hash": hash_secret(PASSWORD),
                                           "scopes": []}]}))


def test_check_warns_about_readable_hashes_and_still_passes(conf: Path) -> None:
    users = conf.parent / "users.json"
    users_with_hash(users)
    users.chmod(0o644)
    result = realtime("check", "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert f"{users}: holds password hashes and is readable by its group and every user (mode 0644)" in result.stderr
    assert f"chmod 600 {users}" in result.stderr
    users.chmod(0o600)
    result = realtime("check", "-c", str(conf))
    assert result.returncode == 0 and "chmod" not in result.stderr


def test_load_warns_for_a_group_readable_apps_file_with_secrets(conf: Path, caplog: pytest.LogCaptureFixture,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # What `serve` logs at start and on every reload (both call load_settings).
    assert run_command(conf, "app", "add", "Confidential", "--redirect-uri", "https://c.example/cb") == 0
    apps = conf.parent / "apps.toml"
    apps.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="realtime.config"):
        load_settings(conf)
    assert [r.getMessage() for r in caplog.records] == [
        f"{apps}: holds client secret hashes and is readable by its group (mode 0640); fix: chmod 600 {apps}"]
    caplog.clear()
    apps.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="realtime.config"):
        load_settings(conf)
    assert not caplog.records


def test_no_warning_for_a_file_without_hashes(conf: Path, caplog: pytest.LogCaptureFixture) -> None:
    (conf.parent / "apps.toml").chmod(0o644)  # only a public app: nothing secret in it
    (conf.parent / "users.json").write_text('{"users": [{"name": "corp", "scopes": []}]}')
    with caplog.at_level(logging.WARNING, logger="realtime.config"):
        load_settings(conf)
    assert not caplog.records


# -- I8: password length -----------------------------------------------------------


def test_short_password_is_refused(conf: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="sevench\n", monkeypatch=monkeypatch) == 1
    err = capsys.readouterr().err
    assert "at least 8 characters" in err and "min_password_length" in err and "sevench" not in err
    assert load_users(conf.parent / "users.json") == {}
    # Eight characters (NIST 800-63B's floor) are enough by default.
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="eight ch\n", monkeypatch=monkeypatch) == 0
    assert run_command(conf, "user", "passwd", "alice", "--password-stdin", stdin="short\n", monkeypatch=monkeypatch) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert verify_secret(load_users(conf.parent / "users.json")["alice"].password_hash, "eight ch")


def test_overlong_password_is_refused(conf: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="x" * 1025 + "\n", monkeypatch=monkeypatch) == 1
    assert "at most 1024 characters" in capsys.readouterr().err
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="x" * 1024 + "\n", monkeypatch=monkeypatch) == 0


def test_min_password_length_is_configurable(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf.write_text(CONFIG + "min_password_length = 20\n")
    assert load_settings(conf).oauth.min_password_length == 20
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="nineteen characters\n",
                       monkeypatch=monkeypatch) == 1
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin="twenty characters!!!\n",
                       monkeypatch=monkeypatch) == 0
    conf.write_text(CONFIG + "min_password_length = 12\n")  # ASVS's recommendation
    assert run_command(conf, "user", "add", "bob", "--password-stdin", stdin="elevenchars\n", monkeypatch=monkeypatch) == 1
    assert run_command(conf, "user", "add", "bob", "--password-stdin", stdin="twelve chars\n", monkeypatch=monkeypatch) == 0


@pytest.mark.parametrize("value", ["0", "1025", '"12"', "true"])
def test_bad_min_password_length_names_file_line_and_key(conf: Path, value: str, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    conf.write_text(CONFIG + f"min_password_length = {value}\n")
    line = CONFIG.count("\n") + 1
    with pytest.raises(ConfigError) as caught:
        load_settings(conf)
    assert str(caught.value).startswith(f"{conf}:{line}: oauth.min_password_length: ")
    assert run_command(conf, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n", monkeypatch=monkeypatch) == 1
    assert f"{conf}:{line}: oauth.min_password_length: " in capsys.readouterr().err


def test_default_min_password_length() -> None:
    from realtime.config.settings import OAuthSettings

    from realtime.config.users import DEFAULT_MIN_PASSWORD_LENGTH

    assert OAuthSettings().min_password_length == DEFAULT_MIN_PASSWORD_LENGTH == 8


# -- L2: users and client_ids share no name ----------------------------------------


def test_load_refuses_a_user_named_like_a_client_id(conf: Path) -> None:
    users = conf.parent / "users.json"
    users.write_text('{"users": [\n  {"name": "bob", "scopes": []},\n  {"name": "Existing", "scopes": []}\n]}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(conf)
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.key) == (users, 3, "users[2].name")
    assert "client_id of an app" in issue.message
    result = realtime("check", "-c", str(conf))
    assert result.returncode == 1 and f"{users}:3: users[2].name: " in result.stderr


def test_user_add_refuses_a_client_id(conf: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(conf, "user", "add", "existing", "--password-stdin", stdin=PASSWORD + "\n", monkeypatch=monkeypatch) == 1
    assert "client_id of an app" in capsys.readouterr().err
    assert load_users(conf.parent / "users.json") == {}


def test_app_add_never_generates_a_user_name(conf: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (conf.parent / "users.json").write_text('{"users": [{"name": "Mine-00000000", "scopes": []}]}')
    hexes = iter(["00000000", "11111111"])
    monkeypatch.setattr("realtime.cli.admin.apps.secrets.token_hex", lambda n: next(hexes))
    assert run_command(conf, "app", "add", "mine", "--public", "--redirect-uri", "https://m.example/cb") == 0
    assert "client_id: mine-11111111" in capsys.readouterr().out
    load_settings(conf)  # and the pair loads


# -- I14: the client's refresh-token file ------------------------------------------


def test_secret_file_does_not_follow_a_planted_tmp_symlink(tmp_path: Path) -> None:
    target = tmp_path / "refresh_token"
    target.write_text("old\n")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "refresh_token.tmp").symlink_to(victim)
    write_secret_file(target, "new-token")
    assert victim.read_text() == "precious\n"
    assert target.read_text() == "new-token\n" and not target.is_symlink()
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refresh_token", "refresh_token.tmp", "victim"]


def test_secret_file_replaces_a_readable_file_with_a_private_one(tmp_path: Path) -> None:
    target = tmp_path / "rt"
    target.write_text("old\n")
    os.chmod(target, 0o644)
    write_secret_file(target, "rotated")
    assert target.read_text() == "rotated\n" and target.stat().st_mode & 0o777 == 0o600

