"""Reading and checking a signed request (RFC 5849 §3), without I/O.

oauthlib does the RFC work: it collects the parameters from the
``Authorization: OAuth`` header, a form body and the query
(§3.4.1.3.1), builds the signature base string (§3.4.1) and checks
HMAC-SHA1/-SHA256, RSA-SHA1 and PLAINTEXT (§3.4.2–3.4.4).  This module
adds the server's rules around it: which parameters are required, the
timestamp window, which methods an app may use, PLAINTEXT only over
HTTPS, and which URL the client is taken to have signed.

**The signed URL.**  The client signs the URL it used (§3.4.1.2: "The
scheme, authority, and path of the request resource URI").  Behind our
own listener that is the listener's scheme (``http``/``https``), the
``Host`` header and the request path; the base string built from it is
tried first.  When ``[server] public_url`` names another scheme or
authority (a TLS-terminating proxy in front), the base string with
public_url's scheme and host is tried too.  Both name this server, so
accepting either lets nothing else in; ``X-Forwarded-*`` is not
trusted.
"""

from __future__ import annotations

import time
from typing import Iterable
from urllib.parse import urlsplit
from urllib.request import parse_http_list

import attrs
from oauthlib.oauth1.rfc5849 import signature as rfc5849
from oauthlib.oauth1.rfc5849 import utils as rfc5849_utils

from realtime.http.request import Request
from realtime.oauth1.errors import FORM, OAuth1Error

HMAC_SHA1 = "HMAC-SHA1"
HMAC_SHA256 = "HMAC-SHA256"
RSA_SHA1 = "RSA-SHA1"
RSA_SHA256 = "RSA-SHA256"
PLAINTEXT = "PLAINTEXT"
SECRET_METHODS = (HMAC_SHA1, HMAC_SHA256, PLAINTEXT)  # need the consumer secret
RSA_METHODS = (RSA_SHA1, RSA_SHA256)  # need the app's rsa_public_key
METHODS = SECRET_METHODS + RSA_METHODS

#: RFC 5849 §3.3: "servers MAY choose to restrict the time period after
#: which a request with an old timestamp is rejected."  Ours: ±300 s around
#: the server clock; a nonce is remembered for as long as its timestamp is
#: acceptable.
TIMESTAMP_WINDOW = 300
MAX_NONCE = 128
MAX_PARAM = 4096


@attrs.frozen
class SignedRequest:
    """The protocol parameters of one request, as sent (one source only)."""

    http_method: str
    consumer_key: str
    signature_method: str
    signature: str
    token: str | None
    nonce: str | None
    timestamp: int | None
    callback: str | None
    verifier: str | None
    # Every parameter that enters the base string: all three sources,
    # without oauth_signature and the header's realm (§3.4.1.3.1).
    params: tuple[tuple[str, str], ...]
    source: str  # "header" | "body" | "query"

    def param(self, name: str) -> str | None:
        """A non-protocol parameter sent once (e.g. ``scope``), else None."""
        values = [v for k, v in self.params if k == name]
        if len(values) > 1:
            raise OAuth1Error("parameter_rejected", f"the {name} parameter is repeated",
                              oauth_parameters_rejected=name)
        return values[0] if values else None


def is_signed(request: Request) -> bool:
    """True when the request carries OAuth 1 credentials: an
    ``Authorization: OAuth`` header, or (with no Authorization header at
    all) ``oauth_signature`` in the query."""
    auth = request.header("authorization")
    if auth is not None:
        return auth.strip()[:6].lower() == "oauth " or auth.strip().lower() == "oauth"
    return "oauth_signature" in request.query


def _form_body(request: Request) -> str:
    if request.content_type != FORM or not request.body:
        return ""
    try:
        return request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuth1Error("parameter_rejected", "the form body is not UTF-8") from None


def parse(request: Request) -> SignedRequest:
    """The OAuth parameters of ``request``.

    RFC 5849 §3.5: the parameters come from the Authorization header, a
    form-encoded body or the query, and "MUST NOT" be sent in more than
    one; §3.2: a missing or duplicated one is a 400.

    Raises:
        OAuth1Error: ``parameter_absent``, ``parameter_rejected`` or
            ``version_rejected``.
    """
    auth = request.header("authorization")
    headers = {"Authorization": auth} if auth is not None and auth.strip()[:5].lower() == "oauth" else {}
    query = urlsplit(request.target).query
    try:
        from_header = rfc5849.collect_parameters(headers=headers, exclude_oauth_signature=False,
                                                 with_realm=True) if headers else []
        from_body = rfc5849.collect_parameters(body=_form_body(request), exclude_oauth_signature=False)
        from_query = rfc5849.collect_parameters(uri_query=query, exclude_oauth_signature=False)
    except (ValueError, TypeError):
        raise OAuth1Error("parameter_rejected", "the OAuth parameters cannot be read") from None
    if headers and _header_names_repeat(headers["Authorization"]):
        # oauthlib folds the header into a dict, which would hide a repeat.
        raise OAuth1Error("parameter_rejected", "an OAuth parameter is repeated")
    sources = [(name, rfc5849_utils.filter_oauth_params(found))
               for name, found in (("header", from_header), ("body", from_body), ("query", from_query))]
    sources = [(name, found) for name, found in sources if found]
    if len(sources) > 1:
        raise OAuth1Error("parameter_rejected", "OAuth parameters must come from one place only")
    if not sources:
        raise OAuth1Error("parameter_absent", "the request carries no OAuth parameters",
                          oauth_parameters_absent="oauth_consumer_key&oauth_signature_method&oauth_signature")
    source, oauth = sources[0]
    names = [k for k, _ in oauth]
    repeated = sorted({k for k in names if names.count(k) > 1})
    if repeated:
        raise OAuth1Error("parameter_rejected", "an OAuth parameter is repeated",
                          oauth_parameters_rejected="&".join(repeated))
    values = dict(oauth)
    if any(len(v) > MAX_PARAM for v in values.values()):
        raise OAuth1Error("parameter_rejected", "an OAuth parameter is too long")
    if values.get("oauth_version", "1.0") != "1.0":
        raise OAuth1Error("version_rejected", "only OAuth 1.0 is supported",
                          oauth_acceptable_versions="1.0-1.0")
    method = values.get("oauth_signature_method", "")
    required = ["oauth_consumer_key", "oauth_signature_method", "oauth_signature"]
    if method != PLAINTEXT:
        # §3.1: "The parameter MAY be omitted when using the PLAINTEXT signature method."
        required += ["oauth_timestamp", "oauth_nonce"]
    absent = [name for name in required if not values.get(name)]
    if absent:
        raise OAuth1Error("parameter_absent", "a required OAuth parameter is missing",
                          oauth_parameters_absent="&".join(absent))
    timestamp = None
    if values.get("oauth_timestamp"):
        text = values["oauth_timestamp"]
        # §3.3: "The timestamp value MUST be a positive integer."
        if not text.isascii() or not text.isdigit() or len(text) > 12:
            raise OAuth1Error("parameter_rejected", "oauth_timestamp must be a positive integer",
                              oauth_parameters_rejected="oauth_timestamp")
        timestamp = int(text)
    nonce = values.get("oauth_nonce") or None
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise OAuth1Error("parameter_rejected", "oauth_nonce is too long",
                          oauth_parameters_rejected="oauth_nonce")
    realm_free = [(k, v) for k, v in from_header if k != "realm"]
    params = tuple((k, v) for k, v in realm_free + from_body + from_query if k != "oauth_signature")
    return SignedRequest(
        http_method=request.method.upper(),
        consumer_key=values["oauth_consumer_key"],
        signature_method=method,
        signature=values["oauth_signature"],
        token=values.get("oauth_token") or None,
        nonce=nonce,
        timestamp=timestamp,
        callback=values.get("oauth_callback") or None,
        verifier=values.get("oauth_verifier") or None,
        params=params,
        source=source,
    )


def _header_names_repeat(header: str) -> bool:
    names = [item.split("=", 1)[0].strip().lower() for item in parse_http_list(header.strip()[6:])]
    return len(names) != len(set(names))


def check_method(signed: SignedRequest, scheme: str, *, has_secret: bool, has_rsa_key: bool) -> None:
    """The signature method must be one we support and the app can check.

    RFC 5849 §3.4.4: PLAINTEXT "MUST be used with a transport-layer
    mechanism such as TLS"; we accept it only on the HTTPS listener.

    Raises:
        OAuth1Error: ``signature_method_rejected``.
    """
    method = signed.signature_method
    usable = [m for m in METHODS if (m in RSA_METHODS and has_rsa_key) or (m in SECRET_METHODS and has_secret)]
    if scheme != "https":
        usable = [m for m in usable if m != PLAINTEXT]
    if method not in usable:
        advice = ("PLAINTEXT is accepted only over HTTPS" if method == PLAINTEXT and has_secret
                  else "this signature method is not available to this consumer")
        raise OAuth1Error("signature_method_rejected", advice,
                          oauth_acceptable_signature_methods="&".join(usable))


def check_timestamp(signed: SignedRequest, now: float | None = None) -> None:
    """RFC 5849 §3.3 with our window of ±:data:`TIMESTAMP_WINDOW` seconds.

    Raises:
        OAuth1Error: ``timestamp_refused`` with the acceptable range.
    """
    if signed.timestamp is None:
        return  # PLAINTEXT without a timestamp (§3.1)
    now = time.time() if now is None else now
    if abs(signed.timestamp - now) > TIMESTAMP_WINDOW:
        low, high = int(now) - TIMESTAMP_WINDOW, int(now) + TIMESTAMP_WINDOW
        raise OAuth1Error("timestamp_refused", f"oauth_timestamp must be within {TIMESTAMP_WINDOW} s of the server clock",
                          oauth_acceptable_timestamps=f"{low}-{high}")


def signed_uris(request: Request, public_url: str) -> list[str]:
    """The URLs the client may have signed, most likely first (module doc)."""
    path = urlsplit(request.target).path or "/"  # origin-form or absolute-form alike
    uris: list[str] = []
    host = request.header("host")
    if host:
        uris.append(f"{request.scheme}://{host.strip()}{path}")
    public = urlsplit(public_url)
    if public.scheme in ("http", "https") and public.netloc:
        uris.append(f"{public.scheme}://{public.netloc}{path}")
    out: list[str] = []
    for uri in uris:
        try:
            base = rfc5849.base_string_uri(uri)
        except ValueError:
            continue  # a Host header that is no host
        if base not in out:
            out.append(base)
    return out


@attrs.frozen
class _OAuthlibRequest:
    """What oauthlib's ``verify_*`` functions read from a request."""

    uri: str
    http_method: str
    params: list[tuple[str, str]]
    signature: str


def verify(
    signed: SignedRequest,
    uris: Iterable[str],
    *,
    consumer_secret: str | None,
    token_secret: str | None,
    rsa_public_key: str | None,
) -> bool:
    """Check the signature against each candidate URL (oauthlib compares
    HMAC and PLAINTEXT signatures in constant time)."""
    method = signed.signature_method
    for uri in uris:
        req = _OAuthlibRequest(uri, signed.http_method, list(signed.params), signed.signature)
        try:
            if method == HMAC_SHA1:
                ok = rfc5849.verify_hmac_sha1(req, consumer_secret, token_secret)
            elif method == HMAC_SHA256:
                ok = rfc5849.verify_hmac_sha256(req, consumer_secret, token_secret)
            elif method == PLAINTEXT:
                return rfc5849.verify_plaintext(req, consumer_secret, token_secret)
            elif method == RSA_SHA1 and rsa_public_key:
                ok = rfc5849.verify_rsa_sha1(req, rsa_public_key)
            elif method == RSA_SHA256 and rsa_public_key:
                ok = rfc5849.verify_rsa_sha256(req, rsa_public_key)
            else:
                return False
        except (ValueError, TypeError):  # a signature that is not base64, a bad key
            ok = False
        if ok:
            return True
    return False
