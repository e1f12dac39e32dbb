"""``realtime listen`` and ``realtime publish``: the Python client from a shell.

Credentials come from flags or, better, from the environment (flags show
up in ``ps``); none is ever printed:

==========================  ====================  =================================
flag                        environment           what
==========================  ====================  =================================
``--url``                   REALTIME_URL          server base URL (default http://127.0.0.1:8080)
``--client-id``             REALTIME_CLIENT_ID    the app's client_id
``--client-secret``         REALTIME_CLIENT_SECRET  its secret: client credentials grant
``--refresh-token-file``    REALTIME_REFRESH_TOKEN_FILE  a file holding a refresh token;
                                                  rewritten with each rotated one
(none)                      REALTIME_REFRESH_TOKEN  a refresh token, used once
``--token``                 REALTIME_TOKEN        a ready access token (no renewal)
``--scope``                 REALTIME_SCOPE        scopes to ask for (client credentials, device)
``--cafile``                REALTIME_CAFILE       CA bundle to trust for https
``--device`` (listen)       (none)                sign in as a user (RFC 8628): prints a code
                                                  and a URL to open elsewhere, then waits
==========================  ====================  =================================

``listen`` prints one JSON object per message on stdout
(``{"channel","seq","from","data"}``) and its progress on stderr; it runs
until interrupted, and exits 1 on a fatal error (bad credentials, a refused
channel).  ``publish`` prints the server's ``{"delivered","seq"}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from realtime.config.edit import replace_file

ENV = {
    "url": "REALTIME_URL",
    "client_id": "REALTIME_CLIENT_ID",
    "client_secret": "REALTIME_CLIENT_SECRET",
    "refresh_token_file": "REALTIME_REFRESH_TOKEN_FILE",
    "token": "REALTIME_TOKEN",
    "scope": "REALTIME_SCOPE",
    "cafile": "REALTIME_CAFILE",
}
DEFAULT_URL = "http://127.0.0.1:8080"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"server base URL (${ENV['url']}, default {DEFAULT_URL})")
    parser.add_argument("--ws-path", default="/ws", help="WebSocket path (default /ws)")
    parser.add_argument("--client-id", help=f"app client_id (${ENV['client_id']})")
    parser.add_argument("--client-secret", help=f"app secret; prefer ${ENV['client_secret']}")
    parser.add_argument("--refresh-token-file", type=Path, metavar="PATH",
                        help=f"file with a refresh token, rewritten on rotation (${ENV['refresh_token_file']})")
    parser.add_argument("--token", help=f"a ready access token; prefer ${ENV['token']}")
    parser.add_argument("--scope", help=f"space-separated scopes to ask for (${ENV['scope']})")
    parser.add_argument("--cafile", type=Path, help=f"CA certificates to trust for https (${ENV['cafile']})")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's certificate (tests only)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")


def add_subcommands(sub: Any) -> None:
    listen = sub.add_parser("listen", help="print messages from channels (auto-refresh, reconnect)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    listen.add_argument("channels", nargs="+", metavar="CHANNEL")
    listen.add_argument("--history", action="store_true", help="first print the messages the server keeps")
    listen.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    listen.add_argument("--device", action="store_true",
                        help="sign in as a user on another screen (RFC 8628): print a code and a URL, wait")
    _common(listen)
    listen.set_defaults(func=cmd_listen)

    publish = sub.add_parser("publish", help="publish one JSON value to a channel (POST /api/publish)",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    publish.add_argument("channel", metavar="CHANNEL")
    publish.add_argument("data", metavar="JSON", help="the message data as JSON ('-': read stdin)")
    _common(publish)
    publish.set_defaults(func=cmd_publish)


class UsageError(Exception):
    pass


def _opt(args: argparse.Namespace, name: str) -> str | None:
    value = getattr(args, name, None)
    if value is None:
        value = os.environ.get(ENV[name]) or None
    return str(value) if value is not None else None


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    cafile = _opt(args, "cafile")
    if args.insecure:
        print("warning: --insecure: the server's certificate is not checked", file=sys.stderr)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if cafile:
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use --cafile {cafile}: {exc}") from None
    return None


def write_secret_file(path: Path, value: str) -> None:
    """Replace ``path`` with ``value`` (a rotated refresh token), mode 0600
    (see :func:`realtime.config.edit.replace_file`)."""
    replace_file(path, value + "\n")


def tokens_from(args: argparse.Namespace, url: str, ctx: ssl.SSLContext | None) -> Any:
    """The token provider the flags and environment describe."""
    # Imported here: the client library (trio, httpx, trio-websocket, ~0.15 s) is
    # only needed by listen/publish, not by every other `realtime` command.
    from realtime.client import ClientCredentials, RefreshToken, StaticToken

    token = _opt(args, "token")
    client_id = _opt(args, "client_id")
    secret = _opt(args, "client_secret")
    if getattr(args, "device", False):
        if not client_id:
            raise UsageError("--device needs --client-id (or REALTIME_CLIENT_ID) of an app that lists the "
                             "device_code grant")
        return device_login(url, client_id, secret, _opt(args, "scope"), ctx)
    if token:
        return StaticToken(token)
    rt_file = _opt(args, "refresh_token_file")
    rt_env = os.environ.get("REALTIME_REFRESH_TOKEN") or None
    if rt_file or rt_env:
        if not client_id:
            raise UsageError("a refresh token needs --client-id (or REALTIME_CLIENT_ID)")
        on_rotate = None
        if rt_file:
            path = Path(rt_file)
            try:
                refresh = path.read_text().strip()
            except OSError as exc:
                raise UsageError(f"cannot read the refresh token file {path}: {exc.strerror}") from None
            if not refresh:
                raise UsageError(f"the refresh token file {path} is empty")
            on_rotate = lambda new: write_secret_file(path, new)  # noqa: E731
        else:
            refresh = rt_env or ""
            logging.getLogger("realtime.client").warning(
                "REALTIME_REFRESH_TOKEN is spent on first use and the rotated one is not kept; "
                "use --refresh-token-file to keep it")
        return RefreshToken(url, client_id, refresh, client_secret=secret, on_rotate=on_rotate, ssl_context=ctx)
    if client_id and secret:
        return ClientCredentials(url, client_id, secret, scope=_opt(args, "scope"), ssl_context=ctx)
    raise UsageError(
        "no credentials: set REALTIME_CLIENT_ID and REALTIME_CLIENT_SECRET (client credentials), "
        "or REALTIME_CLIENT_ID and --refresh-token-file, or REALTIME_TOKEN")


def show_device_code(code: Any) -> None:
    """Tell the person where to go and what to type (stderr, even with -q:
    nothing happens until they do)."""
    print(f"To sign in, open {code.verification_uri} and enter the code {code.user_code}", file=sys.stderr)
    if code.verification_uri_complete:
        print(f"(or open {code.verification_uri_complete})", file=sys.stderr)
    print(f"The code expires in {int(code.expires_in) // 60} minutes.", file=sys.stderr, flush=True)


def device_login(url: str, client_id: str, secret: str | None, scope: str | None, ctx: ssl.SSLContext | None) -> Any:
    from realtime.client.device import DeviceLogin, Endpoint

    return DeviceLogin(Endpoint(url, client_id, secret, ctx), show_device_code, scope=scope)


def _connection(args: argparse.Namespace) -> tuple[str, ssl.SSLContext | None, Any]:
    """Server URL, TLS context and token provider from flags and environment."""
    url = _opt(args, "url") or DEFAULT_URL
    ctx = _ssl_context(args)
    return url, ctx, tokens_from(args, url, ctx)


def _setup_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _failed(exc: Exception) -> int:
    """Say why on stderr: exit 1 for what the server or network refused
    (a ``ClientError``), 2 for a value the user gave (a ``ValueError``)."""
    print(f"error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ValueError) else 1


def cmd_listen(args: argparse.Namespace) -> int:
    # Imported here: the client library (trio, httpx, trio-websocket, ~0.15 s) is
    # only needed by listen/publish, not by every other `realtime` command.
    import trio

    _setup_logging(args)
    try:
        url, ctx, tokens = _connection(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return trio.run(_listen, args, url, tokens, ctx)
    except KeyboardInterrupt:
        return 0


async def _listen(args: argparse.Namespace, url: str, tokens: Any, ctx: ssl.SSLContext | None) -> int:
    # Imported here: the client library (trio, httpx, trio-websocket, ~0.15 s) is
    # only needed by listen/publish, not by every other `realtime` command.
    from realtime.client import ClientError, connect

    seen = 0
    try:
        async with connect(url, tokens, args.channels, ws_path=args.ws_path, ssl_context=ctx,
                           history=args.history) as client:
            async for message in client:
                sys.stdout.write(json.dumps(message.to_json()) + "\n")
                sys.stdout.flush()
                seen += 1
                if args.count is not None and seen >= args.count:
                    return 0
    except (ClientError, ValueError) as exc:
        return _failed(exc)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    # Imported here: the client library (trio, httpx, trio-websocket, ~0.15 s) is
    # only needed by listen/publish, not by every other `realtime` command.
    import trio

    _setup_logging(args)
    raw = sys.stdin.read() if args.data == "-" else args.data
    try:
        data = json.loads(raw)
    except ValueError as exc:
        print(f"error: the data is not JSON ({exc}); quote strings, e.g. '\"hello\"' or "
              "'{\"text\": \"hello\"}'", file=sys.stderr)
        return 2
    try:
        url, ctx, tokens = _connection(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return trio.run(_publish, url, tokens, ctx, args.channel, data)


async def _publish(url: str, tokens: Any, ctx: ssl.SSLContext | None, channel: str, data: Any) -> int:
    # Imported here: the client library (trio, httpx, trio-websocket, ~0.15 s) is
    # only needed by listen/publish, not by every other `realtime` command.
    from realtime.client import ClientError, publish_http

    try:
        result = await publish_http(url, tokens, channel, data, ssl_context=ctx)
    except (ClientError, ValueError) as exc:
        return _failed(exc)
    print(json.dumps(result))
    return 0
