"""The HTTP front through real sockets: routing, keep-alive, limits, bad input."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest
import trio
import trio.testing

from tests.helpers.server import Running


async def raw_exchange(running: Running, data: bytes, *, read_until_close: bool = True) -> bytes:
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    async with stream:
        await stream.send_all(data)
        chunks = []
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                    break
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> dict:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


async def test_healthz_over_http_and_https(running: Running, client_ssl: ssl.SSLContext) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(running.url("/healthz"))
    assert r.status_code == 200 and r.text.strip() == "ok"
    async with httpx.AsyncClient(verify=client_ssl) as client:
        r = await client.get(f"https://localhost:{running.https.port}/healthz")
    assert r.status_code == 200 and r.text.strip() == "ok"
    assert r.headers["x-frame-options"] == "DENY"


async def test_404_and_405_are_json(running: Running) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(running.url("/nope"))
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await client.delete(running.url("/healthz"))
        assert r.status_code == 405 and "GET" in r.headers["allow"]


async def test_keep_alive_serves_two_requests_on_one_connection(running: Running) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    async with stream:
        for _ in range(2):
            await stream.send_all(request)
            data = b""
            with trio.fail_after(5):
                while not data.endswith(b"ok\n"):
                    data += await stream.receive_some(4096)
            assert data.startswith(b"HTTP/1.1 200")


async def test_garbage_gets_400_json(running: Running) -> None:
    response = await raw_exchange(running, b"\x16\x03\x01garbage that is not http\r\n\r\n")
    assert status_of(response) == 400
    assert body_of(response)["error"]


async def test_oversized_header_gets_431(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"max_header_bytes": 4096}))
    response = await raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert status_of(response) == 431


async def test_token_of_100kb_is_refused_not_crashing(running: Running) -> None:
    response = await raw_exchange(
        running,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Authorization: Bearer " + b"A" * 100_000 + b"\r\n\r\n",
    )
    assert status_of(response) in (401, 431)


async def test_oversized_body_gets_413(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"max_body_bytes": 1000}))
    async with httpx.AsyncClient() as client:
        r = await client.post(server.url("/api/publish"), content=b"x" * 5000,
                              headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]


async def test_wrong_websocket_version_gets_426(running: Running) -> None:
    response = await raw_exchange(
        running,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        read_until_close=False,
    )
    assert status_of(response) == 426
    assert b"sec-websocket-version: 13" in response.lower()


async def test_plain_get_on_ws_path_gets_426(running: Running) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(running.url("/ws"))
    assert r.status_code == 426


async def test_half_request_is_cut_off_and_others_are_served(start_server, make_settings) -> None:
    server = await start_server(make_settings(server={"header_timeout": 0.5}))
    slow = await trio.open_tcp_stream(server.http.host, server.http.port)
    async with slow:
        await slow.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        async with httpx.AsyncClient() as client:
            r = await client.get(server.url("/healthz"))
        assert r.status_code == 200
        with trio.fail_after(5):
            data = b""
            while True:
                chunk = await slow.receive_some(4096)
                if not chunk:
                    break
                data += chunk
        assert status_of(data) == 408


async def test_stalled_tls_handshake_is_cut_off(start_server, make_settings, client_ssl) -> None:
    server = await start_server(make_settings(server={"handshake_timeout": 0.5}))
    stalled = await trio.open_tcp_stream(server.https.host, server.https.port)
    async with stalled:
        await stalled.send_all(b"\x16\x03\x01\x00\xff")  # a ClientHello that never completes
        async with httpx.AsyncClient(verify=client_ssl) as client:
            r = await client.get(f"https://localhost:{server.https.port}/healthz")
        assert r.status_code == 200
        with trio.fail_after(5):
            assert await stalled.receive_some(4096) == b""


async def test_client_that_never_reads_does_not_hold_up_others(start_server, make_settings) -> None:
    server = await start_server(make_settings())
    lazy = await trio.open_tcp_stream(server.http.host, server.http.port)
    async with lazy:
        # Pipeline many requests and never read the answers.
        await lazy.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
        async with httpx.AsyncClient() as client:
            for _ in range(5):
                assert (await client.get(server.url("/healthz"))).status_code == 200


# -- issue 18: L7, L8, L9 ---------------------------------------------------------


def _head_of(size: int) -> bytes:
    """A GET /healthz head of exactly ``size`` bytes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


async def test_head_over_max_header_bytes_gets_431_whole_or_split(running: Running) -> None:
    """h11 checks its limit only on a head still incomplete: a 20,000-byte
    head in one write passed the default 16 KiB before (L7)."""
    assert running.state.settings.server.max_header_bytes == 16 * 1024
    head = _head_of(20_000)
    response = await raw_exchange(running, head)  # one write: one read on the server
    assert status_of(response) == 431, response[:200]
    assert body_of(response)["error"] == "header_too_large"
    assert b"connection: close" in response.lower()
    stream = await trio.open_tcp_stream(running.http.host, running.http.port)
    async with stream:
        for i in range(0, len(head), 1000):
            await stream.send_all(head[i:i + 1000])
            await trio.testing.wait_all_tasks_blocked(cushion=0.001)
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert status_of(data) == 431
    # A head under the limit is served.
    response = await raw_exchange(running, _head_of(16_000), read_until_close=False)
    assert status_of(response) == 200


async def test_content_length_with_transfer_encoding_is_answered_and_closed(running: Running) -> None:
    """RFC 9112 §6.1: the server MUST close the connection after such a
    request; the pipelined request behind it is never answered (L8)."""
    smuggled = (b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await raw_exchange(running, smuggled)
    assert status_of(response) == 400
    assert b"connection: close" in response.lower()
    assert response.count(b"HTTP/1.1 ") == 1, response
    assert body_of(response)["error"] == "bad_request"


@pytest.mark.parametrize("content_length", [b"", b"Content-Length: 4\r\n"])
async def test_an_unsupported_transfer_coding_gets_501_not_implemented_and_closes(
        running: Running, content_length: bytes) -> None:
    """h11 refuses a transfer coding other than chunked while parsing the
    head, before the Content-Length + Transfer-Encoding check (400, above):
    501 with its reason phrase and code, and the connection closes, so the
    request pipelined behind it is never answered."""
    request = (b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + content_length
               + b"Transfer-Encoding: identity\r\n\r\nabcd"
               b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await raw_exchange(running, request)
    assert response.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), response[:80]
    assert body_of(response) == {"error": "not_implemented",
                                 "error_description": "only Transfer-Encoding: chunked is supported"}
    assert b"connection: close" in response.lower()
    assert response.count(b"HTTP/1.1 ") == 1, response


async def test_deeply_nested_json_gets_400_not_500(running: Running, caplog) -> None:
    """L9: json recursion is bad input, not a server error."""
    caplog.set_level("WARNING")
    async with httpx.AsyncClient() as client:
        r = await client.post(running.url("/api/publish"), content=b"[" * 100_000,
                              headers={"content-type": "application/json",
                                       "authorization": f"Bearer {running.mint()}"})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid_request", "error_description": "body is nested too deeply"}
    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "CRITICAL")], caplog.text


async def test_shutdown_drops_idle_connections_at_once(start_server, make_settings, client_ssl) -> None:
    """Idle keep-alive connections, fresh ones with nothing sent yet, and
    ones still in their TLS handshake are dropped when the server stops,
    not kept until shutdown_grace."""
    running = await start_server(make_settings(server={"shutdown_grace": 60.0}))
    kept = await trio.open_tcp_stream(running.http.host, running.http.port)
    await kept.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    with trio.fail_after(10):
        while b"ok" not in reply:
            reply += await kept.receive_some(65536)
    fresh = await trio.open_tcp_stream(running.http.host, running.http.port)
    in_tls = await trio.open_tcp_stream(running.https.host, running.https.port)  # no ClientHello yet
    await trio.testing.wait_all_tasks_blocked()  # the server has taken both and waits on them
    assert len(running.server.http_conns) == 3
    running.server.stop()
    with trio.fail_after(10):  # far below the 60 s grace
        await running.stopped.wait()
        for stream in (kept, fresh, in_tls):
            assert await stream.receive_some(65536) == b""
