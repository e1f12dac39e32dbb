"""Maps (method, path) to an async handler; 404 and 405 in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, error_response

if TYPE_CHECKING:
    from realtime.state import ServerState

Handler = Callable[[Request, "ServerState"], Awaitable[Response]]


class Router:
    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}
        # Paths under a prefix ("/oauth2/callback/" + NAME), tried after exact paths.
        self._prefixes: dict[str, dict[str, Handler]] = {}

    def add_prefix(self, method: str, prefix: str, handler: Handler) -> None:
        """Route every path that starts with ``prefix`` (ending in '/') and goes on."""
        if not prefix.endswith("/"):
            raise ValueError("a route prefix ends with '/'")
        methods = self._prefixes.setdefault(prefix, {})
        if method in methods:
            raise ValueError(f"route {method} {prefix}* registered twice")
        methods[method] = handler
        if method == "GET" and "HEAD" not in methods:
            methods["HEAD"] = handler

    def add(self, method: str, path: str, handler: Handler) -> None:
        methods = self._routes.setdefault(path, {})
        if method in methods:
            raise ValueError(f"route {method} {path} registered twice")
        methods[method] = handler
        if method == "GET" and "HEAD" not in methods:
            methods["HEAD"] = handler

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(method, path, handler)
            return handler

        return decorate

    def has_path(self, path: str) -> bool:
        return path in self._routes

    async def dispatch(self, request: Request, state: "ServerState") -> Response:
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
