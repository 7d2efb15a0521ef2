"""The server-rendered provider portal: login, upload through the form, CSRF enforced."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.test import Client

from dataspace.accounts.models import User
from dataspace.catalog.models import Ingest

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def logged_in(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csv_file(content: bytes = b"a,b\n1,x\n2,y\n") -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = "portal.csv"
    return handle


def test_home_needs_login() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_provider_uploads_through_the_form(provider: User, isolated_vault: Path) -> None:
    response = logged_in(provider).post("/upload/", {"file": csv_file(), "title": "From the portal"}, follow=True)
    assert response.status_code == 200
    assert b"Upload received" in response.content
    ingest = Ingest.objects.get()
    assert ingest.metadata["title"] == "From the portal"
    assert b"portal.csv" in response.content


def test_portal_reports_a_bad_file_by_its_code(provider: User, isolated_vault: Path) -> None:
    response = logged_in(provider).post("/upload/", {"file": csv_file(b"a,a\n1,2\n"), "title": "x"}, follow=True)
    assert b"duplicate_column" in response.content
    assert not Ingest.objects.exists()
    assert not [p for p in (isolated_vault / "blobs").rglob("*") if p.is_file()]


def test_upload_without_csrf_token_is_refused(provider: User, isolated_vault: Path) -> None:
    response = logged_in(provider, csrf=True).post("/upload/", {"file": csv_file(), "title": "x"})
    assert response.status_code == 403
    assert not Ingest.objects.exists()
    assert not [p for p in (isolated_vault / "blobs").rglob("*") if p.is_file()]


def test_consumer_cannot_upload_through_the_portal(consumer: User, isolated_vault: Path) -> None:
    response = logged_in(consumer).post("/upload/", {"file": csv_file(), "title": "x"}, follow=True)
    assert b"Only data providers" in response.content
    assert not Ingest.objects.exists()
    assert not [p for p in (isolated_vault / "blobs").rglob("*") if p.is_file()]
