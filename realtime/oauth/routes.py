"""Wire the OAuth endpoints into the router.

The server calls :func:`register` when it builds its router; the
services the endpoints share are built by the net layer
(:func:`realtime.oauth.services.build_services`) and reach them as the
application object's ``oauth`` attribute.
"""

from __future__ import annotations

from realtime.http.router import Router
from realtime.oauth.account import account_endpoint, revoke_endpoint as account_revoke_endpoint
from realtime.oauth.authorize import authorize_endpoint
from realtime.oauth.device import device_authorization_endpoint
from realtime.oauth.device_page import device_page_endpoint
from realtime.oauth.token_endpoint import token_endpoint
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
    # Device authorization grant (RFC 8628) and the account page (SPEC §9, §10).
    router.add("POST", "/oauth2/device_authorization", device_authorization_endpoint)
    router.add("GET", "/device", device_page_endpoint)
    router.add("POST", "/device", device_page_endpoint)
    router.add("GET", "/account", account_endpoint)
    router.add("POST", "/account", account_endpoint)
    router.add("POST", "/account/revoke", account_revoke_endpoint)
