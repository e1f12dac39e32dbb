"""Wire the OAuth endpoints into the router.

The server calls :func:`register` when it builds its router; the
services the endpoints share are built by the net layer
(:func:`realtime.oauth.services.build_services`) and reach them as the
application object's ``oauth`` attribute.
"""

from __future__ import annotations

from realtime.http.router import Router
from realtime.oauth.authorize import authorize_endpoint
from realtime.oauth.grants import token_endpoint
from realtime.oauth.introspection import introspect_endpoint
from realtime.oauth.logout import logout_endpoint
from realtime.oauth.metadata import jwks_endpoint, metadata_endpoint, openid_configuration_endpoint
from realtime.oauth.callback import callback_endpoint
from realtime.oauth.providers.flow import CALLBACK_PREFIX
from realtime.oauth.revocation import revoke_endpoint
from realtime.oauth.userinfo import userinfo_endpoint


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
    router.add("GET", "/.well-known/openid-configuration", openid_configuration_endpoint)  # OIDC Discovery
    router.add("GET", "/oauth2/logout", logout_endpoint)  # OIDC RP-Initiated Logout
    router.add("POST", "/oauth2/logout", logout_endpoint)
    router.add_prefix("GET", CALLBACK_PREFIX, callback_endpoint)  # /oauth2/callback/NAME (login providers)
