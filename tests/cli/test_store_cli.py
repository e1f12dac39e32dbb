"""``realtime store migrate`` and ``realtime check`` against a real PostgreSQL."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg

from realtime.cli.main import build_parser
from realtime.store.postgres import PG_SCHEMA_VERSION, PgStore, schema_version
from tests.helpers.postgres import PostgresCluster
from tests.helpers.redis import free_port

SECRET = "pg-s3cret-word"


def run(conf: Path, *argv: str) -> int:
    args = build_parser().parse_args([*argv, "-c", str(conf)])
    return args.func(args)


def config(tmp_path: Path, url: str | None, key_file: str | None = "keys/store.key") -> Path:
    conf = tmp_path / "realtime.toml"
    lines = ['[server]', 'state_dir = "var"', "[store]"]
    if url is not None:
        lines.append(f'url = "{url}"')
    if key_file is not None:
        lines.append(f'key_file = "{key_file}"')
    conf.write_text("\n".join(lines) + "\n")
    return conf


def with_password(url: str) -> str:
    """The same URL with a password (the throwaway cluster trusts loopback, so it is ignored)."""
    return url.replace("postgresql://realtime@", f"postgresql://realtime:{SECRET}@")


def test_migrate_creates_the_schema_and_the_key_file_once(tmp_path: Path, postgres: PostgresCluster,
                                                          capsys) -> None:
    url = with_password(postgres.fresh_database(migrated=False))
    conf = config(tmp_path, url)
    assert run(conf, "check") == 1  # reachable, not migrated
    err = capsys.readouterr().err
    assert "realtime store migrate" in err and SECRET not in err

    assert run(conf, "store", "migrate") == 0
    out, err = capsys.readouterr()
    assert f"created schema version {PG_SCHEMA_VERSION}" in out and SECRET not in out + err
    key = tmp_path / "keys" / "store.key"
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    with psycopg.connect(url) as conn:
        assert schema_version(conn) == PG_SCHEMA_VERSION
    PgStore.open(url).close()  # a server can open it now

    first = key.read_bytes()
    assert run(conf, "store", "migrate") == 0  # idempotent; the key file is kept
    assert "up to date" in capsys.readouterr().out
    assert key.read_bytes() == first
    assert run(conf, "check") == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


def test_a_key_file_of_the_wrong_size_is_refused_not_replaced(tmp_path: Path, pg_url: str, capsys) -> None:
    conf = config(tmp_path, pg_url, key_file="short.key")
    (tmp_path / "short.key").write_bytes(b"x" * 16)
    assert run(conf, "store", "migrate") == 1
    assert "16 bytes, not 32" in capsys.readouterr().err
    assert (tmp_path / "short.key").read_bytes() == b"x" * 16


def test_unreachable_database_fails_migrate_and_check_without_the_password(tmp_path: Path, capsys) -> None:
    conf = config(tmp_path, f"postgresql://realtime:{SECRET}@127.0.0.1:{free_port()}/realtime")
    assert run(conf, "store", "migrate") == 1
    err = capsys.readouterr().err
    assert "cannot connect to postgresql://realtime:***@127.0.0.1" in err and SECRET not in err
    assert run(conf, "check") == 1
    err = capsys.readouterr().err
    assert "[store] url: cannot connect" in err and SECRET not in err


def test_migrate_needs_a_store_url(tmp_path: Path, capsys) -> None:
    conf = config(tmp_path, None)
    assert run(conf, "store", "migrate") == 1
    assert "has no [store] url" in capsys.readouterr().err


def test_check_reports_a_missing_key_file(tmp_path: Path, pg_url: str, capsys) -> None:
    conf = config(tmp_path, pg_url)
    assert run(conf, "check") == 1
    err = capsys.readouterr().err
    assert "[store] key_file" in err and "does not exist: run `realtime store migrate`" in err
    assert "[store] url" not in err  # the database itself is fine
