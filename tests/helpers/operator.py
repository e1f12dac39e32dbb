"""Operator commands (``realtime app|user|key ...``) run in-process
against config files in a temp dir."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from realtime.cli.main import build_parser


def write_operator_conf(tmp_path: Path, realtime_toml: str, apps_toml: str) -> Path:
    """conf/realtime.toml and conf/apps.toml under ``tmp_path``; the path of realtime.toml."""
    d = tmp_path / "conf"
    d.mkdir()
    (d / "realtime.toml").write_text(realtime_toml)
    (d / "apps.toml").write_text(apps_toml)
    return d / "realtime.toml"


def run_command(conf: Path, *argv: str, stdin: str | None = None,
                monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    """Parse ``ARGV -c CONF`` as the ``realtime`` command does and run it;
    its exit status.  ``stdin`` needs ``monkeypatch`` to stand in for sys.stdin."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    args = build_parser().parse_args([*argv, "-c", str(conf)])
    return args.func(args)
