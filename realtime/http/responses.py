"""Response values and the JSON error shape every endpoint shares."""

from __future__ import annotations

import json
from typing import Any

import attrs

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 302: "Found", 303: "See Other", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
    415: "Unsupported Media Type", 426: "Upgrade Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

# Pages and API answers alike must not be framed or leak the URL onward.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)


@attrs.frozen
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def with_headers(self, *extra: tuple[str, str]) -> "Response":
        return attrs.evolve(self, headers=self.headers + tuple(extra))


def json_response(
    status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Response(
        status, (("content-type", "application/json"),) + tuple(headers), body
    )


def error_response(
    status: int,
    error: str,
    description: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """The RFC 6749 §5.2 shaped JSON error used by every endpoint."""
    obj: dict[str, str] = {"error": error}
    if description:
        obj["error_description"] = description
    return json_response(status, obj, headers)


def text_response(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, (("content-type", content_type),), text.encode())


def html_response(status: int, html: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    csp = (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return Response(
        status,
        (("content-type", "text/html; charset=utf-8"), ("content-security-policy", csp),
         ("cache-control", "no-store")) + tuple(headers),
        html.encode(),
    )


def redirect(location: str, status: int = 302, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, (("location", location), ("cache-control", "no-store")) + tuple(headers))


def bearer_challenge(status: int, error: str | None, description: str | None = None, scope: str | None = None) -> Response:
    """RFC 6750 §3: 401 invalid_token / 403 insufficient_scope with WWW-Authenticate."""
    parts = ['Bearer realm="realtime"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if scope:
        parts.append(f'scope="{scope}"')
    challenge = ", ".join(parts)
    return error_response(status, error or "invalid_request", description, (("www-authenticate", challenge),))
