"""The admin console at ``/admin/`` (``[admin] enabled = true``; SPEC §11).

One page of plain HTML, CSS and JavaScript from ``static/``, no build
step, nothing fetched from elsewhere (a strict CSP says so to the
browser).  The page signs in with the authorization code grant and PKCE
S256 as the public app ``[admin] client_id`` asking for
``realtime:admin``, then reads the server API (``/api/info``,
``/api/connections``, ``/api/channels``) and ``/metrics`` every two
seconds, draws the publish and delivery rates in a canvas, and offers
disconnect and revoke buttons that ask for confirmation first.

The server side is a file server: the app's ``client_id`` reaches the
page as a ``data-`` attribute of its ``<body>``, so no inline script is
needed.  When the console is off every path answers 404.
"""

from __future__ import annotations

import html

from realtime.api.app import App
from realtime.api.static_files import read_static, static_headers
from realtime.http.request import Request
from realtime.http.responses import Response, error_response, redirect
from realtime.http.router import Router

__all__ = ["CSP", "register"]

FILES: dict[str, tuple[str, str]] = {
    "/admin/": ("admin.html", "text/html; charset=utf-8"),
    "/admin/callback": ("admin.html", "text/html; charset=utf-8"),
    "/admin/app.js": ("admin.js", "text/javascript; charset=utf-8"),
    "/admin/style.css": ("admin.css", "text/css; charset=utf-8"),
}

# Same origin only, no inline code, no frames; the chart is a <canvas>.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

async def serve_file(request: Request, state: App) -> Response:
    admin = state.settings.admin
    if not admin.enabled:
        return error_response(404, "not_found", "no such endpoint")
    name, content_type = FILES[request.path]
    body = read_static(name)
    if content_type.startswith("text/html"):
        body = body.replace(b"{{client_id}}", html.escape(admin.client_id, quote=True).encode())
    headers = static_headers(content_type, CSP, (("x-frame-options", "DENY"), ("referrer-policy", "no-referrer")))
    return Response(200, headers + (("x-content-type-options", "nosniff"),), body)


async def bare(request: Request, state: App) -> Response:
    if not state.settings.admin.enabled:
        return error_response(404, "not_found", "no such endpoint")
    return redirect("/admin/", 302)


def register(router: Router) -> None:
    for path in FILES:
        router.add("GET", path, serve_file)
    router.add("GET", "/admin", bare)
