"""The close-code table (realtime/protocol/close.py): the numbers SPEC §4
names, the errors that carry them, and the closes decided by a rule."""

from __future__ import annotations

import pytest

from realtime.net.transport_errors import BacklogOverflow, TransportClosed
from realtime.protocol.close import (
    BINARY_REFUSED,
    NEEDS_NEW_TOKEN,
    RATE_LIMITED,
    TOO_BIG,
    Close,
    CloseCode,
    ProtocolError,
)
from realtime.protocol.messages import InvalidJSON, parse_client_message


def test_the_numbers_are_the_contract() -> None:
    # SPEC §4 "Close codes" and §1 (shutdown); a renumbering is a breaking change.
    assert {c.name: int(c) for c in CloseCode} == {
        "NORMAL": 1000, "GOING_AWAY": 1001, "PROTOCOL_ERROR": 1002, "UNSUPPORTED_DATA": 1003,
        "NO_STATUS": 1005, "ABORT": 1006, "INVALID_DATA": 1007, "TOO_BIG": 1009,
        "TOKEN_EXPIRED": 4001, "REVOKED": 4003, "RATE_LIMITED": 4008, "SLOW_CONSUMER": 4009,
    }


def test_a_code_is_its_number_in_labels_and_comparisons() -> None:
    assert CloseCode.SLOW_CONSUMER == 4009 and str(CloseCode.SLOW_CONSUMER) == "4009"
    assert f"{CloseCode.REVOKED}" == "4003" and "%s" % CloseCode.REVOKED == "4003"
    assert {4009: 1}.get(CloseCode.SLOW_CONSUMER) == 1


def test_a_new_token_is_needed_after_expiry_and_revocation_only() -> None:
    assert NEEDS_NEW_TOKEN == {4001, 4003}
    assert 4009 not in NEEDS_NEW_TOKEN


@pytest.mark.parametrize(
    "error,code,reason",
    [
        (InvalidJSON, 1007, "invalid JSON"),
        (ProtocolError, 1002, "protocol error"),
        (BacklogOverflow, 4009, "slow consumer"),
        (TransportClosed, 1006, "connection lost"),
    ],
)
def test_each_error_carries_its_code(error: type[Exception], code: int, reason: str) -> None:
    assert (error.close_code, error.close_reason) == (code, reason)  # type: ignore[attr-defined]


def test_invalid_json_names_the_close_and_keeps_its_detail_for_logs() -> None:
    with pytest.raises(InvalidJSON) as info:
        parse_client_message("{nope")
    assert info.value.close() == Close(CloseCode.INVALID_DATA, "invalid JSON")
    assert "position" in str(info.value)


@pytest.mark.parametrize(
    "close,code,reason",
    [
        (BINARY_REFUSED, 1003, "binary messages are not accepted"),
        (TOO_BIG, 1009, "message too big"),
        (RATE_LIMITED, 4008, "publish rate limit"),
    ],
)
def test_each_rule_close_names_its_code(close: Close, code: int, reason: str) -> None:
    assert (close.code, close.reason) == (code, reason)
