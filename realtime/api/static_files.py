"""The fixed files of the browser pages (the demo at ``/demo/``, the admin
console at ``/admin/``): read from ``static/`` beside this module, served
with the headers every such page gets."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"

Headers = tuple[tuple[str, str], ...]


@lru_cache(maxsize=None)
def read_static(name: str) -> bytes:
    """A file of ``static/``, read once.

    Beside this module (package data, see pyproject.toml).  Not
    importlib.resources: under an editable install, run from another
    directory, ``realtime`` can resolve as a namespace package.
    """
    return (STATIC / name).read_bytes()


def static_headers(content_type: str, csp: str, html_headers: Headers = ()) -> Headers:
    """The content type, then for a page its CSP, ``no-store`` (a callback
    URL carries the code: never cache it) and ``html_headers``; for
    scripts and styles ``no-cache``."""
    headers: Headers = (("content-type", content_type),)
    if content_type.startswith("text/html"):
        return headers + (("content-security-policy", csp), ("cache-control", "no-store")) + html_headers
    return headers + (("cache-control", "no-cache"),)
