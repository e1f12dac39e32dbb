"""An independent Server-Sent Events reader for tests (WHATWG HTML §9.2.6,
the parts the server uses): httpx streams the body, this cuts it into
events.  Kept apart from ``realtime.client``'s parser on purpose, so a
parser bug there cannot hide a server bug here."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import attrs
import httpx

from tests.helpers.server import Running


@attrs.frozen
class Event:
    name: str
    data: Any
    id: str | None


class Reader:
    """Events of one streaming response; ``pings`` counts ``: ping`` comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.pings = 0
        self.last_id: str | None = None

    async def next(self) -> Event:
        name, data, event_id = "message", [], None
        async for line in self.lines:
            if line == "":
                if not data:
                    continue
                if event_id is not None:
                    self.last_id = event_id
                return Event(name, json.loads("\n".join(data)), event_id)
            if line.startswith(":"):
                self.pings += line.strip() == ": ping"
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
        raise EOFError("the stream ended")

    async def next_named(self, name: str, limit: int = 50) -> Event:
        for _ in range(limit):
            event = await self.next()
            if event.name == name:
                return event
        raise AssertionError(f"no {name!r} event in {limit}")


def sse_url(running: Running, *channels: str, scheme: str = "http", **query: str) -> str:
    params = [("channel", c) for c in channels] + list(query.items())
    return str(httpx.URL(running.url("/sse", scheme), params=params))


@asynccontextmanager
async def open_stream(running: Running, *channels: str, token: str | None = None,
                      headers: dict[str, str] | None = None, client: httpx.AsyncClient | None = None,
                      scheme: str = "http", **query: str) -> AsyncIterator[Reader]:
    """A live ``GET /sse``; asserts a 200 ``text/event-stream`` answer."""
    all_headers = {"accept": "text/event-stream", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    own = client is None
    http = client if client is not None else httpx.AsyncClient(timeout=30)
    try:
        async with http.stream("GET", sse_url(running, *channels, scheme=scheme, **query),
                               headers=all_headers) as response:
            assert response.status_code == 200, (response.status_code, await response.aread())
            assert response.headers["content-type"].startswith("text/event-stream")
            yield Reader(response)
    finally:
        if own:
            await http.aclose()
