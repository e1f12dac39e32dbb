"""The token endpoint (RFC 6749 §3.2): pick the grant, run it, answer once.

Each grant is ``async def grant(ctx) -> dict`` returning the RFC 6749
§5.1 body, one module per grant (``grant_*.py``, on the ground
:mod:`realtime.oauth.issuing` gives them); errors are :class:`OAuthError`
raised anywhere and rendered once by :func:`token_endpoint`.  Whatever a
grant answers is committed to the store before the answer is built
(``synchronous=FULL``), so a ``kill -9`` right after the response loses
nothing a client holds.

RFC 6749 §5.1: "The authorization server MUST include the HTTP
"Cache-Control" response header field [RFC2616] with a value of
"no-store" in any response containing tokens, credentials, or other
sensitive information, as well as the "Pragma" response header field
[RFC2616] with a value of "no-cache"."
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from realtime.http.request import Request
from realtime.http.responses import Response, json_response
from realtime.oauth.clients import authenticate_client
from realtime.oauth.common import read_form
from realtime.oauth.device import DEVICE_GRANT
from realtime.oauth.errors import (
    NO_STORE,
    InvalidRequestError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    json_endpoint_failure,
)
from realtime.oauth.grant_authorization_code import authorization_code
from realtime.oauth.grant_client_credentials import client_credentials
from realtime.oauth.grant_device_code import device_code
from realtime.oauth.grant_password import password
from realtime.oauth.grant_refresh_token import refresh_token
from realtime.oauth.issuing import GrantContext
from realtime.oauth.services import OAuthApp

log = logging.getLogger("realtime.oauth")


Grant = Callable[[GrantContext], Awaitable[dict]]

GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code,
    "refresh_token": refresh_token,
    "client_credentials": client_credentials,
    "password": password,
    DEVICE_GRANT: device_code,
}


async def token_endpoint(request: Request, state: OAuthApp) -> Response:
    """POST /oauth2/token: every grant, one error path."""
    services = state.oauth
    settings = state.settings  # one snapshot for the whole request
    now = services.clock()
    try:
        form = read_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequestError("grant_type is missing")
        grant = GRANTS.get(grant_type)
        if grant is None:
            raise UnsupportedGrantTypeError("unsupported grant_type")
        client = await authenticate_client(request, form, settings, services, now)
        if grant_type not in client.app.grant_types:
            raise UnauthorizedClientError("the client may not use this grant type")
        ctx = GrantContext(request, form, client, state, settings, services, now)
        body = await grant(ctx)
    except Exception as exc:
        return json_endpoint_failure(log, "token endpoint", exc)
    try:
        await services.maybe_sweep(now)
    except Exception:
        log.exception("store sweep failed")
    return json_response(200, body, NO_STORE)
