"""Debian's Chromium, headless, driven by Playwright's sync API, for the portal's browser tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def chromium(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A launched browser, closed on the way out with the database connections the test made."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still synchronous and on their own connection (Django's documented escape hatch).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The live server speaks plain HTTP; secure-only cookies would never come back.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()
            # Inside sync_playwright() the test's ORM calls run in a context of Playwright's, on
            # a connection pytest-django's teardown (outside it) never sees: left open, the test
            # database could not be dropped at the end of the run ("being accessed by other
            # users").
            connections.close_all()
