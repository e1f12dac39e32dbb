"""Tokens and the key ring: real key files in tmp_path, no sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

from realtime.tokens import keyfiles
from realtime.tokens.keyring import (
    MAX_TOKEN_CHARS,
    MESSAGES,
    AccessClaims,
    KeyRing,
    RevokedSet,
    TokenError,
    issue_access_token,
    unverified_kid,
)

ISS = "https://auth.example"
AUD = "https://auth.example"
NOW = 1_700_000_000.0
ALGS = ("RS256", "ES256", "EdDSA")
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# -- helpers --------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


def forge(ring: KeyRing, header: dict[str, Any], claims: dict[str, Any], *, kid_of: str | None = None) -> str:
    """Sign arbitrary header/claims with one of the ring's real private keys."""
    key = ring.keys[kid_of] if kid_of else ring.active
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    sig = get_default_algorithms()[key.alg].sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{b64(sig)}"


def good_header(ring: KeyRing) -> dict[str, Any]:
    return {"alg": ring.active.alg, "typ": "at+jwt", "kid": ring.active.kid}


def good_claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": ISS, "sub": "alice", "aud": AUD, "exp": int(NOW) + 60, "iat": int(NOW), "jti": "jti-1",
        "client_id": "chat-app", "scope": "chat:read chat:write",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


DROP = object()


def verify(ring: KeyRing, token: str, **kw: Any) -> AccessClaims:
    kw.setdefault("issuer", ISS)
    kw.setdefault("audience", AUD)
    kw.setdefault("now", NOW)
    return ring.verify(token, **kw)


def reason(ring: KeyRing, token: Any, **kw: Any) -> str:
    with pytest.raises(TokenError) as info:
        verify(ring, token, **kw)
    return info.value.reason


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def rings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyRing]:
    base = tmp_path_factory.mktemp("rings")
    return {alg: KeyRing.load_or_create(base / alg, alg, now=NOW) for alg in ALGS}


@pytest.fixture
def ring(rings: dict[str, KeyRing]) -> KeyRing:
    return rings["RS256"]


# -- key files --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_first_start_writes_one_private_key_0600_in_a_0700_dir(tmp_path: Path, alg: str) -> None:
    keys_dir = tmp_path / "state" / "keys"
    ring = KeyRing.load_or_create(keys_dir, alg, now=NOW)
    kid = ring.active.kid
    assert mode(keys_dir) == 0o700
    assert sorted(p.name for p in keys_dir.iterdir() if not p.name.startswith(".")) == [f"{kid}.json", f"{kid}.pem"]
    for path in (keys_dir / f"{kid}.pem", keys_dir / f"{kid}.json"):
        assert mode(path) == 0o600
    pem = (keys_dir / f"{kid}.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    meta = json.loads((keys_dir / f"{kid}.json").read_text())
    assert meta == {"kid": kid, "alg": alg, "created_at": NOW, "retire_at": None}
    assert ring.active.alg == alg and list(ring.keys) == [kid]


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 7638 §3.1's worked example.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiF"
         "V4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9"
         "c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1"
         "jF44-csFCur-kEgU8awapJzKnqDKgw")
    assert keyfiles.jwk_thumbprint({"kty": "RSA", "n": n, "e": "AQAB"}) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ALGS)
def test_kid_matches_the_published_jwk(rings: dict[str, KeyRing], alg: str) -> None:
    ring = rings[alg]
    (jwk,) = ring.jwks()["keys"]
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in required) + "}"
    assert b64(hashlib.sha256(canonical.encode()).digest()) == ring.active.kid == jwk["kid"]


def test_load_or_create_is_idempotent_across_restarts(tmp_path: Path) -> None:
    first = KeyRing.load_or_create(tmp_path, "ES256", now=NOW)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = KeyRing.load_or_create(tmp_path, "ES256", now=NOW + 3600)
    assert again.active.kid == first.active.kid
    assert list(again.keys) == list(first.keys)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # nothing rewritten
    assert KeyRing.load(tmp_path).active.kid == first.active.kid


def test_changing_the_alg_adds_a_key_and_schedules_the_old_one(tmp_path: Path) -> None:
    old = KeyRing.load_or_create(tmp_path, "RS256", now=NOW)
    token, _ = issue_access_token(old, issuer=ISS, audience=AUD, sub="a", client_id="c", scope=[], ttl=60, now=NOW)
    new = KeyRing.load_or_create(tmp_path, "EdDSA", retire_after=900, now=NOW + 10)
    assert new.active.alg == "EdDSA" and new.active.kid != old.active.kid
    assert new.keys[old.active.kid].retire_at == NOW + 10 + 900
    assert json.loads((tmp_path / f"{old.active.kid}.json").read_text())["retire_at"] == NOW + 910
    assert verify(new, token, now=NOW + 20).kid == old.active.kid  # tokens in flight still verify
    assert KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW + 20).active.kid == new.active.kid


def test_an_interrupted_rotation_is_repaired_on_startup(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    newer = keyfiles.new_signing_key("EdDSA", NOW + 5)
    keyfiles.write_key(tmp_path, newer)  # crash before the old key's metadata was updated
    repaired = KeyRing.load_or_create(tmp_path, "EdDSA", retire_after=100, now=NOW + 6)
    assert repaired.active.kid == newer.kid
    assert repaired.keys[ring.active.kid].retire_at == NOW + 106


def test_load_or_create_tightens_loose_modes(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    pem = tmp_path / f"{ring.active.kid}.pem"
    pem.chmod(0o644)
    tmp_path.chmod(0o755)
    KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    assert mode(pem) == 0o600 and mode(tmp_path) == 0o700


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KeyRing.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no signing keys"):
        KeyRing.load(tmp_path)
    ring = KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    kid = ring.active.kid
    meta, pem = tmp_path / f"{kid}.json", tmp_path / f"{kid}.pem"

    meta.write_text("{not json")
    with pytest.raises(ValueError, match=f"{kid}.json"):
        KeyRing.load(tmp_path)
    meta.write_text(json.dumps({"alg": "HS256", "created_at": NOW, "retire_at": None}))
    with pytest.raises(ValueError, match="alg"):
        KeyRing.load(tmp_path)
    meta.write_text(json.dumps({"alg": "ES256", "created_at": NOW, "retire_at": None}))
    with pytest.raises(ValueError, match="not a valid ES256 key"):
        KeyRing.load(tmp_path)
    meta.write_text(json.dumps({"alg": "EdDSA", "created_at": NOW, "retire_at": None}))
    other = keyfiles.new_signing_key("EdDSA", NOW)
    pem.write_bytes(other.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError, match="does not match its kid"):
        KeyRing.load(tmp_path)
    pem.unlink()
    with pytest.raises(ValueError, match="missing"):
        KeyRing.load(tmp_path)


def test_a_pem_without_metadata_is_ignored(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    stray = keyfiles.new_signing_key("EdDSA", NOW + 1)
    keyfiles.write_atomic(tmp_path / f"{stray.kid}.pem", b"half-written")
    assert list(KeyRing.load(tmp_path).keys) == [ring.active.kid]


def test_unknown_alg_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported signing_alg"):
        KeyRing.load_or_create(tmp_path, "HS256")


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_issue_and_verify_round_trip(rings: dict[str, KeyRing], alg: str) -> None:
    ring = rings[alg]
    token, issued = issue_access_token(ring, issuer=ISS, audience=AUD, sub="alice", client_id="chat-app",
                                       scope=["chat:write", "chat:read"], ttl=60.9, now=NOW + 0.7)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "at+jwt", "kid": ring.active.kid}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["scope"] == "chat:read chat:write"  # RFC 8693 §4.2: one space-separated string
    assert payload["iat"] == int(NOW) and payload["exp"] == int(NOW) + 61
    assert set(payload) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}
    assert len(base64.urlsafe_b64decode(payload["jti"] + "==")) == 16
    claims = verify(ring, token)
    assert claims == issued
    assert claims.scope == frozenset({"chat:read", "chat:write"}) and claims.scope_str == "chat:read chat:write"
    assert claims.kid == ring.active.kid and claims.sub == "alice" and claims.client_id == "chat-app"


@pytest.mark.parametrize("alg", ALGS)
def test_a_third_party_verifies_our_tokens_from_the_jwks(rings: dict[str, KeyRing], alg: str) -> None:
    ring = rings[alg]
    token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=["x"], ttl=60)
    jwk = jwt.PyJWK(ring.jwks()["keys"][0])
    assert jwt.decode(token, jwk.key, algorithms=[alg], audience=AUD, issuer=ISS)["sub"] == "s"


def test_typ_variants_and_aud_list_and_empty_scope(ring: KeyRing) -> None:
    for typ in ("at+jwt", "application/at+jwt", "AT+JWT"):
        token = forge(ring, {**good_header(ring), "typ": typ}, good_claims(aud=["other", AUD], scope=""))
        claims = verify(ring, token)
        assert claims.aud == AUD and claims.scope == frozenset() and claims.scope_str == ""


def test_extra_claims_are_signed_but_cannot_replace_registered_ones(ring: KeyRing) -> None:
    token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60,
                                  extra={"auth_time": 5})
    assert jwt.decode(token, options={"verify_signature": False})["auth_time"] == 5
    with pytest.raises(ValueError, match="sub"):
        issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60,
                           extra={"sub": "root"})
    with pytest.raises(ValueError, match="scope"):
        issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=["a b"], ttl=60)


def test_a_cached_header_still_needs_a_good_signature(rings: dict[str, KeyRing]) -> None:
    ring = rings["EdDSA"]
    token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="José", client_id="c", scope=[], ttl=60,
                                  now=NOW)
    assert verify(ring, token).sub == "José"
    assert verify(ring, token).sub == "José"  # second time through the header cache
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert reason(ring, f"{header}.{b64json({**claims, 'sub': 'root'})}.{sig}") == "bad_signature"
    assert reason(ring, f"{header}.{payload}.") == "bad_signature"


# -- every TokenError reason ------------------------------------------------------


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "not.a.jwt", "é.é.é", "a b.c.d", None, b"a.b.c"])
def test_malformed(ring: KeyRing, token: Any) -> None:
    assert reason(ring, token) == "malformed"


def test_oversized_token_is_malformed_even_with_a_valid_signature(ring: KeyRing) -> None:
    token = forge(ring, good_header(ring), good_claims(pad="x" * MAX_TOKEN_CHARS))
    assert len(token) > MAX_TOKEN_CHARS
    assert reason(ring, token) == "malformed"
    assert reason(ring, "a" * 100_000) == "malformed"


def test_malformed_headers_and_claims(ring: KeyRing) -> None:
    hdr = good_header(ring)
    dup_header = b64(b'{"alg":"RS256","alg":"none","typ":"at+jwt"}')
    cases = [
        forge(ring, {**hdr, "crit": ["exp"]}, good_claims()),
        f"{dup_header}.{b64json(good_claims())}.c2ln",
        f"{b64(b'[1]')}.{b64json(good_claims())}.c2ln",
        forge(ring, hdr, good_claims(exp="soon")),
        forge(ring, hdr, good_claims(iat=True)),
        forge(ring, hdr, good_claims(sub=7)),
        forge(ring, hdr, good_claims(scope=["a", "b"])),
        forge(ring, hdr, good_claims(aud={"a": 1})),
        forge(ring, hdr, good_claims(aud=[AUD, 3])),
        forge(ring, hdr, good_claims(nbf="later")),
    ]
    signing_input = f"{b64json(hdr)}.{b64(b'[1, 2]')}"
    sig = get_default_algorithms()["RS256"].sign(signing_input.encode(), ring.active.private_key)
    cases.append(f"{signing_input}.{b64(sig)}")  # signed, but the payload is not an object
    for token in cases:
        assert reason(ring, token) == "malformed", token


def test_deeply_nested_json_is_malformed_not_a_crash(ring: KeyRing) -> None:
    nested = b64(b"[" * 5000 + b"]" * 5000)
    hdr = b64json(good_header(ring))
    assert reason(ring, f"{nested}.{hdr}.c2ln") == "malformed"


def test_wrong_typ(ring: KeyRing) -> None:
    hdr = good_header(ring)
    for header in ({**hdr, "typ": "JWT"}, {k: v for k, v in hdr.items() if k != "typ"}, {**hdr, "typ": 1}):
        assert reason(ring, forge(ring, header, good_claims())) == "wrong_typ"
    # An ID token or any other JWT signed by the same key is not an access token.
    assert reason(ring, ring.sign(good_claims(), typ="JWT")) == "wrong_typ"


def test_alg_none_is_refused(ring: KeyRing) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": ring.active.kid}
    assert reason(ring, f"{b64json(header)}.{b64json(good_claims())}.") == "alg_mismatch"
    assert reason(ring, f"{b64json({**header, 'alg': 'None'})}.{b64json(good_claims())}.") == "alg_mismatch"


def test_hs256_signed_with_the_public_key_is_refused(ring: KeyRing) -> None:
    """The classic confusion: the attacker HMACs with the published key."""
    public_pem = ring.active.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": ring.active.kid}
    signing_input = f"{b64json(header)}.{b64json(good_claims())}"
    for secret in (public_pem, json.dumps(ring.jwks()["keys"][0]).encode()):
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert reason(ring, f"{signing_input}.{b64(sig)}") == "alg_mismatch"


def test_alg_must_be_the_keys_alg(rings: dict[str, KeyRing]) -> None:
    rsa, ec = rings["RS256"], rings["ES256"]
    # ES256 header naming the RSA key: refused before any signature check.
    header = {"alg": "ES256", "typ": "at+jwt", "kid": rsa.active.kid}
    signing_input = f"{b64json(header)}.{b64json(good_claims())}"
    sig = get_default_algorithms()["ES256"].sign(signing_input.encode(), ec.active.private_key)
    assert reason(rsa, f"{signing_input}.{b64(sig)}") == "alg_mismatch"
    for alg in ("RS384", "PS256", "ES384", 5, None):
        assert reason(rsa, forge(rsa, {**good_header(rsa), "alg": alg}, good_claims())) == "alg_mismatch"


def test_unknown_kid(rings: dict[str, KeyRing], ring: KeyRing) -> None:
    foreign = rings["ES256"]
    token, _ = issue_access_token(foreign, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60,
                                  now=NOW)
    assert reason(ring, token) == "unknown_kid"
    hdr = good_header(ring)
    assert reason(ring, forge(ring, {**hdr, "kid": "nope"}, good_claims())) == "unknown_kid"
    assert reason(ring, forge(ring, {k: v for k, v in hdr.items() if k != "kid"}, good_claims())) == "unknown_kid"
    assert reason(ring, forge(ring, {**hdr, "kid": ["x"]}, good_claims())) == "unknown_kid"


@pytest.mark.parametrize("alg", ALGS)
def test_tampering_breaks_the_signature(rings: dict[str, KeyRing], alg: str) -> None:
    ring = rings[alg]
    token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="alice", client_id="c", scope=["a"],
                                  ttl=60, now=NOW)
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = f"{header}.{b64json({**claims, 'sub': 'root'})}.{sig}"
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]  # same bytes, non-canonical spelling
    assert base64.urlsafe_b64decode(spare + "==") == base64.urlsafe_b64decode(sig + "==")
    signed = f"{header}.{payload}"
    for bad in (forged, f"{signed}.{spare}", f"{signed}.{flipped}", f"{signed}.", f"{signed}.{sig[:-4]}",
                f"{header}.{payload}.{sig}AAAA", f"{header}.{payload}.A"):
        assert reason(ring, bad) == "bad_signature", bad


def test_wrong_issuer_and_audience(ring: KeyRing) -> None:
    hdr = good_header(ring)
    assert reason(ring, forge(ring, hdr, good_claims(iss="https://evil.example"))) == "wrong_issuer"
    assert reason(ring, forge(ring, hdr, good_claims(iss=ISS + "/"))) == "wrong_issuer"  # exact match only
    assert reason(ring, forge(ring, hdr, good_claims(aud="https://other"))) == "wrong_audience"
    assert reason(ring, forge(ring, hdr, good_claims(aud=["https://other"]))) == "wrong_audience"
    assert reason(ring, forge(ring, hdr, good_claims(aud=[]))) == "wrong_audience"


def test_exp_is_final_whatever_the_leeway(ring: KeyRing) -> None:
    token = forge(ring, good_header(ring), good_claims(exp=int(NOW) + 60))
    exp = int(NOW) + 60
    assert verify(ring, token, now=exp - 0.001, leeway=0).exp == exp
    assert reason(ring, token, now=exp, leeway=0) == "expired"  # "MUST be before" exp
    # The leeway is for iat/nbf clock skew; it never lengthens a token's life.
    assert verify(ring, token, now=exp - 0.001, leeway=5).exp == exp
    assert reason(ring, token, now=exp, leeway=5) == "expired"
    assert reason(ring, token, now=exp + 1.5, leeway=5) == "expired"


def test_not_yet_valid(ring: KeyRing) -> None:
    hdr = good_header(ring)
    assert reason(ring, forge(ring, hdr, good_claims(nbf=NOW + 30)), leeway=5) == "not_yet_valid"
    assert verify(ring, forge(ring, hdr, good_claims(nbf=NOW + 4)), leeway=5).sub == "alice"
    assert reason(ring, forge(ring, hdr, good_claims(iat=int(NOW) + 30)), leeway=5) == "not_yet_valid"
    assert verify(ring, forge(ring, hdr, good_claims(iat=int(NOW) + 5)), leeway=5).sub == "alice"


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"])
def test_missing_claim(ring: KeyRing, claim: str) -> None:
    with pytest.raises(TokenError) as info:
        verify(ring, forge(ring, good_header(ring), good_claims(**{claim: DROP})))
    assert info.value.reason == "missing_claim"
    assert claim in str(info.value)


@pytest.mark.parametrize("claim", ["iss", "sub", "jti", "client_id"])
def test_empty_string_claims_count_as_missing(ring: KeyRing, claim: str) -> None:
    assert reason(ring, forge(ring, good_header(ring), good_claims(**{claim: ""}))) == "missing_claim"


def test_revoked_only_after_the_signature_holds(ring: KeyRing) -> None:
    revoked = RevokedSet()
    token, claims = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60,
                                       now=NOW)
    assert verify(ring, token, revoked=revoked).jti == claims.jti
    revoked.add(claims.jti, claims.exp)
    assert reason(ring, token, revoked=revoked) == "revoked"
    header, payload, sig = token.split(".")
    assert reason(ring, f"{header}.{payload}.{sig[::-1]}", revoked=revoked) == "bad_signature"


def test_every_reason_is_covered_and_messages_leak_nothing(ring: KeyRing) -> None:
    evil = "evil\r\nX-Injected: 1"
    seen = set()
    hdr = good_header(ring)
    probes = [
        ("malformed", "x"),
        ("wrong_typ", forge(ring, {**hdr, "typ": evil}, good_claims())),
        ("unknown_kid", forge(ring, {**hdr, "kid": evil}, good_claims())),
        ("alg_mismatch", forge(ring, {**hdr, "alg": evil}, good_claims())),
        ("wrong_issuer", forge(ring, hdr, good_claims(iss=evil))),
        ("wrong_audience", forge(ring, hdr, good_claims(aud=evil))),
        ("expired", forge(ring, hdr, good_claims(exp=1))),
        ("not_yet_valid", forge(ring, hdr, good_claims(nbf=NOW + 999))),
        ("missing_claim", forge(ring, hdr, good_claims(jti=DROP))),
        ("bad_signature", forge(ring, hdr, good_claims())[:-3] + "AAA"),
    ]
    revoked = RevokedSet()
    revoked.add(evil, NOW + 60)
    probes.append(("revoked", forge(ring, hdr, good_claims(jti=evil))))
    for expected, token in probes:
        with pytest.raises(TokenError) as info:
            verify(ring, token, revoked=revoked)
        assert info.value.reason == expected
        assert evil not in str(info.value) and token not in str(info.value)
        assert "\n" not in str(info.value)
        seen.add(expected)
    assert seen == set(MESSAGES)
    with pytest.raises(ValueError):
        TokenError("nonsense")


# -- JWKS, rotation, pruning --------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_jwks_has_public_members_only(rings: dict[str, KeyRing], alg: str) -> None:
    ring = rings[alg]
    (jwk,) = ring.jwks()["keys"]
    assert not PRIVATE_JWK_MEMBERS & set(jwk)
    assert {"kid": ring.active.kid, "alg": alg, "use": "sig"}.items() <= jwk.items()
    expected = {"RS256": {"kty", "n", "e"}, "ES256": {"kty", "crv", "x", "y"}, "EdDSA": {"kty", "crv", "x"}}[alg]
    assert set(jwk) == expected | {"kid", "alg", "use"}
    ring.jwks()["keys"][0]["kid"] = "mutated"
    assert ring.jwks()["keys"][0]["kid"] == ring.active.kid  # callers get a copy


def test_rotate_keeps_the_old_key_verifying_and_publishes_both(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, "ES256", now=NOW)
    old_kid = ring.active.kid
    old_token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=600,
                                      now=NOW)
    rotated = ring.rotate(tmp_path, retire_after=605, now=NOW + 10)
    new_kid = rotated.active.kid
    assert new_kid != old_kid and rotated.active.alg == "ES256"
    assert [jwk["kid"] for jwk in rotated.jwks()["keys"]] == [old_kid, new_kid]
    assert rotated.keys[old_kid].retire_at == NOW + 615
    assert verify(rotated, old_token, now=NOW + 20).kid == old_kid
    new_token, _ = issue_access_token(rotated, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60,
                                      now=NOW + 20)
    assert unverified_kid(new_token) == new_kid
    assert reason(ring, new_token, now=NOW + 20) == "unknown_kid"  # the old ring value is unchanged
    reloaded = KeyRing.load(tmp_path)
    assert reloaded.active.kid == new_kid and reloaded.keys[old_kid].retire_at == NOW + 615
    assert all(mode(p) == 0o600 for p in tmp_path.glob("*.*") if p.suffix in (".pem", ".json"))


def test_prune_retires_only_after_retire_at(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    old_kid = ring.active.kid
    old_token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60,
                                      now=NOW)
    rotated = ring.rotate(tmp_path, retire_after=65, now=NOW)
    assert rotated.prune(tmp_path, now=NOW + 64.9) is rotated
    pruned = rotated.prune(tmp_path, now=NOW + 65)
    assert list(pruned.keys) == [rotated.active.kid] and pruned.active.kid == rotated.active.kid
    assert not (tmp_path / f"{old_kid}.pem").exists() and not (tmp_path / f"{old_kid}.json").exists()
    assert [jwk["kid"] for jwk in pruned.jwks()["keys"]] == [rotated.active.kid]
    assert reason(pruned, old_token, now=NOW + 30) == "unknown_kid"
    assert list(KeyRing.load(tmp_path).keys) == [rotated.active.kid]
    assert pruned.prune(tmp_path, now=NOW + 10**9) is pruned  # never the active key


def test_a_ring_needs_an_active_key(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW)
    keyfiles.write_metadata(tmp_path, keyfiles.SigningKey(
        kid=ring.active.kid, alg="EdDSA", private_key=ring.active.private_key, created_at=NOW, retire_at=NOW + 1))
    with pytest.raises(ValueError, match="no active signing key"):
        KeyRing.load(tmp_path)
    assert KeyRing.load_or_create(tmp_path, "EdDSA", now=NOW).active.kid != ring.active.kid


# -- unverified_kid, RevokedSet -----------------------------------------------------


def test_unverified_kid(ring: KeyRing) -> None:
    token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=[], ttl=60)
    assert unverified_kid(token) == ring.active.kid
    for junk in ("", "x.y.z", "a" * 100_000, None, forge(ring, {"kid": 5}, {})):
        assert unverified_kid(junk) is None  # type: ignore[arg-type]


def test_revoked_set_sweeps_after_exp_plus_grace() -> None:
    revoked = RevokedSet(grace=10)
    revoked.load([("a", NOW), ("b", NOW + 100)])
    revoked.add("a", NOW - 50)  # an earlier exp never shortens a revocation
    assert "a" in revoked and "b" in revoked and "c" not in revoked and len(revoked) == 2
    assert 5 not in revoked and ["a"] not in revoked
    assert revoked.sweep(now=NOW + 10) == 0  # still inside exp + grace (verify's leeway)
    assert revoked.sweep(now=NOW + 10.5) == 1
    assert "a" not in revoked and len(revoked) == 1
    revoked.add("b", NOW + 500)  # re-revoked with a later exp: the stale heap entry is ignored
    assert revoked.sweep(now=NOW + 200) == 0 and "b" in revoked
    assert revoked.sweep(now=NOW + 511) == 1 and len(revoked) == 0


# -- hypothesis: any input is a value or our error ------------------------------------


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _outcome(ring: KeyRing, token: Any) -> None:
    try:
        result = verify(ring, token, revoked=RevokedSet())
    except TokenError as exc:
        assert exc.reason in MESSAGES
    else:
        assert isinstance(result, AccessClaims)
    unverified_kid(token)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text(ring: KeyRing, token: str) -> None:
    _outcome(ring, token)


@FUZZ
@given(st.lists(st.text(alphabet="ABCxyz019-_=+/. ", max_size=40), min_size=1, max_size=5))
def test_fuzz_dotted_segments(ring: KeyRing, parts: list[str]) -> None:
    _outcome(ring, ".".join(parts))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "x"]), JSON, max_size=4),
    claims=st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"]),
                           JSON, max_size=9),
    signed=st.booleans(),
)
def test_fuzz_structured_tokens(ring: KeyRing, header: dict, claims: dict, signed: bool) -> None:
    if signed:
        token = forge(ring, header, claims)
    else:
        token = f"{b64json(header)}.{b64json(claims)}.c2ln"
    _outcome(ring, token)


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_token(ring: KeyRing, data: st.DataObject) -> None:
    token, _ = issue_access_token(ring, issuer=ISS, audience=AUD, sub="s", client_id="c", scope=["a"], ttl=60,
                                  now=NOW)
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.characters())
    mutated = token[:index] + char + token[index + 1 :]
    if mutated == token:
        return
    with pytest.raises(TokenError):
        verify(ring, mutated)
