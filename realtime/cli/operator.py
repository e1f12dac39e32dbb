"""``realtime connections | disconnect | revoke``: the server API (SPEC §11)
from the command line, through the running server's control socket
(``STATE_DIR/control.sock``, see :mod:`realtime.net.control`), so the
operator mints no token.  With a broker they act on every node."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from realtime.cli import admin
from realtime.config.load import ConfigError, default_settings, load_settings
from realtime.net.control import CONTROL_SOCKET

__all__ = ["add_subcommands"]

TIMEOUT = 15.0  # the server waits at most a few seconds for other nodes


class OperatorError(Exception):
    """A message for the operator; exit 1."""


def _socket_path(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir) / CONTROL_SOCKET
    try:
        settings = load_settings(args.config) if args.config.exists() else default_settings()
    except ConfigError as exc:
        raise OperatorError("\n".join(f"error: {issue}" for issue in exc.issues)) from None
    return settings.server.state_dir / CONTROL_SOCKET


def _call(args: argparse.Namespace, method: str, path: str, **kw: Any) -> dict[str, Any]:
    sock = _socket_path(args)
    if not sock.exists():
        raise OperatorError(f"no running server: no control socket at {sock}")
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=TIMEOUT) as client:
            response = client.request(method, f"http://realtime{path}", **kw)
    except httpx.HTTPError as exc:
        raise OperatorError(f"cannot reach the server through {sock}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise OperatorError(f"the server answered {response.status_code} without JSON") from None
    if response.status_code != 200:
        raise OperatorError(f"{body.get('error', response.status_code)}: {body.get('error_description', '')}")
    if body.get("partial"):
        print("warning: some node did not answer in time; the answer is partial", file=sys.stderr)
    return body


def cmd_connections(args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit)}
    if args.sub:
        params["sub"] = args.sub
    body = _call(args, "GET", "/api/connections", params=params)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    rows = [("ID", "SUB", "CLIENT_ID", "REMOTE", "SINCE", "CHANNELS")]
    for c in body["connections"]:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["connected_at"]))
        rows.append((c["id"], c["sub"], c["client_id"], c["remote"], since, ",".join(c["channels"])))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    if body["truncated"]:
        print(f"(more than {args.limit}; use --limit)", file=sys.stderr)
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"code": args.code}
    if args.sub:
        body["sub"] = args.sub
    if args.client_id:
        body["client_id"] = args.client_id
    answer = _call(args, "POST", "/api/disconnect", json=body)
    print(f"disconnected: {answer['disconnected']}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"sub": args.sub}
    if args.client_id:
        body["client_id"] = args.client_id
    answer = _call(args, "POST", "/api/revoke", json=body)
    print(f"revoked_families: {answer['revoked_families']}")
    print(f"closed: {answer['closed']}")
    return 0


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except OperatorError as exc:
            print(exc if str(exc).startswith("error:") else f"error: {exc}", file=sys.stderr)
            return 1

    return run


def _common(parser: argparse.ArgumentParser) -> None:
    admin.add_config_option(parser)
    parser.add_argument("--state-dir", type=Path, metavar="DIR", help="the server's state dir (default: from -c)")


def add_subcommands(sub: Any) -> None:
    conns = sub.add_parser("connections", help="list live connections (every node)")
    _common(conns)
    conns.add_argument("--sub", help="only this user (sub)")
    conns.add_argument("--limit", type=int, default=100)
    conns.add_argument("--json", action="store_true", help="print the server's JSON answer")
    conns.set_defaults(func=_run(cmd_connections))

    disc = sub.add_parser("disconnect", help="close live connections (every node)")
    _common(disc)
    who = disc.add_mutually_exclusive_group(required=True)
    who.add_argument("--sub")
    who.add_argument("--client-id")
    disc.add_argument("--code", type=int, default=4003, help="close code, 4000-4999 (default 4003)")
    disc.set_defaults(func=_run(cmd_disconnect))

    rev = sub.add_parser("revoke", help="revoke every token of a user issued until now, durably (every node)")
    _common(rev)
    rev.add_argument("--sub", required=True)
    rev.add_argument("--client-id", help="only the tokens of this app")
    rev.set_defaults(func=_run(cmd_revoke))
