"""The `websockets` peer for tools/bench: the same contract as realtime's /ws,
on asyncio (uvloop when importable), fan-out with ``websockets.broadcast()``.

    python tools/bench/peer_websockets.py --pubkey PUB.pem --issuer URL \
        [--http 127.0.0.1:0] [--https 127.0.0.1:0 --cert PEM] [--no-uvloop]

What it does per connection, mirroring realtime (SPEC §4):

- handshake: ``Authorization: Bearer <JWT>`` checked in ``process_request``
  before the upgrade: pyjwt RS256 verify with the same public key, header
  ``typ`` must be ``at+jwt``, ``iss``/``aud`` must equal the public URL,
  ``exp`` enforced; else HTTP 401 with ``WWW-Authenticate: Bearer``;
- after the upgrade: ``{"type":"welcome","sub":...,"expires_at":...}``;
- ``subscribe`` (scope ``chat:read``) → ``ack``; ``publish`` (scope
  ``chat:write``) → one frame encoded once, ``broadcast()`` to the channel's
  subscribers, then ``ack`` with ``seq`` when the publish carried an ``id``.

No compression, no server pings (realtime runs with ``ping_interval = 0``).
Prints ``listening http=HOST:PORT https=HOST:PORT`` on stderr, as realtime does.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import signal
import ssl
import sys

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from websockets.asyncio.server import broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class Peer:
    def __init__(self, public_key: str, issuer: str) -> None:
        self.public_key = load_pem_public_key(public_key.encode())
        self.issuer = issuer
        self.channels: dict[str, set] = {}
        self.seqs: dict[str, int] = {}

    def _unauthorized(self, why: str) -> Response:
        body = json.dumps({"error": "invalid_token", "error_description": why}).encode()
        headers = Headers([("WWW-Authenticate", 'Bearer error="invalid_token"'),
                           ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(http.HTTPStatus.UNAUTHORIZED.value, "Unauthorized", headers, body)

    def process_request(self, connection, request):  # noqa: ANN001 - websockets hook
        if request.path.split("?", 1)[0] != "/ws":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._unauthorized("missing bearer token")
        token = auth[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") not in ("at+jwt", "application/at+jwt"):
                raise jwt.InvalidTokenError("wrong typ")
            claims = jwt.decode(
                token, self.public_key, algorithms=["RS256"], issuer=self.issuer, audience=self.issuer,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"]}, leeway=5,
            )
        except jwt.InvalidTokenError as exc:
            return self._unauthorized(str(exc))
        connection.claims = claims
        connection.scopes = frozenset(claims["scope"].split())
        return None

    async def handler(self, ws) -> None:  # noqa: ANN001
        claims = ws.claims
        scopes = ws.scopes
        mine: set[str] = set()
        await ws.send(ENCODE({"type": "welcome", "sub": claims["sub"], "expires_at": claims["exp"]}))
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    kind = msg["type"]
                except (ValueError, KeyError, TypeError):
                    await ws.send(ENCODE({"type": "error", "code": "bad_message", "message": "invalid"}))
                    continue
                mid = msg.get("id")
                if kind == "publish":
                    channel = msg.get("channel")
                    if "chat:write" not in scopes or not isinstance(channel, str) or not channel.startswith("chat:"):
                        await ws.send(ENCODE({"type": "error", "id": mid, "code": "forbidden", "message": "no"}))
                        continue
                    seq = self.seqs.get(channel, 0) + 1
                    self.seqs[channel] = seq
                    frame = ENCODE({"type": "message", "channel": channel, "seq": seq, "from": claims["sub"],
                                    "data": msg.get("data")})
                    subs = self.channels.get(channel)
                    if subs:
                        broadcast(subs, frame)
                    if mid is not None:
                        await ws.send(ENCODE({"type": "ack", "id": mid, "seq": seq}))
                elif kind == "subscribe":
                    channel = msg.get("channel")
                    if "chat:read" not in scopes or not isinstance(channel, str) or not channel.startswith("chat:"):
                        await ws.send(ENCODE({"type": "error", "id": mid, "code": "forbidden", "message": "no"}))
                        continue
                    self.channels.setdefault(channel, set()).add(ws)
                    mine.add(channel)
                    await ws.send(ENCODE({"type": "ack", "id": mid}))
                elif kind == "unsubscribe":
                    channel = msg.get("channel")
                    self.channels.get(channel, set()).discard(ws)
                    mine.discard(channel)
                    await ws.send(ENCODE({"type": "ack", "id": mid}))
                elif kind == "ping":
                    await ws.send(ENCODE({"type": "pong"}))
                else:
                    await ws.send(ENCODE({"type": "error", "id": mid, "code": "unknown_type", "message": kind}))
        finally:
            for channel in mine:
                self.channels.get(channel, set()).discard(ws)


def _hostport(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main(args: argparse.Namespace) -> None:
    peer = Peer(open(args.pubkey).read(), args.issuer.rstrip("/"))
    common = dict(process_request=peer.process_request, compression=None, ping_interval=None,
                  max_size=1 << 20, server_header=None)
    host, port = _hostport(args.http)
    plain = await serve(peer.handler, host, port, **common)
    bound = {"http": "%s:%d" % plain.sockets[0].getsockname()[:2]}
    servers = [plain]
    if args.https:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key or args.cert)
        host, port = _hostport(args.https)
        tls = await serve(peer.handler, host, port, ssl=ctx, **common)
        bound["https"] = "%s:%d" % tls.sockets[0].getsockname()[:2]
        servers.append(tls)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"peer websockets loop={loop_name} listening " + " ".join(f"{k}={v}" for k, v in bound.items()),
          file=sys.stderr, flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop
    for server in servers:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pubkey", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--http", default="127.0.0.1:0")
    parser.add_argument("--https")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--no-uvloop", action="store_true")
    ns = parser.parse_args()
    uvloop = None
    if not ns.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
    if uvloop is not None:
        uvloop.run(main(ns))
    else:
        asyncio.run(main(ns))
