"""Wire the OAuth 1.0a endpoints into the router; build their services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from realtime.http.router import Router
from realtime.oauth1.credentials import build_services
from realtime.oauth1.endpoints import (
    access_token_endpoint,
    authorize_endpoint,
    request_token_endpoint,
    revoke_endpoint,
)

if TYPE_CHECKING:
    from realtime.app import ServerState


def register(router: Router) -> None:
    router.add("POST", "/oauth1/request_token", request_token_endpoint)
    router.add("GET", "/oauth1/authorize", authorize_endpoint)
    router.add("POST", "/oauth1/authorize", authorize_endpoint)
    router.add("POST", "/oauth1/access_token", access_token_endpoint)
    router.add("POST", "/oauth1/revoke", revoke_endpoint)


async def setup(state: "ServerState", **overrides: Any) -> None:
    """Build ``state.extras["oauth1"]`` (creates ``state_dir/oauth1.key`` if needed).

    Keyword overrides (``key``, ``clock``) are for tests.
    """
    import trio

    state.extras["oauth1"] = await trio.to_thread.run_sync(lambda: build_services(state, **overrides))
