"""Maps (method, path) to an async handler; 404 and 405 in one place.

The router passes the application object through without reading it, so
it is typed ``Any`` here: the concrete class (``realtime.api.app.App``)
lives layers above, and each handler names the part it reads (e.g.
``realtime.oauth.services.OAuthApp``).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, error_response

Handler = Callable[[Request, Any], Awaitable[Response]]


class Router:
    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}
        # Paths under a prefix ("/oauth2/callback/" + NAME), tried after exact paths.
        self._prefixes: dict[str, dict[str, Handler]] = {}

    def add_prefix(self, method: str, prefix: str, handler: Handler) -> None:
        """Route every path that starts with ``prefix`` (ending in '/') and goes on."""
        if not prefix.endswith("/"):
            raise ValueError("a route prefix ends with '/'")
        _register(self._prefixes.setdefault(prefix, {}), method, handler, f"{prefix}*")

    def add(self, method: str, path: str, handler: Handler) -> None:
        _register(self._routes.setdefault(path, {}), method, handler, path)

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(method, path, handler)
            return handler

        return decorate

    async def dispatch(self, request: Request, state: Any) -> Response:
        methods = self._routes.get(request.path)
        if methods is None:
            methods = next((m for prefix, m in self._prefixes.items()
                            if request.path.startswith(prefix) and len(request.path) > len(prefix)), None)
        if methods is None:
            return error_response(404, "not_found", "no such endpoint")
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            return error_response(405, "method_not_allowed", f"use {allow}", (("allow", allow),))
        try:
            return await handler(request, state)
        except BadRequest as exc:
            return error_response(400, "invalid_request", str(exc))


def _register(methods: dict[str, Handler], method: str, handler: Handler, where: str) -> None:
    """One method of one route; a GET answers HEAD too unless HEAD has its own."""
    if method in methods:
        raise ValueError(f"route {method} {where} registered twice")
    methods[method] = handler
    if method == "GET" and "HEAD" not in methods:
        methods["HEAD"] = handler
