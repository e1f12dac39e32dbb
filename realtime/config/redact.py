"""URLs fit for logs and error messages: no password.

Pure (no I/O), so both the config loader's errors and the broker's logs
(``realtime.net.redis``) use it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def redact_url(url: str) -> str:
    """``url`` fit for logs and error messages: a password in its userinfo
    or its query becomes ``***`` (``redis://:***@host:6379/0``,
    ``unix:///run/redis.sock?password=***``); a user name alone is kept.

    A malformed value that does not parse into a host but has an ``@``
    (``user:secret@host:6379``, a scheme without ``//``) may still hold a
    password before it: everything up to the last ``@`` becomes ``***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" in the host
        parts = None
    if parts is None or ("@" in url and "@" not in parts.netloc):
        return "***@" + url.rpartition("@")[2] if "@" in url else "***"
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostinfo}")
    if parts.query:  # redis-py style ``?password=...`` (unix:// URLs)
        query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    # Not urlunsplit: it drops the "//" of an empty host (unix:///path).
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return shown + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
