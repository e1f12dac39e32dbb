"""Command-line overrides (``--http``, ``--https``, ``--state-dir``) and
the embedded default configuration ``serve`` runs on without a file.

Apart from :mod:`realtime.config.load` because they apply to any
snapshot, including one no file describes; overrides are relative to the
working directory, as a shell user expects.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from realtime.config.fields import ConfigError, ConfigIssue, Source
from realtime.config.settings import ChannelRule, ServerSettings, Settings
from realtime.config.units import parse_addr

COMMAND_LINE = Path("<command line>")


def apply_overrides(
    settings: Settings, *, http: str | None = None, https: str | None = None, state_dir: Path | None = None
) -> Settings:
    """``settings`` with command-line overrides applied (also for :func:`default_settings`).

    Raises:
        ConfigError: a bad address, or both listeners off.
    """
    issues: list[ConfigIssue] = []
    settings = overrides_into(settings, issues, http, https, state_dir)
    if issues:
        raise ConfigError(issues)
    return settings


def default_settings(state_dir: Path | None = None) -> Settings:
    """The embedded configuration used when there is no config file at all.

    Loopback listeners, a self-signed certificate generated into the state
    dir (no ``tls_cert``), no apps or users, and one ``chat:*`` channel
    rule so that a fresh server can be tried at once.
    """
    return Settings(
        server=ServerSettings(state_dir=Path("var") if state_dir is None else Path(state_dir)),
        channels=(ChannelRule("chat:*", subscribe_scope="chat:read", publish_scope="chat:write", history=100),),
    )


def overrides_into(
    settings: Settings,
    issues: list[ConfigIssue],
    http: str | None,
    https: str | None,
    state_dir: Path | None,
    source: Source | None = None,
) -> Settings:
    """Apply command-line flags, then check the pair of listeners they leave."""
    server = settings.server
    for flag, value in (("http", http), ("https", https)):
        if value is None:
            continue
        try:
            server = attrs.evolve(server, **{flag: parse_addr(value)})
        except ValueError as exc:
            issues.append(ConfigIssue(COMMAND_LINE, None, f"--{flag}", str(exc)))
    if state_dir is not None:
        server = attrs.evolve(server, state_dir=Path(state_dir))
    source = source or Source(COMMAND_LINE, issues)
    if server.http is None and server.https is None:
        source.error(("server", "https"), "both listeners are off (http and https are empty)")
    elif server.http == server.https and server.http is not None and server.http.port != 0:
        source.error(("server", "https"), f"http and https both use {server.http}")
    return attrs.evolve(settings, server=server)
