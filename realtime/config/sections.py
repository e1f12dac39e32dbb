"""The ``realtime.toml`` tables: which keys each section holds, the check
of each key, and the reading of a section into its settings class.

Apart from :mod:`realtime.config.load` because this is what the file may
say, table by table, while ``load`` is how the file and the files it
names are read and put together.  ``[[webhook]]`` tables have their own
module, :mod:`realtime.config.webhooks`.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path
from typing import Any

from realtime.config.fields import (
    Converter,
    Source,
    address,
    array,
    boolean,
    choice,
    duration,
    file_path,
    integer,
    nonempty,
    rate,
    read_table,
    scope,
    string,
    type_name,
    url_path,
)
from realtime.config.redact import redact_url
from realtime.config.settings import ChannelRule
from realtime.config.users import password_length

SIGNING_ALGS = ("RS256", "ES256", "EdDSA")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def public_url(value: Any) -> str:
    """The issuer (RFC 8414 §2: "https" scheme, no query or fragment); http is
    allowed for local development behind a proxy."""
    parts = urllib.parse.urlsplit(string(value))
    shown = redact_url(value)
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{shown!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not value.startswith(parts.scheme + "://"):
        raise ValueError(f"must be an absolute http(s) URL like https://example.com, got {shown!r}")
    if "?" in value or "#" in value:
        raise ValueError(f"must not have a query or fragment, got {shown!r}")
    if parts.username is not None or parts.password is not None or any(c.isspace() for c in value):
        raise ValueError(f"must not contain spaces, a user name or a password, got {shown!r}")
    return value


def origin(value: Any) -> str:
    """An Origin header value (RFC 6454): ``scheme://host[:port]``, no path."""
    parts = urllib.parse.urlsplit(string(value))
    if not parts.scheme or not parts.netloc or value != f"{parts.scheme}://{parts.netloc}":
        raise ValueError(f"{value!r} is not an origin like https://example.com (no path or slash)")
    return value


def broker_url(value: Any) -> str:
    parts = urllib.parse.urlsplit(string(value))
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError(f"must be a redis://HOST:PORT/DB URL, got {redact_url(value)!r}")
    return value


def store_url(value: Any) -> str:
    """``[store] url``: a libpq URL (``postgresql://USER:PASSWORD@HOST:PORT/DB``,
    or ``postgresql:///DB?host=/run/postgresql`` for a socket)."""
    text = string(value)
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port
    except ValueError:
        raise ValueError(f"must be a postgresql://USER@HOST:PORT/DB URL, got {redact_url(text)!r}") from None
    if (parts.scheme not in ("postgresql", "postgres") or not text.startswith(parts.scheme + "://")
            or not (parts.netloc or parts.path.strip("/")) or any(c.isspace() for c in text)):
        raise ValueError(f"must be a postgresql://USER@HOST:PORT/DB URL, got {redact_url(text)!r}")
    return text


MAX_REUSE_GRACE = 300.0


def reuse_grace(value: Any) -> float:
    """``[oauth] refresh_reuse_grace``: a replay inside it passes as a retry, so it stays short."""
    seconds = duration()(value)
    if seconds > MAX_REUSE_GRACE:
        raise ValueError("must be at most 5m: a replayed refresh token inside the grace is not detected")
    return seconds


def network(value: Any) -> str:
    """A CIDR block like ``10.0.0.0/8`` or ``::1/128`` (an address alone is a
    block of one), normalised (``192.0.2.7`` becomes ``192.0.2.7/32``)."""
    try:
        return str(ipaddress.ip_network(string(value)))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block like 10.0.0.0/8 or ::1/128 ({exc})") from None


def server_fields(base: Path) -> dict[str, Converter]:
    return {
        "http": address,
        "https": address,
        "tls_cert": file_path(base),
        "tls_key": file_path(base),
        "state_dir": file_path(base),
        "public_url": public_url,
        "shutdown_grace": duration(),
        "watch": boolean,
        "max_header_bytes": integer(1024),
        "max_body_bytes": integer(1),
        "header_timeout": duration(positive=True),
        "keepalive_timeout": duration(positive=True),
        "handshake_timeout": duration(positive=True),
        "max_connections": integer(1),
        "max_connections_per_ip": integer(1),
        "log_level": choice(*LOG_LEVELS),
        "log_format": choice("text", "json"),
        # HTTPS
        "hsts_max_age": duration(),
        "tls_termination_from": array(network),
    }


def oauth_fields(base: Path) -> dict[str, Converter]:
    return {
        "apps": file_path(base),
        "users": file_path(base),
        "providers": file_path(base),
        "access_token_ttl": duration(positive=True),
        "refresh_token_ttl": duration(positive=True),
        "code_ttl": duration(positive=True),
        "signing_alg": choice(*SIGNING_ALGS),
        "leeway": duration(),
        "audience": nonempty,
        "login_rate": rate,
        # refresh-token families
        "refresh_reuse_grace": reuse_grace,
        "refresh_reuse_count": integer(1, 100),
        "refresh_family_ttl": duration(positive=True),
        "min_password_length": password_length,
        # brute force and unauthenticated argon2 work
        "login_user_rate": rate,
        "client_auth_rate": rate,
        "hash_queue": integer(0),
        # the browser login session's lifetime.
        "session_ttl": duration(positive=True),
        # Device grant (RFC 8628 §5.1): wrong user codes per address.
        "user_code_rate": rate,
    }


WEBSOCKET_FIELDS: dict[str, Converter] = {
    "path": url_path,
    "expiry_warning": duration(),
    "token_in_query": boolean,
    "max_message_bytes": integer(1),
    "ping_interval": duration(),  # 0: no server pings
    "pong_timeout": duration(positive=True),
    "echo_path": url_path,
    "max_backlog_bytes": integer(1),
    "allowed_origins": array(origin),
    "publish_rate": rate,
    "max_subscriptions": integer(1),
    "max_channel_name": integer(1),
    "max_presence_members": integer(1),
    "message_rate": rate,
    "join_leave_debounce": duration(),
    "max_history_bytes": integer(0),
    "max_idle_channels": integer(0),
}
CHANNEL_FIELDS: dict[str, Converter] = {
    "pattern": nonempty,
    "subscribe_scope": scope,
    "publish_scope": scope,
    "history": integer(0, 1_000_000),
    "presence": boolean,
    "join_leave": boolean,
    "history_bytes": integer(0),
}
BROKER_FIELDS: dict[str, Converter] = {"url": broker_url, "node_ttl": duration(positive=True)}


def store_fields(base: Path) -> dict[str, Converter]:
    return {"url": store_url, "key_file": file_path(base),
            # The pool and the revocation poll of a node on PostgreSQL.
            "pool_size": integer(1, 100), "revocation_poll": duration()}

DEMO_FIELDS: dict[str, Converter] = {"enabled": boolean}
API_FIELDS: dict[str, Converter] = {
    "publish_rate": rate,
    # How long an /api/publish idempotency_key is remembered.
    "idempotency_window": duration(positive=True),
}
METRICS_FIELDS: dict[str, Converter] = {"scope": scope}
TOP_LEVEL = ("server", "oauth", "websocket", "channel", "broker", "store", "demo", "api", "metrics",
             "webhook", "admin")
# [admin]: the console at /admin/ (on or off; the app it signs in as).
ADMIN_FIELDS: dict[str, Converter] = {"enabled": boolean, "client_id": nonempty}


def read_section(source: Source, data: dict[str, Any], name: str, fields: dict[str, Converter], cls: type) -> Any:
    """Table ``[name]`` of ``data`` checked by ``fields`` into ``cls`` (its defaults if absent)."""
    if name not in data:
        return cls()
    got = read_table(source, data[name], (name,), fields)
    return cls(**(got or {}))


def read_channels(source: Source, tables: Any) -> tuple[ChannelRule, ...]:
    """The ``[[channel]]`` rules, in file order; a repeated pattern is an error."""
    if not isinstance(tables, list):
        source.error(("channel",), f"expected [[channel]] tables, got {type_name(tables)}")
        return ()
    rules: list[ChannelRule] = []
    first: dict[str, int | None] = {}
    for n, table in enumerate(tables):
        path = ("channel", n)
        fields = read_table(source, table, path, CHANNEL_FIELDS, required=("pattern",))
        if not fields or "pattern" not in fields:
            continue
        pattern, line = fields["pattern"], source.line(path + ("pattern",))
        if pattern in first:
            source.error(path + ("pattern",), f"duplicate pattern {pattern!r} (lines {first[pattern]} and {line})")
            continue
        first[pattern] = line
        rules.append(ChannelRule(**fields))
    return tuple(rules)

