"""Tickets in process and the stream registry (realtime/session/streams.py)."""

from __future__ import annotations

from realtime.session.streams import TicketBook, claims_from_json, claims_to_json
from realtime.tokens.keyring import AccessClaims

CLAIMS = AccessClaims(iss="i", sub="alice", aud="a", exp=2_000_000_000, iat=1, jti="j", client_id="c",
                      scope=frozenset({"chat:read", "x"}), kid="k")


async def test_a_ticket_is_redeemed_once() -> None:
    book = TicketBook(lambda: 100.0)
    ticket = await book.issue(CLAIMS, 30)
    assert ticket not in repr(book._tickets)  # kept by hash only
    assert await book.redeem(ticket) == CLAIMS
    assert await book.redeem(ticket) is None
    assert await book.redeem("never-issued") is None


async def test_a_ticket_expires() -> None:
    now = [100.0]
    book = TicketBook(lambda: now[0])
    ticket = await book.issue(CLAIMS, 30)
    now[0] = 130.0
    assert await book.redeem(ticket) is None
    await book.issue(CLAIMS, 30)
    now[0] = 200.0
    await book.issue(CLAIMS, 30)  # issuing drops the expired ones
    assert len(book) == 1


async def test_the_book_is_bounded() -> None:
    book = TicketBook(lambda: 0.0, limit=3)
    first = await book.issue(CLAIMS, 30)
    for _ in range(3):
        await book.issue(CLAIMS, 30)
    assert len(book) == 3 and await book.redeem(first) is None


def test_claims_survive_json_and_junk_is_none() -> None:
    assert claims_from_json(claims_to_json(CLAIMS)) == CLAIMS
    assert claims_from_json("{}") is None and claims_from_json(b"\xff") is None and claims_from_json("[1]") is None
