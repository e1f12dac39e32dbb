"""Wire the OAuth 1.0a endpoints into the router.

Their services (:class:`realtime.oauth1.credentials.OAuth1Services`) are
built by the net layer at start and reach them as the application
object's ``oauth1`` attribute.
"""

from __future__ import annotations

from realtime.http.router import Router
from realtime.oauth1.endpoints import (
    access_token_endpoint,
    authorize_endpoint,
    request_token_endpoint,
    revoke_endpoint,
)


def register(router: Router) -> None:
    router.add("POST", "/oauth1/request_token", request_token_endpoint)
    router.add("GET", "/oauth1/authorize", authorize_endpoint)
    router.add("POST", "/oauth1/authorize", authorize_endpoint)
    router.add("POST", "/oauth1/access_token", access_token_endpoint)
    router.add("POST", "/oauth1/revoke", revoke_endpoint)
