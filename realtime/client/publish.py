"""Publishing over HTTP: ``POST /api/publish`` with a provider's token."""

from __future__ import annotations

import json
import ssl
from typing import Any

from realtime.client.errors import AuthError, PublishError, TransportError
from realtime.client.http_client import oauth_error, http_request
from realtime.client.token_providers import TokenProvider


async def publish_http(base_url: str, tokens: TokenProvider, channel: str, data: Any, *,
                       ssl_context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """``POST /api/publish``; returns ``{"delivered": N, "seq": S}``.

    A 401 gets one retry with a new token.

    Raises:
        AuthError: the token was refused, or lacks the channel's publish scope.
        PublishError: the server refused the message (unknown channel, bad data).
        TransportError: the server could not be reached.
    """
    url = base_url.rstrip("/") + "/api/publish"
    body = json.dumps({"channel": channel, "data": data}).encode()
    token = await tokens.token()
    for attempt in range(2):
        resp = await http_request("POST", url, body=body, ssl_context=ssl_context, headers=[
            ("content-type", "application/json"), ("authorization", f"Bearer {token}")])
        if resp.status == 401 and attempt == 0:
            token = await tokens.refresh()
            continue
        break
    if resp.status == 200:
        return resp.json()
    if resp.status in (401, 403):
        raise AuthError(f"publish refused: {oauth_error(resp)}")
    if resp.status >= 500:
        raise TransportError(f"publish failed: {oauth_error(resp)}")
    info = resp.json() if isinstance(resp.json(), dict) else {}
    raise PublishError(str(info.get("error", resp.status)), str(info.get("error_description", "")))
