"""The HTML the authorization server shows: login, consent, device,
account and error pages, one layout and one stylesheet.

Plain HTML, every value through :func:`html.escape`, no scripts, no
external assets; every form carries a CSRF token (the authorization
forms also carry the authorization request in hidden fields).
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from realtime.http.responses import Response, html_response

AUTHORIZE_PATH = "/oauth2/authorize"

#: The one stylesheet of the login, consent, device and account pages,
#: inlined and allowed by its hash in the CSP (no 'unsafe-inline', no
#: request for a separate file, nothing external).
STYLESHEET = """
:root{--ink:#1d1f23;--muted:#5b616e;--line:#dfe2e7;--brand:#3451b2;--brand-ink:#fff;--bad:#a3222b;
--bad-bg:#fdecee;--ok-bg:#e9f6ee;--ok:#1f6b3a;--bg:#f4f5f7;--card:#fff}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--ink);margin:0}
header{max-width:34rem;margin:2.5rem auto 0;padding:0 .2rem;font-weight:600;color:var(--brand);letter-spacing:.02em}
main{max-width:34rem;margin:.8rem auto 3rem;background:var(--card);padding:2rem;border-radius:10px;
border:1px solid var(--line);box-shadow:0 1px 3px rgba(0,0,0,.06)}
h1{font-size:1.35rem;line-height:1.3;margin:0 0 1rem}
p{margin:.6rem 0}label{display:block;margin:.9rem 0 .25rem;font-weight:500}
input[type=text],input[type=password]{width:100%;padding:.6rem .7rem;font:inherit;border:1px solid #b9bec8;
border-radius:6px}
input:focus,button:focus{outline:2px solid var(--brand);outline-offset:2px}
button{font:inherit;margin:1rem .5rem 0 0;padding:.55rem 1.3rem;border-radius:6px;border:1px solid var(--brand);
background:var(--brand);color:var(--brand-ink);cursor:pointer}
button.secondary{background:var(--card);color:var(--brand)}
button.danger{background:var(--card);color:var(--bad);border-color:var(--bad)}
form.inline{display:inline}form.inline button{margin-top:.4rem}
.error{color:var(--bad);background:var(--bad-bg);padding:.6rem .8rem;border-radius:6px}
.notice{color:var(--ok);background:var(--ok-bg);padding:.6rem .8rem;border-radius:6px}
.muted{color:var(--muted);font-size:.92rem}
.code{font:600 1.6rem/1.2 ui-monospace,"SFMono-Regular",Menlo,monospace;letter-spacing:.15em;text-align:center;
padding:.6rem;border:1px dashed var(--line);border-radius:6px}
input.code{text-transform:uppercase}
ul.scopes{padding-left:1.2rem}code{background:#eef0f3;padding:0 .25rem;border-radius:3px}
table{width:100%;border-collapse:collapse;margin:.8rem 0}
th,td{text-align:left;padding:.55rem .4rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.85rem;color:var(--muted);font-weight:600}
body.wide header,body.wide main{max-width:52rem}td.when{white-space:nowrap}
"""

#: The CSP source that allows :data:`STYLESHEET` and nothing else.
STYLE_SOURCE = "'sha256-" + base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode() + "'"

PRODUCT = "realtime"


def _page(title: str, body: str, *, wide: bool = False) -> str:
    body_tag = '<body class="wide">' if wide else "<body>"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{STYLESHEET}</style></head>"
        f"{body_tag}<header>{PRODUCT}</header><main>{body}</main></body></html>\n"
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
        f"default-src 'none'; style-src {STYLE_SOURCE}; img-src 'self' data:; "
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
    redirect_host: str | None,
    form_action: str = AUTHORIZE_PATH,
    user_code: str | None = None,
) -> str:
    """``redirect_host``: where Allow sends the browser (None on the device
    page, which sends it nowhere); ``user_code``: the code the device
    shows, repeated so the user can check it is theirs (RFC 8628 §5.4)."""
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in sorted(scopes))
    listing = f'<ul class="scopes">{items}</ul>' if items else "<p>No special permissions.</p>"
    where = (f"<p class=\"muted\">You will be sent back to <code>{escape(redirect_host)}</code>.</p>"
             if redirect_host else "")
    code = (f'<p>Only allow if your device shows this code:</p><p class="code">{escape(user_code)}</p>'
            if user_code else "")
    return _page(
        "Authorize access",
        f"<h1>{escape(app_name)} wants to access your account</h1>"
        f"<p>Signed in as <strong>{escape(user)}</strong>. The application asks for:</p>{listing}{code}{where}"
        f'<form method="post" action="{escape(form_action)}">{_hidden(hidden)}'
        '<input type="hidden" name="action" value="consent">'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button></form>',
    )


def device_code_page(*, user: str, hidden: Mapping[str, str], error: str | None = None,
                     code: str = "", form_action: str = "/device") -> str:
    """Where the user types the code their device shows (RFC 8628 §3.3)."""
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _page(
        "Connect a device",
        f"<h1>Connect a device</h1>{err}"
        f"<p>Signed in as <strong>{escape(user)}</strong>. Enter the code shown on your device.</p>"
        f'<form method="post" action="{escape(form_action)}">{_hidden(hidden)}'
        '<input type="hidden" name="action" value="code">'
        '<label for="user_code">Code</label>'
        f'<input type="text" id="user_code" name="user_code" class="code" value="{escape(code)}" '
        'placeholder="XXXX-XXXX" maxlength="20" autocomplete="off" autocapitalize="characters" '
        'spellcheck="false" required autofocus>'
        '<button type="submit">Continue</button></form>',
    )


def device_done_page(*, approved: bool, app_name: str) -> str:
    if approved:
        return _page("Device connected",
                     f'<h1>Device connected</h1><p class="notice">{escape(app_name)} is now signed in.</p>'
                     "<p>You can close this page and return to your device.</p>"
                     '<p class="muted"><a href="/account">Manage connected apps</a></p>')
    return _page("Request denied",
                 f"<h1>Request denied</h1><p>{escape(app_name)} was not given access.</p>"
                 "<p>You can close this page.</p>")


def account_page(*, user: str, apps: Iterable[tuple[str, str, Iterable[str], str, int]],
                 hidden: Mapping[str, str], notice: str | None = None,
                 form_action: str = "/account/revoke") -> str:
    """``apps``: (client_id, name, scopes, granted when, live connections)."""
    rows = []
    for client_id, name, scopes, when, live in apps:
        scope_list = " ".join(f"<code>{escape(s)}</code>" for s in sorted(scopes)) or '<span class="muted">none</span>'
        rows.append(
            f"<tr><td><strong>{escape(name)}</strong><br><span class=\"muted\">{escape(client_id)}</span></td>"
            f"<td>{scope_list}</td><td class=\"when\">{escape(when)}</td><td>{live}</td>"
            f'<td><form method="post" action="{escape(form_action)}" class="inline">{_hidden(hidden)}'
            f'<input type="hidden" name="client_id" value="{escape(client_id)}">'
            f'<button type="submit" class="danger">Withdraw</button></form></td></tr>'
        )
    note = f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""
    if rows:
        listing = ("<table><thead><tr><th>App</th><th>Access</th><th>Granted</th><th>Live connections</th>"
                   f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        listing = "<p>You have not granted any app access.</p>"
    everywhere = (f'<form method="post" action="{escape(form_action)}">{_hidden(hidden)}'
                  '<input type="hidden" name="all" value="1">'
                  '<button type="submit" class="danger">Sign out everywhere</button></form>'
                  '<p class="muted">Withdrawing ends the app\'s tokens and closes its live connections at once.</p>')
    return _page("Your account",
                 f"<h1>Apps with access to your account</h1>{note}"
                 f"<p>Signed in as <strong>{escape(user)}</strong>.</p>{listing}{everywhere}", wide=True)


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
