"""Parsers for the small value languages of config files and flags.

Durations (``90s``, ``15m``, ``1h30m``, ``30d``, ``500ms``, integer
seconds), listener addresses (``HOST:PORT``, ``[::1]:PORT``, ``''`` for
off) and rates (``50/s``, ``10/m``, ``100/10s``).  Each parser returns a
plain value or raises :class:`ValueError` whose text is fit to show an
operator as is; nothing else escapes, whatever the input (the tests feed
them arbitrary text with hypothesis).

Grammar of a duration (SPEC §1 plus a few conveniences):

* a non-negative integer: seconds (``90``, ``"90"``);
* a float value (TOML ``2.5``): seconds;
* one or more ``NUMBER UNIT`` parts, units ``d h m s ms`` each at most
  once and from larger to smaller (``1h30m``, ``1m 30s``); ``NUMBER`` may
  have a decimal fraction (``1.5h``, ``0.25s``).  Units are lower case:
  ``15M`` is refused rather than guessed as months or minutes.

Negative, empty, ``inf``/``nan``, booleans and anything over
:data:`MAX_DURATION` (100 years) are refused: a TTL of ``1e400`` would
otherwise become ``inf`` and break every deadline computed from it.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from decimal import Decimal
from fractions import Fraction

from realtime.config.settings import Addr

#: Longest duration accepted anywhere (100 years, in seconds).
MAX_DURATION = 36500 * 86400

UNITS: dict[str, int | Fraction] = {
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
    "ms": Fraction(1, 1000),
}
_UNIT_ORDER = ["d", "h", "m", "s", "ms"]
# ASCII digits only: `\d` would also accept e.g. Arabic-Indic digits.
_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|d|h|m|s)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DURATION_HINT = 'use e.g. "90s", "15m", "1h", "30d", "500ms" or integer seconds'


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``, a duration as written in config or on a flag.

    Args:
        value: integer seconds, a float (seconds), or text in the grammar
            of the module docstring.

    Returns:
        The duration in float seconds, ``0 <= result <= MAX_DURATION``.

    Raises:
        ValueError: anything else, with a message naming the problem.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got a boolean ({_DURATION_HINT})")
    if isinstance(value, int):
        return _checked(Fraction(value), str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"duration must be finite, got {value!r}")
        return _checked(Fraction(value), repr(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {type(value).__name__} ({_DURATION_HINT})")
    text = value.strip()
    if not text:
        raise ValueError(f"empty duration ({_DURATION_HINT})")
    if text.startswith("-"):
        raise ValueError(f"duration must not be negative: {value!r}")
    if len(text) > 400:  # room for any float format_duration writes, e.g. 5e-324
        raise ValueError(f"duration text is too long: {value[:20]!r}...")
    if _NUMBER.fullmatch(text):
        return _checked(Fraction(text), value)
    total = Fraction(0)
    pos = 0
    last_rank = -1
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
        number, unit = match.groups()
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise ValueError(
                f"bad duration {value!r}: units must go from larger to smaller, each once"
            )
        last_rank = rank
        total += Fraction(number) * UNITS[unit]
        pos = match.end()
    return _checked(total, value)


def _checked(total: Fraction, shown: str) -> float:
    if total < 0:
        raise ValueError(f"duration must not be negative: {shown!r}")
    if total > MAX_DURATION:
        raise ValueError(f"duration {shown!r} is too long (at most 36500d)")
    return float(total)


def format_duration(seconds: float) -> str:
    """The shortest text that :func:`parse_duration` reads back exactly.

    Whole seconds are written in ``d h m s`` parts (``5400`` -> ``1h30m``,
    ``0`` -> ``0s``); fractions as decimal seconds (``0.5`` -> ``0.5s``).
    Used in log lines and by operator commands that write durations.

    Raises:
        ValueError: ``seconds`` is negative, not finite or over MAX_DURATION.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"expected seconds as a number, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds != int(seconds):
        # repr is the shortest round-tripping form; Decimal drops any exponent.
        return format(Decimal(repr(float(seconds))), "f") + "s"
    rest = int(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(UNITS[unit])
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_addr(value: str) -> Addr | None:
    """A listener address: ``HOST:PORT``, ``[IPV6]:PORT``, or ``''`` for off.

    The host is an IPv4 address, a bracketed IPv6 address or a DNS name;
    the port is 0..65535 (0: the OS picks a free one and the server logs
    it).  ``str(addr)`` gives back text this function accepts.

    Raises:
        ValueError: anything else, e.g. an unbracketed IPv6 address or a
            missing port.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an address HOST:PORT, got {type(value).__name__}")
    if value == "":
        return None
    hint = 'expected HOST:PORT, e.g. "127.0.0.1:8080" or "[::1]:8080"; "" turns the listener off'
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or not value.startswith(":", close + 1):
            raise ValueError(f"bad address {value!r}: {hint}")
        host, port_text = value[1:close], value[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad address {value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {value!r}: missing port ({hint})")
        if ":" in host:
            raise ValueError(f"bad address {value!r}: write IPv6 addresses in brackets, [::1]:8080")
        if not host:
            raise ValueError(f"bad address {value!r}: missing host (0.0.0.0:PORT listens on all)")
        _check_host(host, value)
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
        raise ValueError(f"bad address {value!r}: port must be a number from 0 to 65535")
    return Addr(host, int(port_text))


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _check_host(host: str, value: str) -> None:
    """An IPv4 address or an ASCII DNS name (RFC 1123 labels)."""
    labels = host.split(".")
    if all(label.isascii() and label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"bad address {value!r}: {host!r} is not an IPv4 address") from None
        return
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"bad address {value!r}: {host!r} is not a host name or IP address")


_RATE = re.compile(r"\s*([0-9]+)\s*/\s*(.+?)\s*")
MAX_RATE_COUNT = 10**9


@functools.lru_cache(maxsize=64)  # parsed once per connection otherwise
def parse_rate(value: str) -> tuple[float, int]:
    """A token-bucket rate ``COUNT/PERIOD``: ``50/s``, ``10/m``, ``600/h``.

    ``PERIOD`` is a unit (``s m h d``) or any duration (``100/10s``).

    Returns:
        ``(per_second, burst)``: the refill rate in tokens per second and
        the bucket size, which is ``COUNT``: a client may spend a whole
        period's allowance at once, then waits for the refill.

    Raises:
        ValueError: not that shape, a zero count or a zero period.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a rate like \"50/s\", got {type(value).__name__}")
    match = _RATE.fullmatch(value)
    if match is None:
        raise ValueError(f'bad rate {value!r}: expected COUNT/PERIOD, e.g. "50/s", "10/m", "600/h"')
    count_text, period_text = match.groups()
    count = int(count_text)
    if not 1 <= count <= MAX_RATE_COUNT:
        raise ValueError(f"bad rate {value!r}: count must be from 1 to {MAX_RATE_COUNT}")
    if period_text in UNITS and period_text != "ms":
        period = float(UNITS[period_text])
    else:
        try:
            period = parse_duration(period_text)
        except ValueError as exc:
            raise ValueError(f"bad rate {value!r}: period: {exc}") from None
    if period <= 0:
        raise ValueError(f"bad rate {value!r}: period must be longer than zero")
    return count / period, count
