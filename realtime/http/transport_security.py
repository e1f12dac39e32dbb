"""HTTPS rules that do not depend on a socket.

- **Effective scheme**: a request is taken as HTTPS when it came in on the
  HTTPS listener, or on the plain listener from a peer in ``[server]
  tls_termination_from`` that sends ``X-Forwarded-Proto: https`` (a proxy
  that terminated TLS).  The header is believed only from those peers:
  anyone else could send it.  Cookies (``__Host-`` names, ``Secure``), the
  CSRF binding cookie and HSTS follow the effective scheme.
- **HSTS** (RFC 6797): every answer on the HTTPS listener (or through a
  trusted TLS-terminating proxy) carries
  ``Strict-Transport-Security: max-age=N`` (``[server] hsts_max_age``),
  except when ``public_url`` names a loopback host: a browser keeps HSTS per
  host name, not per port, so HSTS for ``localhost`` would force HTTPS on
  every other development server the developer runs on ``localhost``.
- **TLS for OAuth**: when ``public_url`` is https, passwords, client
  secrets, codes and session cookies must not travel in clear (RFC 6749
  §3.1, §3.2: "MUST require the use of TLS").  A plain-HTTP request to the
  OAuth endpoints and pages from a peer outside ``[server]
  tls_termination_from`` is refused: GET and HEAD are redirected (308) to
  the same path on ``public_url``; other methods get 400 ``invalid_request``
  (RFC 6749 §5.2's shape and status for a request the server will not
  process, which OAuth client libraries show to the developer; a redirect
  would make a client re-send the secret it already sent in clear).
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

import attrs

from realtime.config.settings import ServerSettings
from realtime.http.request import Request
from realtime.http.responses import Response, error_response, redirect

#: Paths that take or set secrets: the OAuth 2 and 1.0a endpoints, the
#: login and consent pages they serve, and the account and device pages.
TLS_ONLY_PREFIXES = ("/oauth2/", "/oauth1/", "/account", "/device")


def is_loopback_host(host: str) -> bool:
    """``localhost``, a ``*.localhost`` name (RFC 6761 §6.3), 127.0.0.0/8 or ::1."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=8)
def _hsts(public_url: str, max_age: float) -> tuple[tuple[str, str], ...]:
    host = urlsplit(public_url).hostname or ""
    if max_age <= 0 or is_loopback_host(host):
        return ()
    return (("strict-transport-security", f"max-age={int(max_age)}"),)


def hsts_headers(server: ServerSettings) -> tuple[tuple[str, str], ...]:
    """The HSTS header for an answer over TLS (the HTTPS listener, or a
    trusted TLS-terminating proxy), or none."""
    return _hsts(server.public_url, server.hsts_max_age)


def needs_tls(path: str) -> bool:
    return path.startswith(TLS_ONLY_PREFIXES) or path.rstrip("/") in ("/oauth2", "/oauth1")


@functools.lru_cache(maxsize=8)
def _networks(blocks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(block) for block in blocks)


def trusted_as_tls(address: str, server: ServerSettings) -> bool:
    """Whether a plain-HTTP peer is a TLS-terminating proxy (or local use)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(server.tls_termination_from))


def behind_tls_proxy(request: Request, server: ServerSettings) -> Request:
    """``request``, marked as having come through TLS when it came in on
    the plain listener from a trusted TLS-terminating peer that says
    ``X-Forwarded-Proto: https``; an untrusted peer's header is ignored."""
    if request.scheme != "http" or request.via_tls_proxy:
        return request
    proto = request.header_values("x-forwarded-proto")
    # One proxy, one value; a list ("https, http") comes from a chain whose
    # first hop the server cannot vouch for.
    if len(proto) != 1 or proto[0].strip().lower() != "https":
        return request
    if not trusted_as_tls(request.client_host, server):
        return request
    return attrs.evolve(request, via_tls_proxy=True)


def refuse_plain_http(request: Request, server: ServerSettings) -> Response | None:
    """The answer to an OAuth request that came over plain HTTP from a peer
    not trusted to terminate TLS, when ``public_url`` is https; else None."""
    if request.scheme != "http" or not needs_tls(request.path):
        return None
    if urlsplit(server.public_url).scheme != "https" or trusted_as_tls(request.client_host, server):
        return None
    base = server.public_url.rstrip("/")
    if request.method in ("GET", "HEAD"):
        query = urlsplit(request.target).query
        return redirect(base + request.path + (f"?{query}" if query else ""), status=308)
    return error_response(400, "invalid_request", f"TLS is required; use {base}")
