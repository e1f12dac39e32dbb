"""The ``client_credentials`` grant: a confidential client's token for itself.

RFC 6749 §4.4.  No user, no refresh token, nothing stored: the client's
own credentials, already checked by the token endpoint, are the grant.
"""

from __future__ import annotations

from realtime.oauth.common import OFFLINE_ACCESS, grant_scopes, parse_scope
from realtime.oauth.errors import UnauthorizedClientError
from realtime.oauth.issuing import GrantContext, issue_tokens


async def client_credentials(ctx: GrantContext) -> dict:
    """RFC 6749 §4.4: "The client credentials grant type MUST only be used by
    confidential clients."  §4.4.3: "A refresh token SHOULD NOT be included."
    The token's ``sub`` is the client's own id.
    """
    if ctx.client.public:
        raise UnauthorizedClientError("client_credentials needs a confidential client")
    scopes = grant_scopes(parse_scope(ctx.form.get("scope")), ctx.app, None) - {OFFLINE_ACCESS}
    body, _ = await issue_tokens(ctx, ctx.app.client_id, scopes, refresh=False)
    return body
