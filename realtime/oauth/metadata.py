"""Authorization server metadata (RFC 8414) and the JWK Set.

RFC 8414 §3: "Authorization servers supporting metadata MUST make a JSON
document containing metadata as specified in Section 2 available at a
path formed by inserting a well-known URI string into the authorization
server's issuer identifier between the host component and the path
component, if any."  §3.3: "The "issuer" value returned MUST be identical
to the authorization server's issuer identifier value".
"""

from __future__ import annotations

from typing import Any

from realtime.http.request import Request
from realtime.http.responses import Response, json_response
from realtime.oauth.common import OFFLINE_ACCESS, OPENID
from realtime.oauth.device import DEVICE_GRANT
from realtime.oauth.services import OAuthApp
from realtime.config.settings import Settings

GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials", "password", DEVICE_GRANT]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def metadata(settings: Settings, signing_alg: str | None = None) -> dict[str, Any]:
    base = settings.issuer
    scopes = sorted({s for app in settings.apps.values() for s in app.scopes} | {OFFLINE_ACCESS, OPENID})
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "jwks_uri": f"{base}/oauth2/jwks",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "userinfo_endpoint": f"{base}/oauth2/userinfo",
        "device_authorization_endpoint": f"{base}/oauth2/device_authorization",  # RFC 8628 §4
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS[:2],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": True,
        "token_endpoint_auth_signing_alg_values_supported": None,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signing_alg or settings.oauth.signing_alg],
        "access_token_signing_alg_values_supported": [signing_alg or settings.oauth.signing_alg],
    }


async def metadata_endpoint(request: Request, state: OAuthApp) -> Response:
    body = {k: v for k, v in metadata(state.settings).items() if v is not None}
    return json_response(200, body, (("cache-control", "no-cache"),))


async def jwks_endpoint(request: Request, state: OAuthApp) -> Response:
    return json_response(200, state.keyring.jwks(), (("cache-control", "max-age=60"),))


#: What an ID Token or /oauth2/userinfo may carry (SPEC §8).
CLAIMS = ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "sid", "at_hash", "nonce",
          "name", "preferred_username", "email", "email_verified"]


def openid_configuration(settings: Settings, signing_alg: str | None = None) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3: the RFC 8414 document (same issuer,
    same endpoints, built by :func:`metadata`) plus the OIDC members."""
    base = settings.issuer
    doc = {k: v for k, v in metadata(settings, signing_alg).items() if v is not None}
    doc.update({
        "end_session_endpoint": f"{base}/oauth2/logout",  # RP-Initiated Logout 1.0 §2.1
        "device_authorization_endpoint": f"{base}/oauth2/device_authorization",  # RFC 8628 §4
        "claims_supported": CLAIMS,
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    })
    return doc


async def openid_configuration_endpoint(request: Request, state: OAuthApp) -> Response:
    return json_response(200, openid_configuration(state.settings), (("cache-control", "no-cache"),))
