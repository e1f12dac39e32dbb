"""Find the line of a key in TOML or JSON text.

``tomllib`` and ``json`` return plain dicts without positions, but an
operator wants ``conf/realtime.toml:12: websocket.max_mesage_bytes`` and
not a hunt through the file.  So after a file has parsed, a small scanner
walks the same text once and records the first line of every key path,
array element and ``[[array]]`` table.

A key path is a tuple of keys and 0-based array indices, as it would be
written to reach the value in the parsed data: ``("websocket",
"max_message_bytes")``, ``("channel", 1, "pattern")``, ``("users", 0,
"name")``.  :meth:`KeyIndex.line_of` falls back to the nearest recorded
ancestor, so a missing key is reported at its table's header.

The scanners only run on text the real parser accepted; on anything they
do not understand they stop and keep what they recorded so far (a line
number is a help, never a reason to fail).
"""

from __future__ import annotations

import json
import re
import tomllib

KeyPath = tuple[str | int, ...]


class _Stop(Exception):
    """The scanner met text it does not handle; keep the partial index."""


class KeyIndex:
    """First line (1-based) of each key path in one file."""

    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        # (path, first line, duplicate's line) of keys repeated in one JSON object.
        self.duplicates: list[tuple[KeyPath, int, int]] = []

    def record(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest recorded ancestor."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


class _Scanner:
    """Shared cursor over text with line counting."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.index = KeyIndex()

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def advance(self, n: int) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def expect(self, token: str) -> None:
        if not self.s.startswith(token, self.i):
            raise _Stop
        self.advance(len(token))

    def skip(self, newlines: bool, comments: str | None) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance(1)
            elif comments is not None and c == comments:
                end = self.s.find("\n", self.i)
                self.advance((len(self.s) if end < 0 else end) - self.i)
            else:
                return

    def quoted(self, escapes: bool) -> str:
        """Consume a one-line quoted string; return its raw inner text."""
        quote = self.s[self.i]
        j = self.i + 1
        while j < len(self.s):
            c = self.s[j]
            if escapes and c == "\\":
                j += 2
                continue
            if c == quote:
                raw = self.s[self.i + 1 : j]
                self.advance(j + 1 - self.i)
                return raw
            if c == "\n":
                break
            j += 1
        raise _Stop


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _TomlScanner(_Scanner):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.arrays: dict[KeyPath, int] = {}  # [[x]] tables seen so far per path

    def run(self) -> None:
        current: KeyPath = ()
        while True:
            self.skip(newlines=True, comments="#")
            if self.i >= len(self.s):
                return
            start = self.i
            if self.peek() == "[":
                is_array = self.peek(2) == "[["
                self.advance(2 if is_array else 1)
                line = self.line
                current = self.header(self.key(), is_array, line)
                self.skip(newlines=False, comments=None)
                self.expect("]]" if is_array else "]")
            else:
                line = self.line
                parts = self.key()
                self.record_dotted(current, parts, line)
                self.skip(newlines=False, comments=None)
                self.expect("=")
                self.value(current + parts)
            if self.i == start:
                raise _Stop

    def header(self, parts: KeyPath, is_array: bool, line: int) -> KeyPath:
        """Resolve a table header to a key path, indexing arrays of tables."""
        path: KeyPath = ()
        for n, part in enumerate(parts):
            path += (part,)
            if is_array and n == len(parts) - 1:
                count = self.arrays.get(path, 0)
                self.arrays[path] = count + 1
                self.index.record(path, line)
                path += (count,)
            elif path in self.arrays:
                path += (self.arrays[path] - 1,)
            self.index.record(path, line)
        return path

    def record_dotted(self, base: KeyPath, parts: KeyPath, line: int) -> None:
        for n in range(1, len(parts) + 1):
            self.index.record(base + parts[:n], line)

    def key(self) -> KeyPath:
        parts: list[str | int] = []
        while True:
            self.skip(newlines=False, comments=None)
            c = self.peek()
            if c == '"':
                raw = self.quoted(escapes=True)
                try:
                    parts.append(tomllib.loads(f'k = "{raw}"')["k"])
                except tomllib.TOMLDecodeError:
                    parts.append(raw)
            elif c == "'":
                parts.append(self.quoted(escapes=False))
            else:
                match = _BARE_KEY.match(self.s, self.i)
                if match is None:
                    raise _Stop
                parts.append(match.group())
                self.advance(match.end() - self.i)
            self.skip(newlines=False, comments=None)
            if self.peek() != ".":
                return tuple(parts)
            self.advance(1)

    def value(self, path: KeyPath) -> None:
        self.skip(newlines=False, comments=None)
        c = self.peek()
        if self.peek(3) in ('"""', "'''"):
            delim = self.peek(3)
            end = self.s.find(delim, self.i + 3)
            if end < 0:
                raise _Stop
            end += 3
            for _ in range(2):  # up to two quotes may sit just before the closing delimiter
                if self.s.startswith(delim[0], end):
                    end += 1
            self.advance(end - self.i)
        elif c in ('"', "'"):
            self.quoted(escapes=c == '"')
        elif c == "[":
            self.advance(1)
            n = 0
            while True:
                self.skip(newlines=True, comments="#")
                if self.peek() in ("]", ""):
                    self.expect("]")
                    return
                self.index.record(path + (n,), self.line)
                self.value(path + (n,))
                n += 1
                self.skip(newlines=True, comments="#")
                if self.peek() == ",":
                    self.advance(1)
        elif c == "{":
            self.advance(1)
            while True:
                self.skip(newlines=True, comments="#")
                if self.peek() in ("}", ""):
                    self.expect("}")
                    return
                line = self.line
                parts = self.key()
                self.record_dotted(path, parts, line)
                self.skip(newlines=False, comments=None)
                self.expect("=")
                self.value(path + parts)
                self.skip(newlines=True, comments="#")
                if self.peek() == ",":
                    self.advance(1)
        else:
            match = re.compile(r"[^,\]}\n#]+").match(self.s, self.i)
            if match is None:
                raise _Stop
            self.advance(match.end() - self.i)


class _JsonScanner(_Scanner):
    def value(self, path: KeyPath) -> None:
        self.skip(newlines=True, comments=None)
        self.index.record(path, self.line)
        c = self.peek()
        if c == "{":
            self.advance(1)
            seen: dict[str, int] = {}
            while True:
                self.skip(newlines=True, comments=None)
                if self.peek() in ("}", ""):
                    self.expect("}")
                    return
                line = self.line
                if self.peek() != '"':
                    raise _Stop
                key = json.loads('"' + self.quoted(escapes=True) + '"')
                if key in seen:
                    self.index.duplicates.append((path + (key,), seen[key], line))
                else:
                    seen[key] = line
                self.index.record(path + (key,), line)
                self.skip(newlines=True, comments=None)
                self.expect(":")
                self.value(path + (key,))
                self.skip(newlines=True, comments=None)
                if self.peek() == ",":
                    self.advance(1)
        elif c == "[":
            self.advance(1)
            n = 0
            while True:
                self.skip(newlines=True, comments=None)
                if self.peek() in ("]", ""):
                    self.expect("]")
                    return
                self.value(path + (n,))
                n += 1
                self.skip(newlines=True, comments=None)
                if self.peek() == ",":
                    self.advance(1)
        elif c == '"':
            self.quoted(escapes=True)
        else:
            match = re.compile(r"[^,\]}\s]+").match(self.s, self.i)
            if match is None:
                raise _Stop
            self.advance(match.end() - self.i)


def index_toml(text: str) -> KeyIndex:
    """Index the key lines of TOML text that ``tomllib`` has accepted."""
    scanner = _TomlScanner(text)
    try:
        scanner.run()
    except (_Stop, IndexError, ValueError, RecursionError):
        pass
    return scanner.index


def index_json(text: str) -> KeyIndex:
    """Index the key lines (and duplicate keys) of JSON text ``json`` has accepted."""
    scanner = _JsonScanner(text)
    try:
        scanner.value(())
    except (_Stop, IndexError, ValueError, RecursionError):
        pass
    return scanner.index


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


def toml_error_position(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int | None, str]:
    """(line, message without its position suffix) of a TOML syntax error."""
    message = str(exc)
    match = _TOML_AT.search(message)
    if match:
        return int(match.group(1)), f"{message[: match.start()]} (column {match.group(2)})"
    match = _TOML_END.search(message)
    if match:
        return max(1, text.count("\n") + (0 if text.endswith("\n") else 1)), (
            f"{message[: match.start()]} (at end of file)"
        )
    return None, message
