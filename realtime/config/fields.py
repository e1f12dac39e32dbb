"""The pieces every config file reader shares: issues, files, field checks.

A reader never stops at the first problem: each one becomes a
:class:`ConfigIssue` in a list, and the caller raises one
:class:`ConfigError` with all of them at the end, so that ``realtime
check`` shows an operator everything to fix in one run.

A field check ("converter") is a function from the parsed TOML/JSON
value to the settings value that raises :class:`ValueError` with an
operator-facing message ("expected an integer, got string").
:func:`read_table` applies a dict of them to a table and reports unknown
keys with the nearest valid one, as hypercorn's ``Config.from_mapping``
does not (STYLE.md, "Unchecked keys").
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from realtime.config.locate import KeyIndex, KeyPath, index_json, index_toml, toml_error_position
from realtime.config.settings import Addr
from realtime.config.units import parse_addr, parse_duration, parse_rate

Converter = Callable[[Any], Any]


@attrs.frozen
class ConfigIssue:
    """One problem in one file; ``str()`` is the line ``realtime check`` prints."""

    file: Path
    line: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.line is None else f"{self.file}:{self.line}"
        if self.key:
            where = f"{where}: {self.key}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A configuration that must not be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


def key_name(path: KeyPath) -> str | None:
    """``("channel", 1, "pattern")`` -> ``channel[2].pattern`` (1-based, as people count)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


class Source:
    """One file being read: where its issues go and how to find their lines."""

    def __init__(self, file: Path, issues: list[ConfigIssue], index: KeyIndex | None = None) -> None:
        self.file = file
        self.issues = issues
        self.index = index or KeyIndex()

    def line(self, path: KeyPath) -> int | None:
        return self.index.line_of(path)

    def error(self, path: KeyPath, message: str, *, line: int | None = None) -> None:
        self.issues.append(
            ConfigIssue(self.file, line if line is not None else self.line(path), key_name(path), message)
        )

    def whole_file(self, message: str, line: int | None = None) -> None:
        self.issues.append(ConfigIssue(self.file, line, None, message))


def read_text(file: Path, issues: list[ConfigIssue]) -> str | None:
    """The file's text, or None after reporting why it cannot be read."""
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        issues.append(ConfigIssue(file, None, None, "file not found"))
        return None
    except IsADirectoryError:
        issues.append(ConfigIssue(file, None, None, "is a directory, expected a file"))
        return None
    except OSError as exc:
        issues.append(ConfigIssue(file, None, None, f"cannot read: {exc.strerror or exc}"))
        return None
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
        issues.append(ConfigIssue(file, line, None, "not valid UTF-8"))
        return None
    return text.removeprefix("\ufeff")


def parse_toml(file: Path, issues: list[ConfigIssue]) -> tuple[dict[str, Any], Source] | None:
    """Read and parse a TOML file; None after reporting a read or syntax error."""
    text = read_text(file, issues)
    if text is None:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = toml_error_position(exc, text)
        issues.append(ConfigIssue(file, line, None, f"TOML syntax error: {message}"))
        return None
    return data, Source(file, issues, index_toml(text))


def parse_json(file: Path, issues: list[ConfigIssue]) -> tuple[Any, Source] | None:
    """Read and parse a JSON file; None after reporting a read or syntax error.

    Keys repeated within one object are reported too: ``json`` silently
    keeps the last, which hides a typo'd edit.
    """
    text = read_text(file, issues)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        issues.append(ConfigIssue(file, exc.lineno, None, f"JSON syntax error: {exc.msg} (column {exc.colno})"))
        return None
    except RecursionError:
        issues.append(ConfigIssue(file, None, None, "JSON syntax error: nested too deeply"))
        return None
    source = Source(file, issues, index_json(text))
    for path, first, again in source.index.duplicates:
        source.error(path, f"duplicate key (lines {first} and {again})", line=again)
    return data, source


# -- converters -------------------------------------------------------------

_TYPE_NAMES: dict[type, str] = {
    str: "string", bool: "boolean", int: "integer", float: "float", list: "array",
    dict: "table", datetime.datetime: "datetime", datetime.date: "date",
    datetime.time: "time", type(None): "null",
}


def type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def wrong_type(expected: str, value: Any) -> ValueError:
    return ValueError(f"expected {expected}, got {type_name(value)}")


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise wrong_type("a string", value)
    return value


def nonempty(value: Any) -> str:
    if not string(value).strip():
        raise ValueError("must not be empty")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise wrong_type("true or false", value)
    return value


def integer(minimum: int | None = None, maximum: int | None = None) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type("an integer", value)
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return convert


def duration(positive: bool = False) -> Converter:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise wrong_type('a duration ("90s", "15m", "1h", "30d" or integer seconds)', value)
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError("must be longer than zero")
        return seconds

    return convert


def address(value: Any) -> Addr | None:
    return parse_addr(string(value))


def rate(value: Any) -> str:
    """Checked with parse_rate, kept as written: the consumer parses it again."""
    parse_rate(string(value))
    return value


def choice(*options: str) -> Converter:
    def convert(value: Any) -> str:
        if string(value) not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value

    return convert


def url_path(value: Any) -> str:
    if not string(value).startswith("/") or any(c in value for c in "?# \t\r\n"):
        raise ValueError(f"must be a URL path starting with '/', got {value!r}")
    return value


def file_path(base: Path) -> Converter:
    """A path from the file; relative ones are relative to ``base`` (the file's directory)."""

    def convert(value: Any) -> Path:
        if not nonempty(value):
            raise ValueError("must not be empty")
        return base / Path(value).expanduser()

    return convert


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def scope(value: Any) -> str:
    if not _SCOPE_TOKEN.fullmatch(string(value)):
        raise ValueError(f"{value!r} is not a scope (RFC 6749 §3.3: printable ASCII, no space, '\"' or '\\')")
    return value


def array(item: Converter) -> Converter:
    """A list whose items pass ``item``; becomes a tuple (snapshots are frozen)."""

    def convert(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise wrong_type("an array", value)
        out, errors = [], []
        for n, element in enumerate(value, 1):
            try:
                out.append(item(element))
            except ValueError as exc:
                errors.append(f"item {n}: {exc}")
        if errors:
            raise ValueError("; ".join(errors))
        return tuple(out)

    return convert


def optional(convert: Converter) -> Converter:
    """JSON ``null`` means "not set"."""

    def convert_optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return convert_optional


def read_table(
    source: Source,
    data: Any,
    path: KeyPath,
    fields: dict[str, Converter],
    required: Iterable[str] = (),
) -> dict[str, Any] | None:
    """Check one table against ``fields``; return the converted known keys.

    Unknown keys, bad values and missing required keys are reported to
    ``source``; the returned dict holds only the keys that passed, so the
    caller can still build a snapshot (and look for more issues) from it.
    """
    if not isinstance(data, dict):
        source.error(path, f"expected a table, got {type_name(data)}")
        return None
    out: dict[str, Any] = {}
    for key, value in data.items():
        convert = fields.get(key)
        if convert is None:
            source.error(path + (key,), unknown_key(key, fields))
            continue
        try:
            out[key] = convert(value)
        except ValueError as exc:
            source.error(path + (key,), str(exc))
    for key in required:
        if key not in data:
            source.error(path + (key,), "missing required key")
    return out


def unknown_key(key: str, valid: Iterable[str]) -> str:
    """"unknown key (did you mean 'x'?)", else the list of valid keys."""
    names = sorted(valid)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (valid keys: {', '.join(names)})"
