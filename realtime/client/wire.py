"""What the WebSocket client speaks: the subprotocol, the URL, and the
messages it hands to the caller."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

SUBPROTOCOL = "realtime.v1"


@attrs.frozen
class Message:
    """One ``message`` from a channel."""

    channel: str
    seq: int
    sender: str
    data: Any

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "seq": self.seq, "from": self.sender, "data": self.data}


def ws_url_for(url: str, ws_path: str = "/ws") -> str:
    """``https://host:8443`` -> ``wss://host:8443/ws``; a ws(s):// URL is kept."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path if parts.scheme in ("ws", "wss") and parts.path not in ("", "/") else ws_path
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))
