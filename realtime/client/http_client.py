"""One HTTP request with httpx (it runs on trio through anyio), and the
helpers that turn its failures and OAuth error bodies into messages."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx
import trio

from realtime.client.errors import TransportError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


@attrs.frozen
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


async def http_request(
    method: str,
    url: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 15.0,
) -> HttpResponse:
    """One request; the answer is read whole, up to MAX_RESPONSE_BYTES.

    Raises:
        TransportError: connect, TLS or protocol failure, an oversized
            answer, or ``timeout`` passed (for the whole exchange).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        with trio.fail_after(timeout):
            async with httpx.AsyncClient(verify=ssl_context or True, timeout=timeout,
                                         follow_redirects=False) as client:
                async with client.stream(method, url, content=body,
                                         headers=[("user-agent", "realtime-client"), *headers]) as resp:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise TransportError(f"{method} {_where(url)}: response too large")
                        chunks.append(chunk)
                    return HttpResponse(resp.status_code, tuple(resp.headers.multi_items()), b"".join(chunks))
    except trio.TooSlowError:
        raise TransportError(f"{method} {_where(url)}: no answer within {timeout:g} s") from None
    except (OSError, httpx.HTTPError) as exc:
        raise TransportError(f"{method} {_where(url)}: {describe_error(exc)}") from None


def _where(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def oauth_error(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict) and "error" in body:
        desc = body.get("error_description")
        return f"{body['error']}: {desc}" if desc else str(body["error"])
    return f"HTTP {resp.status}"
