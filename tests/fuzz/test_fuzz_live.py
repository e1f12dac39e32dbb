"""hypothesis against a live server: HTTP requests, WebSocket upgrades,
WebSocket frames and JSON messages, generated and mutated, sent whole or
byte by byte (h11's ``fuzz/afl-server.py`` idea, over real sockets).

Every example must end in an HTTP response, a WebSocket close code or a
plain close, within the I/O timeout; the server must log no error and
survive; the sentinel client's stream must stay intact (``live.check()``
after every example).  Example counts are bounded so the module stays
well under a minute on a 2-core CI box.
"""

from __future__ import annotations

import json
import re
import socket
import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import (
    ECHO,
    LiveServer,
    close_frame,
    mask_frame,
    open_ws,
    parse_server_frames,
    read_until_close,
    send_all,
    upgrade_request,
)

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)

STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ")
HTTP_STATUSES = {101, 200, 204, 302, 303, 400, 401, 403, 404, 405, 408, 413, 415, 426, 429, 431, 501, 505}

PATHS = ["/", "/healthz", "/metrics", "/ws", ECHO, "/oauth2/token", "/oauth2/authorize",
         "/oauth2/revoke", "/oauth2/introspect", "/oauth2/userinfo", "/oauth2/jwks",
         "/.well-known/oauth-authorization-server", "/api/publish", "/api/presence", "/nope"]
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "G\x00T", "get"]
HEADER_NAMES = ["Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection", "Upgrade",
                "Authorization", "Cookie", "Expect", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                "Sec-WebSocket-Protocol", "Origin", "X-Forwarded-For", "Accept"]
HEADER_VALUES = ["", "0", "-1", "99999999999999999999", "chunked", "gzip, chunked", "keep-alive", "close",
                 "Upgrade", "websocket", "Bearer", "Bearer x.y.z", "Basic Og==", "Basic !!!", "100-continue",
                 "application/json", "application/x-www-form-urlencoded", "13", "8", "dGhlIHNhbXBsZSBub25jZQ==",
                 "realtime.v1, bearer.abc", "rt_session=a.b; rt_csrf=x", "\xff\xfe", "a\tb"]

token_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40)
header_value = st.one_of(st.sampled_from(HEADER_VALUES), token_text)
target = st.one_of(
    st.sampled_from(PATHS),
    st.builds(lambda p, q: p + "?" + q, st.sampled_from(PATHS), token_text),
    token_text.map(lambda t: "/" + t),
    st.sampled_from(["*", "http://x/healthz", "//", "/%00", "/..%2f..", "/healthz#frag"]),
)


@st.composite
def http_request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(METHODS)) if draw(st.integers(0, 4)) else draw(token_text)
    version = "HTTP/1.1" if draw(st.integers(0, 3)) else draw(st.sampled_from(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""]))
    line = f"{method} {draw(target)} {version}".encode("latin-1")
    name = st.sampled_from(HEADER_NAMES) | st.sampled_from(HEADER_NAMES) | token_text
    headers = draw(st.lists(st.tuples(name, header_value), max_size=8))
    if draw(st.integers(0, 3)):
        headers.insert(0, ("Host", "localhost"))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=200),
                          st.sampled_from([b"grant_type=client_credentials", b'{"channel":"chat:a","data":1}',
                                           b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n"])))
    if draw(st.booleans()):
        headers.append(("Content-Length", str(len(body) + draw(st.integers(-3, 3)))))
    eol = b"\r\n" if draw(st.integers(0, 5)) else draw(st.sampled_from([b"\n", b"\r"]))
    head = line + eol + b"".join(n.encode("latin-1") + b": " + v.encode("latin-1") + eol for n, v in headers)
    return head + eol + body


VALID = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 29\r\n\r\ngrant_type=client_credentials",
    b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1d\r\n{\"channel\":\"chat:a\",\"data\":1}\r\n0\r\n\r\n",
    b"GET /oauth2/authorize?response_type=code&client_id=chat-app&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb"
    b"&code_challenge=abc&code_challenge_method=S256&state=s HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "crlf"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 40))]
        elif kind == "crlf":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n", b"\x00", b":"]))
    return bytes(data)


def http_exchange(live: LiveServer, data: bytes, bytewise: bool) -> bytes:
    sock = live.connect()
    try:
        send_all(sock, data, bytewise)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_until_close(sock)
    finally:
        sock.close()


def assert_http_answer(out: bytes) -> None:
    """A plain close, or one or more well-formed responses (never a 500)."""
    if not out:
        return
    match = STATUS_LINE.match(out)
    assert match, f"not an HTTP response: {out[:200]!r}"
    event(f"first status {match.group(1).decode()}")
    for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", out):
        assert int(status) in HTTP_STATUSES, out[:400]


@fuzz(600)
@given(data=st.one_of(http_request(), mutated(VALID), st.binary(max_size=300)), bytewise=st.booleans())
def test_http_requests(live: LiveServer, data: bytes, bytewise: bool) -> None:
    assert_http_answer(http_exchange(live, data, bytewise))
    live.check()


# -- the upgrade --------------------------------------------------------------

UPGRADE_HEADERS = {
    "Upgrade": ["websocket", "WebSocket", "h2c", "", "websocket, x"],
    "Connection": ["Upgrade", "upgrade, keep-alive", "keep-alive", "", "close"],
    "Sec-WebSocket-Version": ["13", "8", "", "13, 8", "x"],
    "Sec-WebSocket-Key": ["dGhlIHNhbXBsZSBub25jZQ==", "", "short", "dGhlIHNhbXBsZSBub25jZQ", "!!!!"],
    "Sec-WebSocket-Protocol": ["realtime.v1", "bearer.", "x, y", ""],
    "Origin": ["https://localhost", "null", ""],
    "Sec-WebSocket-Extensions": ["permessage-deflate", "x; y=1"],
}


@st.composite
def upgrade(draw: st.DrawFn, token: str) -> tuple[bytes, bool]:
    """Handshake headers, each kept, dropped, replaced or repeated."""
    path = draw(st.sampled_from(["/ws", ECHO, "/ws?x=1", "/wsx"]))
    method = draw(st.sampled_from(["GET"] * 6 + ["POST", "HEAD", "PUT"]))
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    for name, values in UPGRADE_HEADERS.items():
        how = draw(st.sampled_from(["keep", "keep", "drop", "other", "twice"]))
        first = values[0] if name != "Sec-WebSocket-Protocol" else None
        if how == "keep" and first is not None:
            lines.append(f"{name}: {first}")
        elif how == "other":
            lines.append(f"{name}: {draw(st.one_of(st.sampled_from(values), token_text))}")
        elif how == "twice" and first is not None:
            lines += [f"{name}: {first}", f"{name}: {draw(st.sampled_from(values))}"]
    auth = draw(st.sampled_from(["good", "good", "none", "mangled", "basic", "subprotocol"]))
    if auth == "good":
        lines.append(f"Authorization: Bearer {token}")
    elif auth == "mangled":
        i = draw(st.integers(0, len(token) - 1))
        lines.append(f"Authorization: Bearer {token[:i]}{draw(token_text)}{token[i + 1:]}")
    elif auth == "basic":
        lines.append("Authorization: Basic YTpi")
    elif auth == "subprotocol":
        lines.append(f"Sec-WebSocket-Protocol: realtime.v1, bearer.{token}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw, draw(st.booleans())


_UPGRADE_TOKEN: dict[str, str] = {}


def _token(live: LiveServer) -> str:
    if "t" not in _UPGRADE_TOKEN:
        _UPGRADE_TOKEN["t"] = live.mint(ttl=3600)
    return _UPGRADE_TOKEN["t"]


@fuzz(300)
@given(data=st.data())
def test_upgrade_headers(live: LiveServer, data: st.DataObject) -> None:
    raw, bytewise = data.draw(upgrade(_token(live)))
    sock = live.connect()
    try:
        send_all(sock, raw, bytewise)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk
        match = STATUS_LINE.match(head)
        assert match, head[:200]
        status = int(match.group(1))
        event(f"status {status}")
        assert status in {101, 400, 401, 403, 404, 405, 426, 431}, head[:400]
        if status == 101:
            # A real session: a close frame gets a close frame back.
            sock.sendall(close_frame(1000))
            sock.shutdown(socket.SHUT_WR)
            rest = head.partition(b"\r\n\r\n")[2] + read_until_close(sock)
            frames = parse_server_frames(rest)
            assert frames and frames[-1][0] == 0x8, frames
            assert struct.unpack("!H", frames[-1][1][:2])[0] == 1000
    finally:
        sock.close()
    live.check()


# -- WebSocket frames ---------------------------------------------------------

SERVER_CLOSE_CODES = {1000, 1002, 1003, 1007, 1009, 4008}


@st.composite
def client_frame(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """One masked (mostly) client frame; returns it and the close code it carries."""
    opcode = draw(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB, 0xF, 0x1, 0x2]))
    payload = draw(st.one_of(
        st.binary(max_size=140),
        st.text(max_size=60).map(str.encode),
        st.sampled_from([b'{"type":"ping","id":1}', b'{"type":"subscribe","channel":"chat:a"}', b"\xc3\x28",
                         b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"{", b"x" * 5000]),
    ))
    code = None
    if opcode == 0x8 and draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1002, 1005, 1006, 999, 1016, 2999, 3000, 4999, 5000, 65535]))
        payload = struct.pack("!H", code) + payload[:draw(st.integers(0, 123))]
    frame = mask_frame(opcode, payload, fin=draw(st.booleans()) or opcode >= 0x8 and draw(st.booleans()),
                       rsv=draw(st.sampled_from([0, 0, 0, 1, 2, 4, 7])), mask=draw(st.binary(min_size=4, max_size=4)),
                       masked=draw(st.sampled_from([True] * 9 + [False])), wide=draw(st.sampled_from([0, 0, 0, 1, 2])))
    return frame, code


@st.composite
def frame_stream(draw: st.DrawFn) -> tuple[bytes, set[int]]:
    frames = draw(st.lists(client_frame(), min_size=1, max_size=4))
    data = bytearray(b"".join(f for f, _ in frames))
    if draw(st.integers(0, 3)) == 0 and data:  # sometimes corrupt a byte on top
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    codes = {c for _, c in frames if c is not None}
    return bytes(data), codes


@fuzz(400)
@given(stream=frame_stream(), path=st.sampled_from(["/ws", ECHO]), bytewise=st.booleans())
def test_websocket_frames(live: LiveServer, stream: tuple[bytes, set[int]], path: str, bytewise: bool) -> None:
    data, peer_codes = stream
    sock, rest = open_ws(live, path, _token(live))
    try:
        send_all(sock, data + close_frame(1000), bytewise and len(data) < 400)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = rest + read_until_close(sock)
    finally:
        sock.close()
    frames = parse_server_frames(out)
    for opcode, payload in frames:
        assert opcode in (0x1, 0x2, 0x8, 0x9, 0xA), opcode
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert len(closes) <= 1
    if not closes:
        event("no close frame (dropped)")
    if closes:
        code = struct.unpack("!H", closes[0][:2])[0]
        event(f"close {code}")
        assert code in SERVER_CLOSE_CODES | peer_codes, (code, closes[0])
        assert frames[-1][0] == 0x8, "nothing may follow a close frame"
    live.check()


# -- JSON messages to a live session ------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), c, max_size=4)),
                          max_leaves=12)
message_obj = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["subscribe", "unsubscribe", "publish", "refresh", "ping", "presence",
                                        "nope", ""]), json_value)},
    optional={"id": json_value, "channel": st.one_of(st.sampled_from(["chat:a", "news:x", "user:alice",
                                                                      "chat:" + "x" * 300, "", "*"]), json_value),
              "data": json_value, "since": st.one_of(st.integers(-2, 5), json_value), "token": json_value},
)
client_text = st.one_of(message_obj.map(json.dumps), st.text(max_size=80),
                        st.sampled_from(['{"type":"ping","id":1e999}', "[]", "null", '{"id":' + "[" * 5000 + "]" * 5000 + "}",
                                         '{"type":"ping","id":' + "9" * 5000 + "}", "NaN", '{"a":1,"a":2}']))

KNOWN_TYPES = {"welcome", "ack", "error", "pong", "message", "refreshed", "presence", "join", "leave",
               "token_expiring"}


@fuzz(300)
@given(messages=st.lists(st.one_of(client_text, st.binary(max_size=20)), min_size=1, max_size=5))
def test_session_messages(live: LiveServer, messages: list[str | bytes]) -> None:
    sock, rest = open_ws(live, "/ws", _token(live))
    try:
        data = b"".join(mask_frame(0x2, m) if isinstance(m, bytes) else mask_frame(0x1, m.encode("utf-8", "surrogatepass"))
                        for m in messages)
        send_all(sock, data + mask_frame(0x1, b'{"type":"ping","id":"end"}') + close_frame(1000))
        sock.shutdown(socket.SHUT_WR)
        out = rest + read_until_close(sock)
    finally:
        sock.close()
    frames = parse_server_frames(out)
    assert frames and frames[-1][0] == 0x8, frames[-3:]
    for opcode, payload in frames[:-1]:
        assert opcode == 0x1, (opcode, payload)
        reply = json.loads(payload)
        assert reply.get("type") in KNOWN_TYPES, reply
    code = struct.unpack("!H", frames[-1][1][:2])[0]
    event(f"close {code}")
    assert code in {1000, 1003, 1007, 1009, 4008}, code
    if code == 1000:  # nothing closed the session early: the ping was answered
        assert any(json.loads(p) == {"type": "pong", "id": "end"} for _, p in frames[:-1])
    live.check()


# -- well-framed requests with fuzzed parameters, to reach the handlers --------

FORM_KEYS = ["grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret", "refresh_token",
             "scope", "username", "password", "token", "token_type_hint", "response_type", "state",
             "code_challenge", "code_challenge_method", "csrf_token", "decision", "prompt", "nonce"]
FORM_VALUES = ["authorization_code", "refresh_token", "client_credentials", "password", "chat-app",
               "http://127.0.0.1/cb", "S256", "plain", "code", "chat:read chat:write", "allow", "deny", "none",
               "alice", "", "%", "a" * 3000]
form_pairs = st.lists(st.tuples(st.one_of(st.sampled_from(FORM_KEYS), token_text),
                                st.one_of(st.sampled_from(FORM_VALUES), token_text)), max_size=10)


@st.composite
def endpoint_request(draw: st.DrawFn, token: str) -> bytes:
    from urllib.parse import urlencode

    path = draw(st.sampled_from(["/oauth2/token", "/oauth2/authorize", "/oauth2/revoke", "/oauth2/introspect",
                                 "/oauth2/userinfo", "/api/publish", "/api/presence", "/metrics", "/healthz",
                                 "/oauth2/jwks", "/.well-known/oauth-authorization-server"]))
    method = draw(st.sampled_from(["GET", "POST", "POST", "HEAD"]))
    query = urlencode(draw(form_pairs))
    kind = draw(st.sampled_from(["form", "json", "raw"]))
    if kind == "form":
        body, ctype = urlencode(draw(form_pairs)).encode(), "application/x-www-form-urlencoded"
    elif kind == "json":
        obj = draw(st.one_of(json_value, st.fixed_dictionaries({"channel": st.one_of(st.sampled_from(
            ["chat:a", "user:alice", "news:x", ""]), json_value), "data": json_value})))
        body, ctype = json.dumps(obj).encode(), draw(st.sampled_from(["application/json", "text/plain"]))
    else:
        body, ctype = draw(st.binary(max_size=100)), draw(st.sampled_from(["application/json", "x/y", ""]))
    headers = [("Host", "localhost"), ("Content-Type", ctype), ("Content-Length", str(len(body)))]
    auth = draw(st.sampled_from(["none", "bearer", "basic", "junk"]))
    if auth == "bearer":
        headers.append(("Authorization", f"Bearer {token}"))
    elif auth == "basic":
        headers.append(("Authorization", "Basic " + draw(st.sampled_from(["Y2hhdC1hcHA6", "Og==", "!!", "YTpi"]))))
    elif auth == "junk":
        headers.append(("Authorization", draw(token_text)))
    if draw(st.booleans()):
        headers.append(("Cookie", draw(st.sampled_from(["rt_csrf=" + "x" * 20, "rt_session=a.b", "=;;=", ""]))))
    head = f"{method} {path}{'?' + query if query else ''} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


@fuzz(400)
@given(data=st.data())
def test_endpoint_parameters(live: LiveServer, data: st.DataObject) -> None:
    raw = data.draw(endpoint_request(_token(live)))
    out = http_exchange(live, raw, bytewise=False)
    assert out, "no answer to a well-framed request"
    assert_http_answer(out)
    live.check()
