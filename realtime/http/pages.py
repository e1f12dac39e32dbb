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
                  headers: tuple[tuple[str, str], ...] = (), form_origins: Iterable[str] = ()) -> Response:
    """An HTML response whose CSP lets the form's redirect reach the client.

    Browsers apply ``form-action`` to the redirects that follow a form
    submission, so the client's redirect URI origin is allowed next to
    ``'self'`` (and ``form_origins``: the login providers' origins, where
    "Log in with X" redirects to).
    """
    response = html_response(status, html, headers)
    origin = _origin(redirect_uri) if redirect_uri else None
    allowed = "".join(f" {o}" for o in dict.fromkeys(([origin] if origin else []) + list(form_origins)))
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"form-action 'self'{allowed}; frame-ancestors 'none'; base-uri 'none'"
    )
    kept = tuple((k, v) for k, v in response.headers if k != "content-security-policy")
    return Response(response.status, kept + (("content-security-policy", csp),), response.body)


def login_page(
    *,
    app_name: str,
    hidden: Mapping[str, str],
    username: str = "",
    error: str | None = None,
    providers: Iterable[tuple[str, str]] = (),
    form_action: str = AUTHORIZE_PATH,
) -> str:
    """``providers``: (name, display_name) of the external login providers,
    each a "Log in with X" form carrying the same request and CSRF token.
    ``form_action``: where the password form posts (``/oauth1/authorize``
    for OAuth 1.0a)."""
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    external = "".join(
        f'<form method="post" action="{AUTHORIZE_PATH}" class="provider">{_hidden(hidden)}'
        '<input type="hidden" name="action" value="provider">'
        f'<button type="submit" name="provider" value="{escape(name)}">Log in with {escape(label)}</button></form>'
        for name, label in providers
    )
    return _page(
        "Sign in",
        f"<h1>Sign in to continue to {escape(app_name)}</h1>{err}{external}"
        + ("<p>or with a password here:</p>" if external else "")
        + f'<form method="post" action="{escape(form_action)}">{_hidden(hidden)}'
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
    form_action: str = AUTHORIZE_PATH,
) -> str:
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in sorted(scopes))
    listing = f"<ul>{items}</ul>" if items else "<p>No special permissions.</p>"
    return _page(
        "Authorize access",
        f"<h1>{escape(app_name)} wants to access your account</h1>"
        f"<p>Signed in as <strong>{escape(user)}</strong>. The application asks for:</p>{listing}"
        f"<p>You will be sent back to <code>{escape(redirect_host)}</code>.</p>"
        f'<form method="post" action="{escape(form_action)}">{_hidden(hidden)}'
        '<input type="hidden" name="action" value="consent">'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>',
    )


def error_page(title: str, message: str, link: tuple[str, str] | None = None) -> str:
    """``link``: (href, text), e.g. back to the sign-in page after a provider error."""
    more = f'<p><a href="{escape(link[0])}">{escape(link[1])}</a></p>' if link else ""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>{more}")


def logout_page(*, hidden: Mapping[str, str], app_name: str | None, user: str | None,
                form_action: str = "/oauth2/logout") -> str:
    """The sign-out question of OIDC RP-Initiated Logout §2, as a CSRF-bound form."""
    who = f"<p>Signed in as <strong>{escape(user)}</strong>.</p>" if user else ""
    asked = f" {escape(app_name)} asks you to sign out." if app_name else ""
    return _page(
        "Sign out",
        f"<h1>Sign out?</h1>{who}<p>This ends your session here and closes the live connections "
        f"of the applications you signed in to in it.{asked}</p>"
        f'<form method="post" action="{escape(form_action)}">{_hidden(hidden)}'
        '<button type="submit" name="action" value="logout">Sign out</button></form>',
    )
