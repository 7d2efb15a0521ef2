"""The portal's door in a real browser (Debian's Chromium driven by Playwright): the root asks
for a login, then serves the React app, whose upload goes through the REST API with the page's
CSRF token; a bad file is named by its code. No worker: the test runs the ingest itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from dataspace.accounts.models import Role
from dataspace.catalog import services
from dataspace.catalog.models import Ingest
from tests.support.browser import CHROMIUM, chromium
from tests.support.users import make_user

DIST = Path(django_settings.FRONTEND_DIST) / "index.html"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not DIST.exists(), reason="the portal is not built (make install builds frontend/dist)"),
]


@pytest.fixture
def page(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with chromium(settings, monkeypatch) as browser:
        yield browser.new_page()


def log_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_url("**/login/**")  # the app is behind the login
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}-0123456789")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Log out")


def test_provider_logs_in_uploads_and_sees_the_dataset(page: Any, live_server: Any, tmp_path: Path) -> None:
    make_user("alice", Role.PROVIDER)
    upload = tmp_path / "clinic.csv"
    upload.write_text("age,region\n" + "".join(f"{20 + i % 50},{['north', 'south'][i % 2]}\n" for i in range(200)))

    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/#/provider/upload")
    page.set_input_files("#file", str(upload))
    page.wait_for_selector("tr[data-column=age]")
    page.fill("#title", "Clinic visits")
    page.fill("#keywords", "health, visits")
    page.click("form button[type=submit]")
    page.wait_for_selector("[data-testid=sent-percent] >> text=100%")
    page.wait_for_selector("[data-testid=ingest]")
    ingest = Ingest.objects.get()
    assert ingest.metadata["title"] == "Clinic visits"
    assert ingest.metadata["keywords"] == ["health", "visits"]

    # The worker's job, run here: the page, still polling, sees the finished dataset.
    services.ingest_run(ingest_id=ingest.id)
    page.wait_for_selector("[data-testid=ingest][data-status=succeeded]")
    page.click("text=Open the dataset")
    page.wait_for_selector("h1 >> text=Clinic visits")


def test_a_bad_file_is_explained_in_the_page(page: Any, live_server: Any, tmp_path: Path) -> None:
    make_user("bob", Role.PROVIDER)
    upload = tmp_path / "bad.csv"
    upload.write_bytes(b"a,a\nx,y\n")
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/#/provider/upload")
    page.set_input_files("#file", str(upload))
    page.fill("#title", "Bad")
    page.click("form button[type=submit]")
    page.wait_for_selector("[role=alert][data-code=duplicate_column]")
    assert page.is_visible("text=The file has two columns with the same name.")
    assert not Ingest.objects.exists()
