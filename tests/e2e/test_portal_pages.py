"""The portal's pages: the React app at ``/`` behind the login, and the uploads it makes through
the REST API with the session cookie, where CSRF is enforced (the page carries the token)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from dataspace.accounts.models import User
from dataspace.catalog.models import Ingest

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture(autouse=True)
def built_app(settings: Any, tmp_path: Path) -> Path:
    """A stand-in for Vite's build: the page Django serves is the built index.html."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text(
        '<!doctype html><html><head><title>Redlake</title></head><body><div id="root"></div></body></html>'
    )
    settings.FRONTEND_DIST = dist
    return dist


def logged_in(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csv_file(content: bytes = b"a,b\n1,x\n2,y\n") -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = "portal.csv"
    return handle


def boot_of(page: bytes) -> dict[str, Any]:
    found = re.search(rb'<script id="redlake-boot" type="application/json">(.*?)</script>', page)
    assert found, "the page carries no boot document"
    boot: dict[str, Any] = json.loads(found.group(1))
    return boot


def no_blobs(vault: Path) -> bool:
    return not [p for p in (vault / "blobs").rglob("*") if p.is_file()]


def test_root_needs_login() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_old_app_address_leads_to_the_root() -> None:
    response = Client().get("/app/")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_root_serves_the_app_with_a_csrf_token_and_no_cache(provider: User) -> None:
    response = logged_in(provider).get("/")
    assert response.status_code == 200
    assert b'<div id="root">' in response.content
    assert boot_of(response.content)["csrf"]
    assert response["Cache-Control"] == "no-store"


def test_login_page_refuses_a_post_without_csrf_token(provider: User) -> None:
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": provider.username, "password": "x"})
    assert response.status_code == 403


def test_provider_uploads_with_the_pages_csrf_token(provider: User, isolated_vault: Path) -> None:
    client = logged_in(provider, csrf=True)
    token = boot_of(client.get("/").content)["csrf"]
    response = client.post(
        "/api/datasets/", {"file": csv_file(), "title": "From the portal"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 202, response.content
    assert Ingest.objects.get().metadata["title"] == "From the portal"


def test_upload_without_csrf_token_is_refused_and_nothing_kept(provider: User, isolated_vault: Path) -> None:
    client = logged_in(provider, csrf=True)
    client.get("/")  # the CSRF cookie is set, but the header is missing
    response = client.post("/api/datasets/", {"file": csv_file(), "title": "x"})
    assert response.status_code == 403
    assert not Ingest.objects.exists()
    assert no_blobs(isolated_vault)


def test_portal_upload_reports_a_bad_file_by_its_code(provider: User, isolated_vault: Path) -> None:
    response = logged_in(provider).post("/api/datasets/", {"file": csv_file(b"a,a\n1,2\n"), "title": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate_column"
    assert not Ingest.objects.exists()
    assert no_blobs(isolated_vault)


def test_consumer_cannot_upload_through_the_portal(consumer: User, isolated_vault: Path) -> None:
    response = logged_in(consumer).post("/api/datasets/", {"file": csv_file(), "title": "x"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_required"
    assert not Ingest.objects.exists()
    assert no_blobs(isolated_vault)
