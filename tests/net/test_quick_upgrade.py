"""The handshake's quick path through a real server: a fresh connection's
upgrade read without h11 gets exactly the answer the h11 path gives (the
same request sent second on a keep-alive connection is read by h11), the
101 and the welcome go out in one write, and a reused token is still
refused once revoked or cut off."""

from __future__ import annotations

import base64
import time
from collections import Counter
from typing import Any

import pytest
import trio

from realtime.net.transport import Transport
from tests.helpers.server import Running

KEY = base64.b64encode(b"0123456789abcdef").decode()
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def upgrade(token: str | None, *, path: str = "/ws", method: str = "GET", version: str = "HTTP/1.1",
            extra: str = "", key: str | None = KEY, ws_version: str = "13", host: str = "Host: x\r\n",
            eol: str = "\r\n") -> bytes:
    lines = [f"{method} {path} {version}", host.rstrip("\r\n") if host else None, "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Version: {ws_version}",
             f"Sec-WebSocket-Key: {key}" if key is not None else None,
             f"Authorization: Bearer {token}" if token is not None else None]
    text = eol.join(line for line in lines if line) + eol + extra + eol
    return text.encode("latin-1")


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """One response: its head, and its body by Content-Length (none after a 101)."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise AssertionError(f"closed before a response head: {bytes(buffer)!r}")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if head.startswith(b"HTTP/1.1 101"):
        length = 0
    while len(buffer) < end + length:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed inside a response body"
        buffer += chunk
    response = bytes(buffer[:end + length])
    del buffer[:end + length]
    return response


async def answer(running: Running, request: bytes, *, after_healthz: bool) -> tuple[bytes, bool]:
    """The response to ``request`` (first on its connection, or second after
    a /healthz) and whether the server then closed the connection."""
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    async with stream:
        buffer = bytearray()
        with trio.fail_after(10):
            if after_healthz:
                await stream.send_all(HEALTHZ)
                assert (await read_response(stream, buffer)).startswith(b"HTTP/1.1 200")
            await stream.send_all(request)
            response = await read_response(stream, buffer)
            if response.startswith(b"HTTP/1.1 101"):
                return response.split(b"sec-websocket-accept")[0], False
            await stream.send_all(HEALTHZ)  # still served if the connection is kept
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return response, True
                buffer += chunk
                if b"\r\n\r\n" in buffer:
                    return response, False


@pytest.fixture
async def gated(start_server: Any, make_settings: Any) -> Running:
    return await start_server(make_settings(websocket={"allowed_origins": ("https://good.example",)}))


async def test_every_handshake_answer_is_the_same_on_the_quick_path_and_through_h11(gated: Running) -> None:
    good = gated.mint()
    cases = {
        "accepted": (upgrade(good), 101),
        "no token": (upgrade(None), 401),
        "bad token": (upgrade("nope"), 401),
        "unknown user": (upgrade(gated.mint(sub="mallory")), 401),
        "token for no channel": (upgrade(gated.mint(scope="other:thing")), 403),
        "foreign origin": (upgrade(good, extra="Origin: https://evil.example\r\n"), 403),
        "allowed origin": (upgrade(good, extra="Origin: https://good.example\r\n"), 101),
        "version 8": (upgrade(good, ws_version="8"), 426),
        "no key": (upgrade(good, key=None), 400),
        "short key": (upgrade(good, key="c2hvcnQ="), 400),
        "unknown ticket": (upgrade(None, path="/ws?ticket=nope"), 401),
        "POST": (upgrade(good, method="POST"), 405),
        "HTTP/1.0": (upgrade(good, version="HTTP/1.0"), 101),
        "no Host": (upgrade(good, host=""), 400),
        "two Hosts": (upgrade(good, host="Host: a\r\nHost: b\r\n"), 400),
        "folded header": (upgrade(good, extra="X-A: 1\r\n  2\r\n"), 101),
        "control byte": (upgrade(good, extra="X-A: a\x01b\r\n"), 101),
        "obs-text": (upgrade(good, extra="X-A: caf\xe9\r\n"), 101),
        "bare LF": (upgrade(good, eol="\n"), 101),
        "Content-Length: 0": (upgrade(good, extra="Content-Length: 0\r\n"), 101),
        "Content-Length: x": (upgrade(good, extra="Content-Length: x\r\n"), 400),
        "chunked": (upgrade(good, extra="Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n", 101),
        "space before colon": (upgrade(good, extra="X-A : 1\r\n"), 400),
        "no upgrade header": (upgrade(good).replace(b"Upgrade: websocket\r\n", b""), 426),
        "another path": (upgrade(good, path="/elsewhere"), 404),
        "not ASCII target": (upgrade(good, path="/ws?\xe9"), 400),
    }
    for name, (request, status) in cases.items():
        quick = await answer(gated, request, after_healthz=False)
        through_h11 = await answer(gated, request, after_healthz=True)
        assert quick == through_h11, name
        assert quick[0].startswith(b"HTTP/1.1 %d " % status), (name, quick)


async def test_a_refused_quick_upgrade_keeps_the_connection_for_the_next_request(running: Running) -> None:
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    async with stream:
        buffer = bytearray()
        with trio.fail_after(10):
            await stream.send_all(upgrade("nope"))
            refused = await read_response(stream, buffer)
            assert refused.startswith(b"HTTP/1.1 401 ") and b"invalid_token" in refused
            await stream.send_all(HEALTHZ)
            assert (await read_response(stream, buffer)).startswith(b"HTTP/1.1 200 ")
            await stream.send_all(upgrade(running.mint()))  # now through h11
            assert (await read_response(stream, buffer)).startswith(b"HTTP/1.1 101 ")


async def test_the_101_and_the_welcome_go_out_in_one_write(running: Running,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    writes: Counter[int] = Counter()
    original = Transport.write

    def counting_write(self: Transport, data: bytes, *, charged: bool = True) -> None:
        writes[id(self)] += 1
        original(self, data, charged=charged)

    monkeypatch.setattr(Transport, "write", counting_write)
    for first in (b"", HEALTHZ):  # the quick path, and h11's
        stream = await trio.open_tcp_stream(running.http.host, running.http.port)
        async with stream:
            writes.clear()
            buffer = bytearray()
            with trio.fail_after(10):
                if first:
                    await stream.send_all(first)
                    await read_response(stream, buffer)
                    writes.clear()
                await stream.send_all(upgrade(running.mint()))
                head = await read_response(stream, buffer)
                assert head.startswith(b"HTTP/1.1 101 \r\nserver: realtime\r\n")
                while b'{"type":"welcome"' not in buffer:
                    chunk = await stream.receive_some(65536)
                    assert chunk
                    buffer += chunk
            assert sum(writes.values()) == 1, writes


async def test_a_reused_token_is_refused_once_revoked_or_cut_off(running: Running) -> None:
    state = running.state
    token = running.mint()
    for _ in range(2):  # the second time from the verified-token cache
        assert (await answer(running, upgrade(token), after_healthz=False))[0].startswith(b"HTTP/1.1 101 ")
    claims = state.keyring.verify(token, issuer=state.settings.issuer, audience=state.settings.audience)
    state.revoke_access(claims.jti, claims.exp)
    refused, _ = await answer(running, upgrade(token), after_healthz=False)
    assert refused.startswith(b"HTTP/1.1 401 ") and b"revoked" in refused

    bob = running.mint(sub="bob")
    assert (await answer(running, upgrade(bob), after_healthz=False))[0].startswith(b"HTTP/1.1 101 ")
    state.revoked.cut("bob", "", time.time() + 1)  # as POST /api/revoke does
    refused, _ = await answer(running, upgrade(bob), after_healthz=False)
    assert refused.startswith(b"HTTP/1.1 401 ") and b"revoked" in refused


async def test_only_a_well_formed_first_upgrade_skips_h11(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    import h11

    fed: list[bytes] = []
    original = h11.Connection.receive_data

    def counting(self: h11.Connection, data: bytes) -> None:
        fed.append(data)
        original(self, data)

    monkeypatch.setattr(h11.Connection, "receive_data", counting)
    token = running.mint()
    assert (await answer(running, upgrade(token), after_healthz=False))[0].startswith(b"HTTP/1.1 101 ")
    assert fed == []
    for odd in (upgrade(token, eol="\n"), upgrade(token, extra="Content-Length: 0\r\n"), upgrade("nope")):
        await answer(running, odd, after_healthz=False)
        assert odd in fed  # h11 read it (a refusal: after the quick read, to answer through h11)
