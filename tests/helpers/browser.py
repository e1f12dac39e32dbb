"""Debian's headless Chromium, driven through Playwright's sync API.

The browser is launched by path; a missing browser (or Playwright) is a
failure that says what to install, never a skip.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000


def need_browser() -> Any:
    """The Playwright sync API, or a failure naming what to install."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(`apt-get install chromium`; tools/test.sh does it)", pytrace=False)
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[test]'", pytrace=False)
    return sync_api


def launch_chromium(pw: Any) -> Any:
    """Start headless Chromium from a ``sync_playwright()`` context."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
