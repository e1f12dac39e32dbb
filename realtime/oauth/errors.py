"""RFC 6749 errors: one class per error code, rendered in one place.

RFC 6749 §5.2: "The authorization server responds with an HTTP 400 (Bad
Request) status code (unless specified otherwise) and includes the
following parameters with the response: error (REQUIRED) ...
error_description (OPTIONAL) Human-readable ASCII text providing
additional information".

Descriptions are fixed, operator-written strings: never exception text,
never a secret, never an echo of what the client sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from realtime.http.responses import Response, error_response
from realtime.store.records import StoreUnavailable

NO_STORE: tuple[tuple[str, str], ...] = (("cache-control", "no-store"), ("pragma", "no-cache"))


class OAuthError(Exception):
    """Base: ``error`` is the RFC code, ``status_code`` its HTTP status."""

    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400

    def __init__(self, description: str | None = None, *, state: str | None = None) -> None:
        super().__init__(description or self.error)
        self.description = description
        self.state = state

    def headers(self) -> tuple[tuple[str, str], ...]:
        return NO_STORE

    def to_response(self) -> Response:
        return error_response(self.status_code, self.error, self.description, self.headers())

    def params(self) -> dict[str, str]:
        """The redirect form (RFC 6749 §4.1.2.1) without ``state``/``iss``."""
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out


class InvalidRequestError(OAuthError):
    """RFC 6749 §5.2: "The request is missing a required parameter, includes
    an unsupported parameter value (other than grant type), repeats a
    parameter, includes multiple credentials, utilizes more than one
    mechanism for authenticating the client, or is otherwise malformed."
    """

    error = "invalid_request"


class InvalidClientError(OAuthError):
    """RFC 6749 §5.2: "Client authentication failed ... If the client
    attempted to authenticate via the "Authorization" request header field,
    the authorization server MUST respond with an HTTP 401 (Unauthorized)
    status code and include the "WWW-Authenticate" response header field
    matching the authentication scheme used by the client."

    SPEC §3 asks for 401 with WWW-Authenticate every time; the challenge
    names the scheme we support (Basic) whichever method was tried.
    """

    error = "invalid_client"
    status_code = 401

    def __init__(self, description: str | None = None, *, used_basic: bool = False, state: str | None = None) -> None:
        super().__init__(description, state=state)
        self.used_basic = used_basic

    def headers(self) -> tuple[tuple[str, str], ...]:
        return NO_STORE + (("www-authenticate", 'Basic realm="realtime", charset="UTF-8"'),)


class InvalidGrantError(OAuthError):
    """RFC 6749 §5.2: "The provided authorization grant (e.g., authorization
    code, resource owner credentials) or refresh token is invalid, expired,
    revoked, does not match the redirection URI used in the authorization
    request, or was issued to another client."
    """

    error = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    """RFC 6749 §5.2: "The authenticated client is not authorized to use
    this authorization grant type."
    """

    error = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    """RFC 6749 §5.2: "The authorization grant type is not supported by the
    authorization server."
    """

    error = "unsupported_grant_type"


class InvalidScopeError(OAuthError):
    """RFC 6749 §5.2: "The requested scope is invalid, unknown, malformed,
    or exceeds the scope granted by the resource owner."
    """

    error = "invalid_scope"


class AccessDeniedError(OAuthError):
    """RFC 6749 §4.1.2.1: "The resource owner or authorization server denied
    the request."
    """

    error = "access_denied"
    status_code = 403


class UnsupportedResponseTypeError(OAuthError):
    """RFC 6749 §4.1.2.1: "The authorization server does not support
    obtaining an authorization code using this method."
    """

    error = "unsupported_response_type"


class ServerError(OAuthError):
    """RFC 6749 §4.1.2.1: "The authorization server encountered an
    unexpected condition that prevented it from fulfilling the request."
    """

    error = "server_error"
    status_code = 500


class LoginRequiredError(OAuthError):
    """OpenID Connect Core §3.1.2.6, for ``prompt=none`` without a session."""

    error = "login_required"


class ConsentRequiredError(OAuthError):
    """OpenID Connect Core §3.1.2.6, for ``prompt=none`` without consent."""

    error = "consent_required"


class UnsupportedTokenTypeError(OAuthError):
    """RFC 7009 §2.2.1: "The authorization server does not support the
    revocation of the presented token type."
    """

    error = "unsupported_token_type"


class TooManyAttemptsError(InvalidGrantError):
    """Failed-login throttling on the ``password`` grant.

    Still ``invalid_grant`` (RFC 6749 §5.2) so clients need no new code,
    but with 429 and ``Retry-After`` (RFC 6585 §4) so they back off.
    """

    status_code = 429

    def __init__(self, retry_after: float, description: str | None = None) -> None:
        super().__init__(description or "too many failed attempts, retry later")
        self.retry_after = retry_after

    def headers(self) -> tuple[tuple[str, str], ...]:
        return NO_STORE + (("retry-after", retry_after_value(self.retry_after)),)


class ClientThrottledError(InvalidClientError):
    """Too many failed client authentications from this address or for
    this ``client_id``: refused before any argon2 check.
    Still ``invalid_client``, with 429 and ``Retry-After`` (RFC 6585 §4)."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed client authentications, retry later")
        self.retry_after = retry_after

    def headers(self) -> tuple[tuple[str, str], ...]:
        return super().headers() + (("retry-after", retry_after_value(self.retry_after)),)


class TemporarilyUnavailableError(OAuthError):
    """The argon2 wait queue is full, or the store's database does not
    answer (:class:`realtime.store.StoreUnavailable`): 503 with ``Retry-After``.

    RFC 6749 §4.1.2.1 defines ``temporarily_unavailable`` ("The
    authorization server is currently unable to handle the request due to
    a temporary overloading") for the authorization endpoint; the token,
    revocation and introspection endpoints use the same code, since §5.2
    has none for overload.
    """

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, retry_after: float, description: str = "the server is busy, retry later") -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> tuple[tuple[str, str], ...]:
        return NO_STORE + (("retry-after", retry_after_value(self.retry_after)),)


def retry_after_value(seconds: float) -> str:
    return str(max(1, int(seconds + 0.999)))


#: Seconds a client is told to wait when the store's database does not answer.
STORE_RETRY_AFTER = 5.0


#: The HTML pages' 503 (title, text) when the store's database does not answer.
STORE_UNAVAILABLE_PAGE = ("Temporarily unavailable",
                          "The service cannot reach its database right now. Please try again in a moment.")


def log_store_unavailable(log: Any, endpoint: str, exc: BaseException) -> None:
    """One clear line per request the store could not serve (no traceback: it is not a bug)."""
    log.error("%s: the store's database is unavailable (%s); answering 503", endpoint, exc)


def store_unavailable(log: Any, endpoint: str, exc: BaseException) -> Response:
    """The JSON endpoints' 503 for a request the store could not serve, logged."""
    log_store_unavailable(log, endpoint, exc)
    return TemporarilyUnavailableError(
        STORE_RETRY_AFTER, "the authorization server's database is unavailable, retry later").to_response()


def json_endpoint_failure(log: Any, endpoint: str, exc: Exception) -> Response:
    """A JSON endpoint's answer to the exception that ended its request
    (call it from the ``except`` block): an :class:`OAuthError` as itself,
    the store's 503 for :class:`StoreUnavailable`, else a 500 with no
    detail, the traceback logged."""
    if isinstance(exc, OAuthError):
        return exc.to_response()
    if isinstance(exc, StoreUnavailable):
        return store_unavailable(log, endpoint, exc)
    log.exception("%s failed", endpoint)  # never a traceback or its text to the client
    return ServerError("internal error").to_response()
