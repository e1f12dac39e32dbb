"""Wire the OAuth endpoints into the router and build their services.

The server calls :func:`register` when it builds its router and
``await setup(state)`` once at start, after ``state.store`` (an
:class:`realtime.store.AsyncStore`) is open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from realtime.http.router import Router
from realtime.oauth.authorize import authorize_endpoint
from realtime.oauth.grants import token_endpoint
from realtime.oauth.introspection import introspect_endpoint
from realtime.oauth.metadata import jwks_endpoint, metadata_endpoint
from realtime.oauth.provider_flow import CALLBACK_PREFIX, callback_endpoint
from realtime.oauth.revocation import revoke_endpoint
from realtime.oauth.services import build_services
from realtime.oauth.userinfo import userinfo_endpoint

if TYPE_CHECKING:
    from realtime.app import ServerState


def register(router: Router) -> None:
    router.add("GET", "/.well-known/oauth-authorization-server", metadata_endpoint)
    router.add("GET", "/oauth2/jwks", jwks_endpoint)
    router.add("GET", "/oauth2/authorize", authorize_endpoint)
    router.add("POST", "/oauth2/authorize", authorize_endpoint)
    router.add("POST", "/oauth2/token", token_endpoint)
    router.add("POST", "/oauth2/revoke", revoke_endpoint)
    router.add("POST", "/oauth2/introspect", introspect_endpoint)
    router.add("GET", "/oauth2/userinfo", userinfo_endpoint)
    router.add("POST", "/oauth2/userinfo", userinfo_endpoint)
    router.add_prefix("GET", CALLBACK_PREFIX, callback_endpoint)  # /oauth2/callback/NAME (login providers)


async def setup(state: "ServerState", **overrides: Any) -> None:
    """Build ``state.extras["oauth"]`` and sweep the store once.

    Keyword overrides (``key``, ``clock``, ``hasher``, ...) are for tests.
    """
    services = build_services(state, **overrides)
    state.extras["oauth"] = services
    now = services.clock()
    services.last_sweep = now
    await services.store.sweep(now)
