"""How the client judges a closed connection (realtime/client/verdict.py):
the close codes it reads are the server's own table."""

from __future__ import annotations

import pytest
from trio_websocket import CloseReason, ConnectionClosed

from realtime.client.verdict import Reconnect, verdict_of
from realtime.protocol.close import CloseCode


@pytest.mark.parametrize("code", list(CloseCode))
def test_a_new_token_first_only_after_expiry_or_withdrawal(code: CloseCode) -> None:
    why, refresh, had_worked = verdict_of(ConnectionClosed(CloseReason(code, "bye")))  # type: ignore[misc]
    assert why == f"closed {int(code)} (bye)"
    assert refresh is (code in (CloseCode.TOKEN_EXPIRED, CloseCode.REVOKED))
    assert had_worked


def test_a_reconnect_asked_by_the_client_itself() -> None:
    assert verdict_of(Reconnect("refused", refresh=True)) == ("refused", True, True)
    assert verdict_of(ValueError("a bug")) is None
