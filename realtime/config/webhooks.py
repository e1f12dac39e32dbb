"""``[[webhook]]`` tables (SPEC §12): where events are POSTed, which
ones, and the secret that signs them.

The secret is read here, at load (and reload) time, from the environment
variable ``secret_env`` or the file ``secret_file``: a missing one is a
config error with the file, line and key, not a failure at the first
event.  It is kept out of ``repr`` so it never reaches a log line.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from realtime.config.settings import WEBHOOK_EVENTS, WebhookSettings
from realtime.config.fields import Source, array, choice, duration, file_path, integer, read_table, string, type_name

__all__ = ["EVENTS", "WebhookSettings", "read_webhooks"]

EVENTS = WEBHOOK_EVENTS


def _fields(base: Path) -> dict[str, Any]:
    return {
        "url": string,
        "events": array(choice(*EVENTS)),
        "secret_env": string,
        "secret_file": file_path(base),
        "timeout": duration(positive=True),
        "max_attempts": integer(1, 100),
        "queue_size": integer(1, 1_000_000),
    }


def url_problem(url: str) -> str | None:
    """Why ``url`` may not receive webhooks, or None: https, or http on loopback."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"not a URL: {url!r}"
    if parts.scheme not in ("http", "https") or not host:
        return f"must be an https:// URL (or http:// on loopback), got {url!r}"
    if parts.username or parts.password:
        return "must not carry credentials; the signature authenticates the sender"
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            return f"plain http is allowed on loopback only (127.0.0.1, ::1, localhost), got {host!r}"
    return None


def read_webhooks(source: Source, tables: Any, base: Path) -> tuple[WebhookSettings, ...]:
    if not isinstance(tables, list):
        source.error(("webhook",), f"expected [[webhook]] tables, got {type_name(tables)}")
        return ()
    hooks = []
    for n, table in enumerate(tables):
        path = ("webhook", n)
        fields = read_table(source, table, path, _fields(base), required=("url",))
        if not fields or "url" not in fields:
            continue
        problem = url_problem(fields["url"])
        if problem is not None:
            source.error(path + ("url",), problem)
            continue
        env, file = fields.pop("secret_env", None), fields.pop("secret_file", None)
        if (env is None) == (file is None):
            source.error(path, "give exactly one of secret_env and secret_file")
            continue
        if env is not None:
            value = os.environ.get(env)
            if not value:
                source.error(path + ("secret_env",), f"the environment variable {env} is not set or empty")
                continue
            secret = value.encode()
        else:
            try:
                secret = file.read_bytes().strip()
            except OSError as exc:
                source.error(path + ("secret_file",), f"cannot read {file}: {exc.strerror or exc}")
                continue
            if not secret:
                source.error(path + ("secret_file",), f"{file} is empty")
                continue
        hooks.append(WebhookSettings(secret=secret, **fields))
    return tuple(hooks)
