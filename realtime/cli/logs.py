"""Logging for ``realtime serve``: levels per logger and the two formats.

Levels: the server's own loggers (``realtime.*``) follow ``[server]
log_level`` (or ``--log-level``).  Libraries stay at WARNING (or at the
server's level when that is stricter) even at ``debug``: at DEBUG,
oauthlib logs the OAuth 1.0a signature base string of every failed HMAC
check, with ``oauth_verifier`` and ``oauth_token`` in it, and httpx,
httpcore, coredis and anyio log request and connection detail nobody
running the server needs.

Formats (``[server] log_format``): ``text`` is one human line per record;
``json`` is one JSON object per line with ``time`` (RFC 3339, UTC),
``level``, ``logger``, ``message``, every field the event carried through
``extra=``, and ``exc`` (the traceback text) for an exception.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

__all__ = ["LIBRARY_LOGGERS", "JsonFormatter", "configure"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Kept at WARNING whatever the server's level (see the module docstring).
LIBRARY_LOGGERS = ("oauthlib", "httpx", "httpcore", "coredis", "anyio", "hpack", "h11", "wsproto")

# The attributes every LogRecord has; anything else came through ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are
    escaped by JSON, so a line is always one record)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in event:
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, default=str, ensure_ascii=False)


def configure(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Set up the root handler on ``stream`` (stderr) and the levels.

    Args:
        level: ``debug`` ... ``critical``, for ``realtime.*``.
        log_format: ``text`` or ``json``.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    server_level = logging.getLevelName(level.upper())
    library_level = max(logging.WARNING, server_level)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # The root (and so any library not named here) stays at WARNING too;
    # only the server's own tree is opened up to the configured level.
    root.setLevel(library_level)
    logging.getLogger("realtime").setLevel(server_level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    # Python warnings go through the same handler (and format) as records
    # of the "py.warnings" logger, not as bare text on stderr.
    logging.captureWarnings(True)
