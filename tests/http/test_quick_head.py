"""The quick upgrade-head reader against h11: whatever it reads, h11 reads
the same way (method, target, headers), and whatever h11 would refuse or
treat specially it leaves to h11 (None)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.http.quick_head import read_get_head

UPGRADE = (b"GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Authorization: Bearer a.b.c\r\nSec-WebSocket-Protocol: realtime.v1, bearer.x\r\n\r\n")


def h11_reading(data: bytes) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What h11 makes of ``data`` as a whole GET request with no body, or None."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    conn.receive_data(data)
    try:
        request = conn.next_event()
        end = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(request, h11.Request) or not isinstance(end, h11.EndOfMessage):
        return None
    if request.method != b"GET" or conn.trailing_data[0]:
        return None
    headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers)
    return request.target.decode("latin-1"), headers


def test_a_typical_upgrade_reads_as_h11_reads_it() -> None:
    quick = read_get_head(UPGRADE)
    assert quick is not None and quick == h11_reading(UPGRADE)
    target, headers = quick
    assert target == "/ws?x=1" and ("authorization", "Bearer a.b.c") in headers
    spaced = UPGRADE.replace(b"Upgrade: websocket", b"UPGRADE:\t  websocket \t")
    assert read_get_head(spaced) == h11_reading(spaced)
    assert ("upgrade", "websocket") in read_get_head(spaced)[1]  # type: ignore[index]


@pytest.mark.parametrize("data", [
    UPGRADE.replace(b"GET ", b"POST "),  # another method
    UPGRADE.replace(b"GET ", b"get "),
    UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"),  # another version
    UPGRADE.replace(b"/ws?x=1", b"http://host/ws"),  # not origin-form
    UPGRADE.replace(b"/ws?x=1", b"/w\xc3\xa9"),  # not ASCII
    UPGRADE.replace(b"Host: 127.0.0.1:8080\r\n", b""),  # no Host
    UPGRADE.replace(b"Host: 127.0.0.1:8080\r\n", b"Host: a\r\nHost: b\r\n"),  # two
    UPGRADE.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\n  folded\r\n"),  # obs-fold
    UPGRADE.replace(b"Upgrade: websocket\r\n", b"Upgrade : websocket\r\n"),  # space before the colon
    UPGRADE.replace(b"Upgrade: websocket\r\n", b"Upgrade: web\x01socket\r\n"),  # a control byte
    UPGRADE.replace(b"Upgrade: websocket\r\n", b"Upgrade: web\xffsocket\r\n"),  # obs-text
    UPGRADE.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\nX: y\r\n"),  # a bare LF
    UPGRADE.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\rX: y\r\n"),  # a bare CR
    UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),  # a body
    UPGRADE.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    UPGRADE + b"\x81\x80abcd",  # bytes after the head (a frame sent early)
    UPGRADE + UPGRADE,  # pipelined
    UPGRADE[:-2],  # incomplete
    UPGRADE[:40],
    b"",
    b"\r\n" + UPGRADE,  # a leading empty line
])
def test_what_it_leaves_to_h11(data: bytes) -> None:
    assert read_get_head(data) is None


TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.one_of(
    st.sampled_from(["Host", "host", "Upgrade", "Connection", "Authorization", "Content-Length",
                     "Transfer-Encoding", "Sec-WebSocket-Key", "X-Forwarded-Proto", "Origin"]),
    st.text(TOKEN_CHARS, min_size=1, max_size=12),
    st.text(min_size=0, max_size=6),
)
values = st.one_of(st.text(min_size=0, max_size=20), st.text(" \tabc,=", min_size=0, max_size=8),
                   st.sampled_from(["websocket", "Upgrade", "13", "0", "chunked", "  x  "]))
lines = st.tuples(names, st.sampled_from([":", ": ", " :", ":\t", ""]), values)
eols = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r", "\r\n "])


def _latin1(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@given(
    method=st.sampled_from(["GET", "GET", "POST", "get", "HEAD", "G ET"]),
    target=st.one_of(st.sampled_from(["/ws", "/ws?a=b", "*", "http://h/ws", "/"]), st.text(max_size=10)),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.1 "]),
    headers=st.lists(st.tuples(lines, eols), max_size=6),
    host=st.integers(0, 2),
    tail=st.sampled_from(["", "", "", "x", "\r\n", "GET / HTTP/1.1\r\n\r\n"]),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_heads_read_as_h11_reads_them(method: str, target: str, version: str,
                                                 headers: list, host: int, tail: str) -> None:
    text = f"{method} {target} {version}\r\n" + "Host: h\r\n" * host
    text += "".join(f"{name}{colon}{value}{eol}" for (name, colon, value), eol in headers)
    data = _latin1(text + "\r\n" + tail)
    quick = read_get_head(data)
    if quick is not None:
        assert quick == h11_reading(data), data


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_mutated_upgrades_read_as_h11_reads_them(data: st.DataObject) -> None:
    raw = bytearray(UPGRADE)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from([0, 9, 10, 13, 32, 58, 0x7F, 0x80, 0xFF, ord("a"), ord("/")]))
        if how == "replace":
            raw[where] = byte
        elif how == "insert":
            raw.insert(where, byte)
        else:
            del raw[where]
    mutated = bytes(raw)
    quick = read_get_head(mutated)
    if quick is not None:
        assert quick == h11_reading(mutated), mutated
