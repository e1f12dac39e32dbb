"""Bearer tokens in the shapes the clients under test take them."""

from __future__ import annotations


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    """An ``Authorization: Bearer`` header for trio-websocket's ``extra_headers``."""
    return [(b"authorization", f"Bearer {token}".encode())]
