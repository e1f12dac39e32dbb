"""hypothesis on the sans-I/O cores the live fuzzers sit on: the upgrade
gate and request parsing.  Each input gives a value or our own error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response
from realtime.config.settings import Settings
from realtime.tokens.keyring import KeyRing, RevokedSet, issue_access_token
from realtime.protocol.upgrade import Accept, check_upgrade, find_token, is_upgrade
from tests.helpers.settings import APPS, CHANNELS, USERS

CORE = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                database=None)

latin = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, KeyRing, str]:
    settings_ = Settings(channels=CHANNELS, apps=dict(APPS), users=dict(USERS))
    ring = KeyRing.load_or_create(tmp_path_factory.mktemp("keys"), "ES256")
    token, _ = issue_access_token(ring, issuer=settings_.issuer, audience=settings_.audience, sub="alice",
                                  client_id="chat-app", scope=["chat:read"], ttl=600)
    return settings_, ring, token


NAMES = ["upgrade", "connection", "sec-websocket-version", "sec-websocket-key", "sec-websocket-protocol",
         "authorization", "origin", "host"]


@st.composite
def upgrade_request(draw: st.DrawFn, token: str) -> Request:
    good = {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "authorization": f"Bearer {token}"}
    headers = []
    for name in NAMES:
        choice = draw(st.sampled_from(["good", "good", "drop", "junk", "twice"]))
        if choice in ("good", "twice") and name in good:
            headers.append((name, good[name]))
        if choice in ("junk", "twice"):
            value = draw(st.one_of(latin, st.sampled_from([f"Bearer {token[:-3]}", f"realtime.v1, bearer.{token}",
                                                           "bearer.", "Bearer  ", "13, 13", "AAAAAAAAAAAAAAAAAAAAAA=="])))
            headers.append((name, value))
    method = draw(st.sampled_from(["GET", "GET", "POST", "get", ""]))
    target = draw(st.one_of(st.just("/ws"), latin.map(lambda q: "/ws?" + q)))
    return Request(method=method, target=target, headers=tuple(headers), body=b"", client_host="127.0.0.1",
                   scheme="http")


@CORE
@given(data=st.data())
def test_upgrade_gate_is_total(gate: tuple[Settings, KeyRing, str], data: st.DataObject) -> None:
    settings_, ring, token = gate
    request = data.draw(upgrade_request(token))
    is_upgrade(request)
    find_token(request, settings_)
    result = check_upgrade(request, settings_, ring, RevokedSet(), allows_any_channel=lambda scopes: True)
    if isinstance(result, Accept):
        assert result.claims.sub == "alice"
        assert all(token not in v for _, v in result.headers)  # never echo the token
    else:
        assert isinstance(result, Response) and result.status in {400, 401, 403, 405, 426}
        body = json.loads(result.body)
        assert body["error"] and token not in result.body.decode()


@CORE
@given(target=latin, body=st.binary(max_size=200), ctype=st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
     "", "text/plain", "application/json; charset=utf-16"]), cookie=latin)
def test_request_parsing_is_total(target: str, body: bytes, ctype: str, cookie: str) -> None:
    request = Request(method="POST", target="/" + target, headers=(("content-type", ctype), ("cookie", cookie)),
                      body=body, client_host="127.0.0.1", scheme="https")
    request.path
    request.query
    request.cookies()
    for parse in (request.form, request.json):
        try:
            parse()
        except BadRequest:
            pass
