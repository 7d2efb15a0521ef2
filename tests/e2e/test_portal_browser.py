"""The provider portal in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataspace.accounts.models import Role
from dataspace.catalog import services
from dataspace.catalog.models import Ingest
from tests.support.users import make_user

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture
def page(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
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
            yield browser.new_page()
        finally:
            browser.close()


def test_provider_logs_in_uploads_and_sees_the_dataset(page: Any, live_server: Any, tmp_path: Path) -> None:
    make_user("alice", Role.PROVIDER)
    upload = tmp_path / "clinic.csv"
    upload.write_text("age,region\n" + "".join(f"{20 + i % 50},{['north', 'south'][i % 2]}\n" for i in range(200)))

    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice-0123456789")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Upload a dataset")

    page.set_input_files("#file", str(upload))
    page.fill("#title", "Clinic visits")
    page.fill("#keywords", "health, visits")
    page.click("form.upload button[type=submit]")
    page.wait_for_selector("text=Upload received")
    assert page.is_visible("text=clinic.csv")

    # The worker's job, run here: the browser then sees the finished dataset.
    services.ingest_run(ingest_id=Ingest.objects.get().id)
    page.reload()
    page.wait_for_selector("text=Clinic visits")
    assert page.locator("table").nth(0).inner_text().count("succeeded") == 1


def test_a_bad_file_is_explained_in_the_page(page: Any, live_server: Any, tmp_path: Path) -> None:
    make_user("bob", Role.PROVIDER)
    upload = tmp_path / "bad.csv"
    upload.write_bytes(b"a,a\n1,2\n")
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "bob")
    page.fill("#id_password", "pw-bob-0123456789")
    page.click("button[type=submit]")
    page.set_input_files("#file", str(upload))
    page.fill("#title", "Bad")
    page.click("form.upload button[type=submit]")
    page.wait_for_selector("text=duplicate_column")
    assert not Ingest.objects.exists()
