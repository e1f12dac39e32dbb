"""The parsed HTTP request handed to route handlers (no I/O)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs


class BadRequest(Exception):
    """The request body or query cannot be read; becomes a 400."""


def split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of a request target.

    An origin-form target (RFC 9112 §3.2.1, the usual ``/path?query``) is
    split at ``?`` by hand: ``urlsplit`` would read ``//host/x`` as a host
    and raise on ``//[``.  Any other form goes through ``urlsplit``; one it
    cannot read keeps its raw text as the path, which no route matches.
    """
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query
    try:
        parts = urlsplit(target)
    except ValueError:
        return target, ""
    return parts.path or "/", parts.query


@attrs.frozen
class Request:
    method: str
    target: str  # raw request target, e.g. "/oauth2/authorize?client_id=x"
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in arrival order
    body: bytes = b""
    client_host: str = ""
    scheme: str = "http"  # "http" or "https": which listener it came in on
    # A trusted TLS-terminating proxy forwarded it with X-Forwarded-Proto:
    # https (set by realtime.http.transport_security.behind_tls_proxy).
    via_tls_proxy: bool = False

    @property
    def effective_scheme(self) -> str:
        """``https`` when the browser used TLS: the HTTPS listener, or a
        trusted proxy that terminated it; else the listener's scheme."""
        return "https" if self.via_tls_proxy else self.scheme

    @property
    def path(self) -> str:
        return split_target(self.target)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(split_target(self.target)[1], keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    @property
    def content_type(self) -> str:
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    def form(self, max_fields: int | None = None) -> dict[str, list[str]]:
        """The body as application/x-www-form-urlencoded.

        Raises BadRequest when the content type is something else, the
        body is not valid UTF-8, or it has more than ``max_fields`` fields.
        """
        if self.content_type != "application/x-www-form-urlencoded":
            raise BadRequest("expected an application/x-www-form-urlencoded body")
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8") from None
        try:
            return parse_qs(text, keep_blank_values=True, max_num_fields=max_fields)
        except ValueError:
            raise BadRequest("too many parameters") from None

    def json(self) -> Any:
        if self.content_type != "application/json":
            raise BadRequest("expected application/json")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not valid JSON") from None
        except RecursionError:
            # json's C parser recurses per nesting level; a body of a few
            # thousand brackets is bad input, not a server error.
            raise BadRequest("body is nested too deeply") from None

    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for value in self.header_values("cookie"):
            for part in value.split(";"):
                name, sep, val = part.strip().partition("=")
                if sep and name not in jar:
                    jar[name] = val
        return jar
