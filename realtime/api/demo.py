"""The browser chat demo at ``/demo/`` (``[demo] enabled = true``).

Fixed files from the package's ``static/`` folder, nothing else: the
page is plain HTML + JS modules with no build step and fetches nothing
from outside.  The JavaScript does the whole OAuth dance itself
(authorization code + PKCE S256 through the real login and consent pages,
refresh grant, in-band ``refresh``), so the server side is only a file
server.

The connection logic is the JavaScript client library, ``clients/js``
(its source of truth, with its own tests and npm package), served from
byte-identical copies in ``static/lib/`` as ``/demo/lib/*.js``.  Copies
rather than a path into ``clients/js``: a wheel or ``pip install .`` only
carries the ``realtime`` package, so the files must live inside it;
``tests/clients/test_js_client.py`` fails when a copy drifts from its
source.

Routes are registered once at start; whether the demo is on is read from
the current settings snapshot on every request, so a reload can switch it
on or off.  When it is off every demo path answers 404, as if absent.

The page runs as the public app ``demo`` (``conf/apps.toml``) and uses
``location.origin + "/demo/callback"`` as its redirect URI: the operator
registers that URI for every origin the page is opened on.
"""

from __future__ import annotations

from realtime.api.app import App
from realtime.api.static_files import read_static, static_headers
from realtime.http.request import Request
from realtime.http.responses import Response, error_response, redirect
from realtime.http.router import Router

#: path -> (file in realtime/api/static, content type)
FILES: dict[str, tuple[str, str]] = {
    "/demo/": ("demo.html", "text/html; charset=utf-8"),
    "/demo/callback": ("demo.html", "text/html; charset=utf-8"),
    "/demo/app.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo/style.css": ("demo.css", "text/css; charset=utf-8"),
    # The client library (clients/js); app.js imports ./lib/realtime.js.
    "/demo/lib/realtime.js": ("lib/realtime.js", "text/javascript; charset=utf-8"),
    "/demo/lib/pkce.js": ("lib/pkce.js", "text/javascript; charset=utf-8"),
    "/demo/lib/transports.js": ("lib/transports.js", "text/javascript; charset=utf-8"),
}

# The page talks to its own origin only: fetch() to /oauth2/token and
# /oauth2/userinfo, and the WebSocket (CSP 3: 'self' covers ws:/wss: on the
# same host), or with ?transport=sse (or when WebSockets fail) an
# EventSource on /sse and fetch() to /api/ticket, /api/publish,
# /api/presence and /api/streams/ID/refresh.  No inline script or style, no frames; the scripts are ES
# modules from this origin, which script-src 'self' allows.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _enabled(state: App) -> bool:
    return state.settings.demo.enabled


def _not_found() -> Response:
    return error_response(404, "not_found", "no such endpoint")


async def serve_file(request: Request, state: App) -> Response:
    """GET one of :data:`FILES` (404 while ``[demo] enabled`` is false)."""
    if not _enabled(state):
        return _not_found()
    name, content_type = FILES[request.path]
    return Response(200, static_headers(content_type, CSP), read_static(name))


async def bare(request: Request, state: App) -> Response:
    """``/demo`` -> ``/demo/`` so relative links resolve."""
    if not _enabled(state):
        return _not_found()
    return redirect("/demo/", 302)


def register(router: Router) -> None:
    for path in FILES:
        router.add("GET", path, serve_file)
    router.add("GET", "/demo", bare)
