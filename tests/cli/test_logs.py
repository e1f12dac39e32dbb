"""Logging of ``realtime serve``: levels per logger, the JSON
format (unit and through the real command), and ``[server] log_format``."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import trio

from realtime.cli import logs
from tests.helpers.server import CONFIG, ServerProcess, write_conf

KEYS = {"time", "level", "logger", "message"}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in ("realtime", *logs.LIBRARY_LOGGERS)}
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in named.items():
            logging.getLogger(name).setLevel(old)


def test_debug_opens_realtime_only(restore_logging: None) -> None:
    logs.configure("debug", stream=io.StringIO())
    assert logging.getLogger("realtime.server").isEnabledFor(logging.DEBUG)
    for name in ("oauthlib.oauth1.rfc5849.signature", "httpx", "httpcore.http11", "coredis", "anyio", "some.lib"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    logs.configure("error", stream=io.StringIO())
    assert not logging.getLogger("realtime.server").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("httpx").isEnabledFor(logging.WARNING)  # never chattier than the server


def test_json_record_carries_extra_fields_and_exception(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    log = logging.getLogger("realtime.test")
    log.info("user %s logged in\nsecond line", "alice", extra={"client_id": "web", "status": 200})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # a newline in a message stays inside its JSON line
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "user alice logged in\nsecond line"
    assert first["level"] == "INFO" and first["logger"] == "realtime.test"
    assert first["client_id"] == "web" and first["status"] == 200
    assert first["time"].endswith("Z") and datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"] and "Traceback" in second["exc"]


def test_python_warnings_become_json_records(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old call", DeprecationWarning, stacklevel=1)
    (event,) = (json.loads(line) for line in out.getvalue().splitlines())
    assert event["logger"] == "py.warnings" and "an old call" in event["message"]


async def test_json_log_of_the_real_command(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    config.write_text(config.read_text().replace("[server]\n", '[server]\nlog_format = "json"\n', 1))
    # ServerProcess finds the bound addresses in the message of the `listening` record.
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    assert set(bound) == {"http", "https"}
    server.proc.send_signal(signal.SIGHUP)
    await server.wait_for_line("reload (SIGHUP) applied")
    server.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await server.proc.wait() == 0
    await trio.lowlevel.checkpoint()
    events = [json.loads(line) for line in server.lines if line]
    assert events and all(KEYS <= set(event) for event in events), server.lines
    assert any(e["message"].startswith("listening http=") and e["logger"] == "realtime.server" for e in events)
    assert events[-1]["message"] == "stopped"
    for event in events:
        datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        assert event["time"].endswith("Z")


def test_bad_log_format_names_file_line_and_key(tmp_path: Path) -> None:
    config = write_conf(tmp_path)
    config.write_text(CONFIG.replace("[server]\n", '[server]\nlog_format = "xml"\n', 1))
    done = subprocess.run([sys.executable, "-m", "realtime", "check", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "realtime.toml:3: server.log_format: must be one of text, json, got 'xml'" in done.stderr, done.stderr
