"""OAuth 1.0a errors: one ``oauth_problem`` each, rendered in one place.

RFC 5849 §3.2: "If the request fails verification, the server SHOULD
respond with the appropriate HTTP response status code ...
400 (Bad Request) ... in the case of: unsupported parameter, unsupported
signature method, missing required parameter, duplicated OAuth protocol
parameter.  401 (Unauthorized) ... in the case of: invalid client
credentials, invalid or expired token, invalid signature, invalid or used
nonce."

RFC 5849 names no error codes, so the ``oauth_problem`` values are those of
the OAuth Problem Reporting extension (oauth.net, the de-facto set every
OAuth 1 library knows): ``nonce_used``, ``timestamp_refused``,
``signature_invalid``, ``token_used``, ``verifier_invalid`` ...

The OAuth 1 endpoints (``/oauth1/*``) answer form-encoded, as their
successful answers are; protected resources (``/api/publish``, the
WebSocket handshake) answer the JSON shape of every other error there.
Descriptions are fixed strings, never an echo of the request.
"""

from __future__ import annotations

from urllib.parse import urlencode

from realtime.http.responses import Response, json_response

REALM = "realtime"
FORM = "application/x-www-form-urlencoded"
NO_STORE: tuple[tuple[str, str], ...] = (("cache-control", "no-store"), ("pragma", "no-cache"))

#: RFC 5849 §3.2: malformed requests are 400, failed credentials 401.
STATUS = {
    "version_rejected": 400,
    "parameter_absent": 400,
    "parameter_rejected": 400,
    "signature_method_rejected": 400,
    "timestamp_refused": 401,
    "nonce_used": 401,
    "signature_invalid": 401,
    "consumer_key_unknown": 401,
    "consumer_key_rejected": 401,
    "token_used": 401,
    "token_expired": 401,
    "token_revoked": 401,
    "token_rejected": 401,
    "permission_unknown": 401,
    "permission_denied": 401,
    "verifier_invalid": 401,
}


class OAuth1Error(Exception):
    """A request that failed OAuth 1 verification.

    Args:
        problem: the ``oauth_problem`` code (a key of :data:`STATUS`).
        advice: a fixed, human-readable explanation.
        extra: further Problem Reporting parameters, e.g.
            ``oauth_acceptable_timestamps``.
    """

    def __init__(self, problem: str, advice: str, **extra: str) -> None:
        if problem not in STATUS:
            raise ValueError(f"unknown oauth_problem {problem!r}")
        super().__init__(f"{problem}: {advice}")
        self.problem = problem
        self.advice = advice
        self.extra = extra

    @property
    def status_code(self) -> int:
        return STATUS[self.problem]

    def params(self) -> dict[str, str]:
        return {"oauth_problem": self.problem, "oauth_problem_advice": self.advice, **self.extra}

    def _challenge(self) -> tuple[tuple[str, str], ...]:
        if self.status_code != 401:
            return ()
        return (("www-authenticate", f'OAuth realm="{REALM}", oauth_problem="{self.problem}"'),)

    def form_response(self) -> Response:
        """For ``/oauth1/*``: ``oauth_problem=...&oauth_problem_advice=...``."""
        body = urlencode(self.params()).encode()
        return Response(self.status_code, (("content-type", FORM),) + NO_STORE + self._challenge(), body)

    def resource_response(self) -> Response:
        """For protected resources: the RFC 6750-style JSON error plus the
        problem code, challenging with both schemes the resource accepts."""
        error = "invalid_token" if self.status_code == 401 else "invalid_request"
        headers = self._challenge()
        if self.status_code == 401:
            headers += (("www-authenticate", f'Bearer realm="{REALM}", error="invalid_token"'),)
        body = {"error": error, "error_description": self.advice, **self.params()}
        return json_response(self.status_code, body, headers + NO_STORE)
