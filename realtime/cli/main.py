"""Command line: ``realtime serve | check | reload | app | user | key | store | listen | publish``."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import metadata
from pathlib import Path

from realtime.cli import admin
from realtime.cli import client as client_cli
from realtime.cli import logs
from realtime.cli import operator
from realtime.config.load import ConfigError, apply_overrides, check, default_settings, load_settings
from realtime.net import pidfile


def version() -> str:
    """The installed distribution's version (importlib.metadata)."""
    try:
        return metadata.version("realtime")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime", description=__doc__)
    parser.add_argument("--version", action="version", version=f"realtime {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server")
    admin.add_config_option(serve)
    serve.add_argument("--http", metavar="ADDR", help="HOST:PORT for plain HTTP ('' turns it off)")
    serve.add_argument("--https", metavar="ADDR", help="HOST:PORT for HTTPS ('' turns it off)")
    serve.add_argument("--state-dir", type=Path, metavar="DIR", help="where the server writes its state")
    serve.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate every config file")
    admin.add_config_option(check)
    check.set_defaults(func=cmd_check)

    reload_ = sub.add_parser("reload", help="make the running server reload its files")
    admin.add_config_option(reload_)
    reload_.set_defaults(func=cmd_reload)

    admin.add_subcommands(sub)
    client_cli.add_subcommands(sub)  # listen, publish
    operator.add_subcommands(sub)  # connections, disconnect, revoke (the control socket)
    return parser


def load_for_serve(args: argparse.Namespace):
    """The settings ``serve`` runs on, or the embedded default when there is
    no config file at all (SPEC §1)."""
    if args.config.exists():
        return load_settings(args.config, http=args.http, https=args.https, state_dir=args.state_dir), False
    settings = apply_overrides(default_settings(), http=args.http, https=args.https, state_dir=args.state_dir)
    return settings, True


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the server's import tree (trio, h11,
    # wsproto, prometheus, argon2, the whole app) is only needed by `serve`;
    # `check`, `user add`, `key rotate` ... start without paying for it.
    import trio

    from realtime.net.server import Server

    try:
        settings, embedded = load_for_serve(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    logs.configure(args.log_level or settings.server.log_level, settings.server.log_format)
    log = logging.getLogger("realtime")
    if embedded:
        log.info("no config file at %s: running on the embedded default (loopback, "
                 "self-signed certificate in %s, empty app registry)", args.config, settings.server.state_dir)
    try:
        trio.run(Server(settings).serve)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    except BaseExceptionGroup as group:
        # Ctrl-C before the signal handlers are in place arrives wrapped by
        # the nursery it interrupted: still a clean stop, not a traceback.
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            return 0
        raise
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if not args.config.exists():
        print(f"{args.config}: no such file", file=sys.stderr)
        return 1
    issues = check(args.config)
    for issue in issues:
        print(issue, file=sys.stderr)
    if issues:
        return 1
    from realtime.cli.admin.store import check_store

    problems = check_store(load_settings(args.config))
    for problem in problems:
        print(f"{args.config}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.config}: ok")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        print("not reloading: fix the files first", file=sys.stderr)
        return 1
    pid, outcome = pidfile.send_reload(settings.server.state_dir)
    if outcome == "no_pid_file":
        print(f"no running server (no pid file in {settings.server.state_dir})", file=sys.stderr)
        return 1
    if outcome == "gone":
        print(f"no running server (pid {pid} from the pid file is gone)", file=sys.stderr)
        return 1
    if outcome == "denied":
        print(f"not allowed to signal pid {pid}", file=sys.stderr)
        return 1
    if outcome == "stale":
        print(f"no running server: stale pid file in {settings.server.state_dir} "
              f"(pid {pid} is not a running realtime server; not signalled)", file=sys.stderr)
        return 1
    print(f"reload requested (pid {pid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
