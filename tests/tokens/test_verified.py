"""The verified-token cache of the key ring: a token that verified once
skips the signature check when it comes back, and nothing that can change
(exp, nbf/iat, revocation, cut-offs, the ring's keys) is taken from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from realtime.tokens import keyring as keyring_module
from realtime.tokens import verified as verified_module
from realtime.tokens.keyring import KeyRing, RevokedSet, TokenError, issue_access_token
from realtime.tokens.verified import Verified, VerifiedTokens

ISS = "https://auth.example"
NOW = 1_700_000_000.0


@pytest.fixture
def signatures(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The signatures the ring checks, counted."""
    checked: list[str] = []
    real = keyring_module.check_signature

    def counting(*args: Any) -> None:
        checked.append(args[-1])
        real(*args)

    monkeypatch.setattr(keyring_module, "check_signature", counting)
    return checked


def mint(ring: KeyRing, *, sub: str = "alice", ttl: float = 60, now: float = NOW, **kw: Any) -> str:
    token, _ = issue_access_token(ring, issuer=ISS, audience=ISS, sub=sub, client_id="chat-app",
                                  scope=["chat:read"], ttl=ttl, now=now, **kw)
    return token


def verify(ring: KeyRing, token: str, now: float = NOW, **kw: Any) -> Any:
    kw.setdefault("issuer", ISS)
    kw.setdefault("audience", ISS)
    return ring.verify(token, now=now, **kw)


def refused(ring: KeyRing, token: str, **kw: Any) -> str:
    with pytest.raises(TokenError) as info:
        verify(ring, token, **kw)
    return info.value.reason


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path, "RS256", now=NOW)


def test_a_token_that_verified_skips_the_signature_next_time(ring: KeyRing, signatures: list[str]) -> None:
    token = mint(ring)
    first = verify(ring, token)
    again = verify(ring, token, now=NOW + 10)
    assert again == first and again.sub == "alice"
    assert len(signatures) == 1
    other = mint(ring, sub="bob")
    assert verify(ring, other).sub == "bob" and len(signatures) == 2


def test_a_tampered_copy_of_a_cached_token_is_checked_and_refused(ring: KeyRing, signatures: list[str]) -> None:
    token = mint(ring)
    verify(ring, token)
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert refused(ring, f"{head}.{payload}.{flipped}") == "bad_signature"
    assert len(signatures) == 2


def test_expiry_is_checked_on_every_use(ring: KeyRing) -> None:
    token = mint(ring, ttl=60)
    verify(ring, token)
    assert verify(ring, token, now=NOW + 59).sub == "alice"
    assert refused(ring, token, now=NOW + 60, leeway=1000) == "expired"  # the leeway never widens exp
    # Expired is final: the entry is gone, and the full check says the same.
    assert refused(ring, token, now=NOW + 61) == "expired"


def test_not_yet_valid_is_checked_on_every_use(ring: KeyRing) -> None:
    token = mint(ring, now=NOW)
    verify(ring, token, now=NOW)
    assert refused(ring, token, now=NOW - 100) == "not_yet_valid"
    assert verify(ring, token, now=NOW + 1).sub == "alice"  # still good afterwards


def test_a_revoked_jti_is_refused_even_when_cached(ring: KeyRing, signatures: list[str]) -> None:
    revoked = RevokedSet()
    token = mint(ring)
    claims = verify(ring, token, revoked=revoked)
    assert verify(ring, token, revoked=revoked) == claims
    revoked.add(claims.jti, claims.exp)
    assert refused(ring, token, revoked=revoked) == "revoked"
    assert refused(ring, token, revoked=revoked) == "revoked"
    # A plain container of jtis counts too (what callers other than the gate pass).
    other = mint(ring, sub="bob")
    verify(ring, other)
    assert refused(ring, other, revoked={verify(ring, other).jti}) == "revoked"


def test_a_cut_off_refuses_a_cached_token(ring: KeyRing) -> None:
    revoked = RevokedSet()
    token = mint(ring)
    verify(ring, token, revoked=revoked)
    revoked.cut("alice", "", NOW + 1)  # POST /api/revoke: every token of alice issued before
    assert refused(ring, token, revoked=revoked, now=NOW + 2) == "revoked"
    later = mint(ring, now=NOW + 2)
    assert verify(ring, later, revoked=revoked, now=NOW + 3).sub == "alice"


def test_another_issuer_or_audience_is_not_answered_from_the_cache(ring: KeyRing) -> None:
    token = mint(ring)
    verify(ring, token)
    assert refused(ring, token, issuer="https://other.example") == "wrong_issuer"
    assert refused(ring, token, audience="https://other.example") == "wrong_audience"
    assert verify(ring, token).iss == ISS


def test_a_retired_keys_tokens_are_refused_after_the_prune(tmp_path: Path, signatures: list[str]) -> None:
    ring = KeyRing.load_or_create(tmp_path, "RS256", now=NOW)
    token = mint(ring, ttl=600)
    verify(ring, token)
    rotated = ring.rotate(tmp_path, retire_after=605, now=NOW + 10)
    # The rotated ring is a new ring: it checks the signature itself, once.
    assert verify(rotated, token, now=NOW + 20).kid == ring.active.kid
    assert verify(rotated, token, now=NOW + 21).kid == ring.active.kid
    assert len(signatures) == 2
    pruned = rotated.prune(tmp_path, now=NOW + 615)
    assert refused(pruned, token, now=NOW + 300) == "unknown_kid"


def test_the_ring_keeps_a_bounded_number_of_tokens(tmp_path: Path, signatures: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verified_module, "VERIFIED_TOKENS", 3)
    ring = KeyRing.load_or_create(tmp_path, "RS256", now=NOW)
    tokens = [mint(ring, sub=f"user{i}") for i in range(5)]
    for token in tokens:
        verify(ring, token)
    assert len(signatures) == 5
    verify(ring, tokens[-1])  # among the newest three: no new check
    assert len(signatures) == 5
    verify(ring, tokens[0])  # the oldest was dropped: checked again
    assert len(signatures) == 6


def test_verified_tokens_drop_the_oldest_first_and_never_exceed_the_limit() -> None:
    cache = VerifiedTokens(limit=2)
    entry = Verified(claims=None, issuer=ISS, audience=ISS, times={})  # type: ignore[arg-type]
    digests = [cache.digest(f"a.b.{i}") for i in range(4)]
    for digest in digests:
        cache.put(digest, entry)
        assert len(cache) <= 2
    assert cache.get(digests[0]) is None and cache.get(digests[1]) is None
    assert cache.get(digests[2]) is entry and cache.get(digests[3]) is entry
    assert VerifiedTokens(limit=0).digest("x") and len(VerifiedTokens(limit=0)) == 0


def test_digests_are_keyed_per_cache() -> None:
    one, two = VerifiedTokens(), VerifiedTokens()
    assert one.digest("a.b.c") == one.digest("a.b.c")
    assert one.digest("a.b.c") != two.digest("a.b.c")
    assert len(one.digest("a.b.c")) == 16
