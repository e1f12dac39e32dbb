"""Durations, addresses and rates: a value or ValueError, never anything else."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from realtime.config.settings import Addr
from realtime.config.units import MAX_DURATION, format_duration, parse_addr, parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("30d", 30 * 86400),
        ("500ms", 0.5),
        ("0", 0),
        ("0s", 0),
        ("90", 90),
        (" 2m ", 120),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4.005),
        ("1.5h", 5400),
        ("0.25s", 0.25),
        ("2.5", 2.5),
        (90, 90),
        (0, 0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "negative"),
        ("-5", "negative"),
        (-1, "negative"),
        ("5x", "bad duration"),
        ("15M", "bad duration"),
        ("1e3", "bad duration"),
        ("1h30", "bad duration"),
        ("1m1h", "larger to smaller"),
        ("1s1s", "larger to smaller"),
        ("s", "bad duration"),
        (".5s", "bad duration"),
        ("5.s", "bad duration"),
        ("inf", "bad duration"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (True, "boolean"),
        (False, "boolean"),
        (None, "expected a duration"),
        ([1], "expected a duration"),
        ("36501d", "too long"),
        (MAX_DURATION + 1, "too long"),
        ("9" * 100, "too long"),
        ("١٢s", "bad duration"),  # Arabic-Indic digits are not ASCII digits
    ],
)
def test_parse_duration_refuses(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)  # type: ignore[arg-type]


@given(st.text())
@example("1h" * 40)
@example("9" * 5000)
@example("0." + "0" * 60 + "1s")
def test_parse_duration_any_text(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert 0 <= seconds <= MAX_DURATION


@given(st.integers(min_value=0, max_value=MAX_DURATION))
def test_integer_seconds(n: int) -> None:
    assert parse_duration(n) == n
    assert parse_duration(str(n)) == n


@given(st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False))
@example(1e-05)
@example(0.1)
@example(86400.1)
@example(5e-324)
def test_format_duration_round_trips(seconds: float) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert "e" not in text.rstrip("s")  # no exponents: the parser does not read them


@given(st.integers(min_value=0, max_value=MAX_DURATION))
def test_format_duration_round_trips_integers(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (900, "15m"), (3600, "1h"), (5400, "1h30m"),
     (30 * 86400, "30d"), (86400 + 1, "1d1s"), (0.5, "0.5s"), (1e-5, "0.00001s"), (2.0, "2s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), MAX_DURATION * 2, True, "1s"])
def test_format_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("127.0.0.1:8080", Addr("127.0.0.1", 8080)),
        ("0.0.0.0:80", Addr("0.0.0.0", 80)),
        ("localhost:0", Addr("localhost", 0)),
        ("example.com:65535", Addr("example.com", 65535)),
        ("[::1]:8443", Addr("::1", 8443)),
        ("[::]:443", Addr("::", 443)),
        ("[fe80::1%eth0]:80", Addr("fe80::1%eth0", 80)),
        ("", None),
    ],
)
def test_parse_addr_accepts(text: str, addr: Addr | None) -> None:
    assert parse_addr(text) == addr
    if addr is not None:
        assert parse_addr(str(addr)) == addr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1", "missing port"),
        ("8080", "missing port"),
        (":8080", "missing host"),
        ("127.0.0.1:", "port"),
        ("127.0.0.1:65536", "port"),
        ("127.0.0.1:-1", "port"),
        ("127.0.0.1:http", "port"),
        ("127.0.0.1:８０", "port"),  # full-width digits
        ("::1:8080", "brackets"),
        ("[::1]8080", "bad address"),
        ("[::1", "bad address"),
        ("[nope]:80", "not an IPv6"),
        ("[127.0.0.1]:80", "not an IPv6"),
        ("999.0.0.1:80", "not an IPv4"),
        ("1.2.3:80", "not an IPv4"),
        ("bad_host:80", "not a host name"),
        ("-a.com:80", "not a host name"),
        ("a..b:80", "not a host name"),
        ("héllo:80", "not a host name"),
        (" 127.0.0.1:80", "not a host name"),
        ("127.0.0.1:80 ", "port"),
    ],
)
def test_parse_addr_refuses(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_addr(text)


@pytest.mark.parametrize("bad", [None, 8080, True, b"127.0.0.1:80"])
def test_parse_addr_refuses_non_text(bad: object) -> None:
    with pytest.raises(ValueError, match="expected an address"):
        parse_addr(bad)  # type: ignore[arg-type]


@given(st.text())
@example("[")
@example("[]:")
@example("[::1]:")
@example("a:" + "9" * 10)
def test_parse_addr_any_text(text: str) -> None:
    try:
        addr = parse_addr(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert addr is None or (0 <= addr.port <= 65535 and addr.host)


@given(st.ip_addresses(), st.integers(0, 65535))
def test_parse_addr_round_trips_ips(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    addr = Addr(str(ip), port)
    assert parse_addr(str(addr)) == addr


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("50/s", 50.0, 50),
        ("10/m", 10 / 60, 10),
        ("600/h", 600 / 3600, 600),
        ("24/d", 24 / 86400, 24),
        ("100/10s", 10.0, 100),
        ("5/500ms", 10.0, 5),
        (" 3 / m ", 3 / 60, 3),
    ],
)
def test_parse_rate(text: str, rate: float, burst: int) -> None:
    got_rate, got_burst = parse_rate(text)
    assert got_rate == pytest.approx(rate)
    assert got_burst == burst


@pytest.mark.parametrize(
    "text", ["", "50", "50/", "/s", "0/s", "-1/s", "1.5/s", "50/x", "50/0s", "50/ms", "x/s", "50/s/s", "10" * 10 + "/s"]
)
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


@given(st.text())
@example("1/" + "9" * 100)
def test_parse_rate_any_text(text: str) -> None:
    try:
        per_second, burst = parse_rate(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert per_second > 0 and burst >= 1
