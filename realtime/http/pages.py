"""The HTML the authorization server shows: login, consent and error pages.

Plain HTML, every value through :func:`html.escape`, no scripts, no
external assets; the forms POST to ``/oauth2/authorize`` and carry the
authorization request in hidden fields plus a CSRF token.
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from realtime.http.responses import Response, html_response

AUTHORIZE_PATH = "/oauth2/authorize"

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d1f23;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem;margin-right:.5rem}
.error{color:#a00;background:#fee;padding:.5rem;border-radius:4px}
ul{padding-left:1.2rem}code{background:#eee;padding:0 .2rem}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )


def _origin(uri: str) -> str | None:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    if parts.scheme:
        return f"{parts.scheme}:"
    return None


def page_response(status: int, html: str, redirect_uri: str | None = None,
                  headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """An HTML response whose CSP lets the form's redirect reach the client.

    Browsers apply ``form-action`` to the redirects that follow a form
    submission, so the client's redirect URI origin is allowed next to
    ``'self'``.
    """
    response = html_response(status, html, headers)
    origin = _origin(redirect_uri) if redirect_uri else None
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"form-action 'self'{' ' + origin if origin else ''}; frame-ancestors 'none'; base-uri 'none'"
    )
    kept = tuple((k, v) for k, v in response.headers if k != "content-security-policy")
    return Response(response.status, kept + (("content-security-policy", csp),), response.body)


def login_page(
    *,
    app_name: str,
    hidden: Mapping[str, str],
    username: str = "",
    error: str | None = None,
) -> str:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _page(
        "Sign in",
        f"<h1>Sign in to continue to {escape(app_name)}</h1>{err}"
        f'<form method="post" action="{AUTHORIZE_PATH}">{_hidden(hidden)}'
        '<input type="hidden" name="action" value="login">'
        '<label for="username">User name</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        'autocomplete="username" autocapitalize="none" required autofocus>'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>',
    )


def consent_page(
    *,
    app_name: str,
    user: str,
    scopes: Iterable[str],
    hidden: Mapping[str, str],
    redirect_host: str,
) -> str:
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in sorted(scopes))
    listing = f"<ul>{items}</ul>" if items else "<p>No special permissions.</p>"
    return _page(
        "Authorize access",
        f"<h1>{escape(app_name)} wants to access your account</h1>"
        f"<p>Signed in as <strong>{escape(user)}</strong>. The application asks for:</p>{listing}"
        f"<p>You will be sent back to <code>{escape(redirect_host)}</code>.</p>"
        f'<form method="post" action="{AUTHORIZE_PATH}">{_hidden(hidden)}'
        '<input type="hidden" name="action" value="consent">'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>',
    )


def error_page(title: str, message: str) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")
