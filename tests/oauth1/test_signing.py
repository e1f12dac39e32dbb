"""The sans-I/O core: parameter rules, timestamp window, methods, URLs."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oauthlib.oauth1 import SIGNATURE_PLAINTEXT, Client

from realtime.http.request import Request
from realtime.oauth1 import signing
from realtime.oauth1.errors import OAuth1Error


def req(method: str, target: str, *headers: tuple[str, str], body: bytes = b"", scheme: str = "http") -> Request:
    return Request(method=method, target=target, headers=tuple((k.lower(), v) for k, v in headers),
                   body=body, scheme=scheme)


def signed_request(url: str = "http://example.test:8080/api/x?a=1&b=two", method: str = "POST",
                   **kw: object) -> Request:
    client = Client("ck", client_secret="cs", resource_owner_key="tok", resource_owner_secret="ts", **kw)
    uri, headers, _ = client.sign(url, http_method=method)
    target = uri.split("example.test:8080", 1)[1]
    return req(method, target, ("Host", "example.test:8080"), ("Authorization", headers["Authorization"]))


def test_parse_and_verify_roundtrip() -> None:
    request = signed_request()
    signed = signing.parse(request)
    assert (signed.consumer_key, signed.token, signed.source) == ("ck", "tok", "header")
    assert ("a", "1") in signed.params and all(k != "oauth_signature" for k, _ in signed.params)
    uris = signing.signed_uris(request, "https://public.example")
    assert uris == ["http://example.test:8080/api/x", "https://public.example/api/x"]
    assert signing.verify(signed, uris, consumer_secret="cs", token_secret="ts", rsa_public_key=None)
    assert not signing.verify(signed, uris, consumer_secret="cs", token_secret="other", rsa_public_key=None)


def test_public_url_is_the_second_candidate() -> None:
    """A proxy in front: the client signed public_url, we saw another Host."""
    client = Client("ck", client_secret="cs")
    _uri, headers, _ = client.sign("https://public.example/api/x", http_method="GET")
    request = req("GET", "/api/x", ("Host", "10.0.0.5:8080"), ("Authorization", headers["Authorization"]))
    signed = signing.parse(request)
    uris = signing.signed_uris(request, "https://public.example/")
    assert signing.verify(signed, uris, consumer_secret="cs", token_secret=None, rsa_public_key=None)
    assert not signing.verify(signed, uris[:1], consumer_secret="cs", token_secret=None, rsa_public_key=None)


def test_timestamp_window() -> None:
    now = time.time()
    for skew, ok in ((0, True), (-300, True), (300, True), (-302, False), (302, False)):
        signed = signing.parse(signed_request(timestamp=str(int(now) + skew)))
        if ok:
            signing.check_timestamp(signed, int(now))
        else:
            with pytest.raises(OAuth1Error) as exc:
                signing.check_timestamp(signed, int(now))
            assert exc.value.problem == "timestamp_refused" and exc.value.status_code == 401


def test_plaintext_needs_https_and_a_secret() -> None:
    signed = signing.parse(signed_request(signature_method=SIGNATURE_PLAINTEXT))
    with pytest.raises(OAuth1Error) as exc:
        signing.check_method(signed, "http", has_secret=True, has_rsa_key=False)
    assert exc.value.problem == "signature_method_rejected" and exc.value.status_code == 400
    assert "HTTPS" in exc.value.advice
    signing.check_method(signed, "https", has_secret=True, has_rsa_key=False)
    with pytest.raises(OAuth1Error):
        signing.check_method(signed, "https", has_secret=False, has_rsa_key=True)


@pytest.mark.parametrize("auth, problem", [
    ('OAuth oauth_consumer_key="a"', "parameter_absent"),
    ('OAuth oauth_consumer_key="a", oauth_consumer_key="b", oauth_signature_method="HMAC-SHA1", '
     'oauth_signature="x", oauth_nonce="n", oauth_timestamp="1"', "parameter_rejected"),
    ('OAuth oauth_consumer_key="a", oauth_signature_method="HMAC-SHA1", oauth_signature="x", '
     'oauth_nonce="n", oauth_timestamp="-5"', "parameter_rejected"),
    ('OAuth oauth_consumer_key="a", oauth_signature_method="HMAC-SHA1", oauth_signature="x", '
     'oauth_nonce="n", oauth_timestamp="1", oauth_version="1.1"', "version_rejected"),
    ("OAuth ", "parameter_absent"),
])
def test_parse_errors(auth: str, problem: str) -> None:
    with pytest.raises(OAuth1Error) as exc:
        signing.parse(req("POST", "/x", ("Authorization", auth)))
    assert exc.value.problem == problem and exc.value.status_code == 400


def test_plaintext_may_omit_nonce_and_timestamp() -> None:
    auth = 'OAuth oauth_consumer_key="a", oauth_signature_method="PLAINTEXT", oauth_signature="s%26"'
    signed = signing.parse(req("POST", "/x", ("Authorization", auth)))
    assert signed.nonce is None and signed.timestamp is None


def test_is_signed() -> None:
    assert signing.is_signed(req("GET", "/ws", ("Authorization", "OAuth oauth_consumer_key=\"a\"")))
    assert not signing.is_signed(req("GET", "/ws", ("Authorization", "Bearer x")))
    assert signing.is_signed(req("GET", "/ws?oauth_signature=x"))
    assert not signing.is_signed(req("GET", "/ws?access_token=x"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.binary(max_size=200), st.text(max_size=100))
def test_any_input_parses_or_raises_ours(auth: str, body: bytes, query: str) -> None:
    request = req("POST", "/x?" + query.replace("#", ""), ("Authorization", "OAuth " + auth),
                  ("Content-Type", "application/x-www-form-urlencoded"), body=body)
    try:
        signed = signing.parse(request)
    except OAuth1Error as exc:
        assert exc.status_code in (400, 401)
        return
    assert signed.consumer_key
