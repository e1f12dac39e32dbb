"""Outbound HTTP to a login provider: the code exchange and the profile.

httpx's ``AsyncClient`` runs on trio (httpcore picks its trio backend
through sniffio), so a slow provider holds up only the request waiting
for it.  Every call has a deadline (the definition's ``timeout``, default
10 s) for connect, each read and the whole exchange, answers are capped
at 1 MiB, redirects are not followed, and only https — or http to a
loopback address — is ever contacted.

Errors are :class:`ProviderError` subclasses whose text is safe to log:
no codes, tokens, secrets or response bodies.  The flow
(:mod:`realtime.oauth.providers.flow`) receives :data:`PROVIDER_HTTP`
through its services (the :class:`realtime.oauth.providers.outbound.ProviderHttp`
seam), so the OAuth core imports neither httpx nor trio.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from realtime.config.login_provider import LOOPBACK, Provider, ProviderError, allowed_url, parse_token_response
from realtime.oauth.providers.outbound import ProviderTimeout, ProviderUnreachable

MAX_ANSWER = 1 << 20
USER_AGENT = "realtime-login/1"


async def _send(provider: Provider, method: str, url: str, *, headers: dict[str, str],
                data: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    if not allowed_url(url):  # checked at load too; this is the last word before a request
        raise ProviderError(f"refusing to contact {urlsplit(url).scheme}://{urlsplit(url).hostname}: https only")
    # Proxies and CA bundles from the environment (HTTPS_PROXY, SSL_CERT_FILE)
    # apply to real providers, never to loopback.
    loopback = urlsplit(url).hostname in LOOPBACK
    headers = {"user-agent": USER_AGENT, **headers}
    try:
        with trio.fail_after(provider.timeout):
            async with httpx.AsyncClient(timeout=httpx.Timeout(provider.timeout), follow_redirects=False,
                                         trust_env=not loopback) as client:
                async with client.stream(method, url, headers=headers, data=data) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER:
                            raise ProviderError(f"{method} {urlsplit(url).path}: answer larger than 1 MiB")
                    return response.status_code, response.headers.get("content-type", ""), bytes(body)
    except (trio.TooSlowError, httpx.TimeoutException):
        raise ProviderTimeout(f"{method} {urlsplit(url).path}: no answer within {provider.timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise ProviderUnreachable(f"{method} {urlsplit(url).path}: {type(exc).__name__}") from None


async def exchange_code(provider: Provider, *, code: str, redirect_uri: str, verifier: str | None) -> str:
    """RFC 6749 §4.1.3–4.1.4: trade the code for an access token."""
    form, headers = provider.token_request(code=code, redirect_uri=redirect_uri, verifier=verifier)
    status, content_type, body = await _send(provider, "POST", provider.token_url, headers=headers, data=form)
    token, _ = parse_token_response(status, content_type, body)
    return token


async def fetch_profile(provider: Provider, access_token: str) -> dict[str, Any]:
    """GET ``getProfileInfo`` with the token (RFC 6750 §2.1 unless the template says otherwise)."""
    headers = {"authorization": provider.authorization_header(access_token), "accept": "application/json"}
    status, _, body = await _send(provider, "GET", provider.profile_url, headers=headers)
    if status != 200:
        raise ProviderError(f"profile endpoint answered {status}")
    try:
        profile = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        profile = None
    if not isinstance(profile, dict):
        raise ProviderError("profile endpoint did not answer a JSON object")
    return profile


class HttpxProviderHttp:
    """The :class:`realtime.oauth.providers.outbound.ProviderHttp` the server injects."""

    async def exchange_code(self, provider: Provider, *, code: str, redirect_uri: str,
                            verifier: str | None) -> str:
        return await exchange_code(provider, code=code, redirect_uri=redirect_uri, verifier=verifier)

    async def fetch_profile(self, provider: Provider, access_token: str) -> dict[str, Any]:
        return await fetch_profile(provider, access_token)


PROVIDER_HTTP = HttpxProviderHttp()
