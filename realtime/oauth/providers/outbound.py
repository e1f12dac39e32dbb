"""The seam to the outbound HTTP of a provider login.

The code exchange and the profile request are network I/O, done by the
net layer (:mod:`realtime.net.provider_http`, httpx on trio); the flow
(:mod:`realtime.oauth.providers.flow`) receives an object with these two
methods in :class:`realtime.oauth.services.OAuthServices` and tells the
failures apart by the exceptions below, whose text is safe to log (no
codes, tokens, secrets or response bodies).
"""

from __future__ import annotations

from typing import Any, Protocol

from realtime.config.login_provider import Provider, ProviderError


class ProviderUnreachable(ProviderError):
    """No HTTP answer: refused, reset, DNS, TLS."""


class ProviderTimeout(ProviderError):
    """No complete answer within the provider's ``timeout``."""


class ProviderHttp(Protocol):
    async def exchange_code(self, provider: Provider, *, code: str, redirect_uri: str,
                            verifier: str | None) -> str:
        """RFC 6749 §4.1.3–4.1.4: the provider's access token for ``code``."""
        ...

    async def fetch_profile(self, provider: Provider, access_token: str) -> dict[str, Any]:
        """The provider's profile object for ``access_token``."""
        ...
