"""Server API (SPEC §11) calls over HTTP for the tests: an admin token
and GET/POST helpers."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.server import Running


def admin_token(running: Running, **kw: Any) -> str:
    """A client_credentials-like token of the app itself holding realtime:admin."""
    return running.mint(sub="chat-app", client_id="chat-app", scope="realtime:admin", **kw)


async def api(running: Running, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    if token is None:
        token = admin_token(running)
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, running.url(path), headers=headers, **kw)
