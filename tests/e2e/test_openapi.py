"""The OpenAPI 3 document: valid, complete, and every operation documents its errors."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from dataspace.accounts.models import User
from tests.support.users import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def test_schema_generates_without_warnings() -> None:
    # --fail-on-warn turns any ambiguity in the generated schema into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def test_every_operation_documents_its_errors(consumer: User) -> None:
    schema = client_for(consumer).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["openapi"].startswith("3.")
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    ]
    assert len(operations) >= 12
    cannot_fail = {("/catalog.jsonld", "get"), ("/api/schema/", "get")}  # public, no input
    for path, method, op in operations:
        if (path, method) in cannot_fail:
            continue
        errors = [code for code in op["responses"] if code.startswith(("4", "5"))]
        assert errors, f"{method.upper()} {path} documents no error response"
    assert "/api/datasets/" in schema["paths"]
    upload = schema["paths"]["/api/datasets/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"400", "413"} <= set(upload["responses"])


def test_swagger_ui_is_served_without_a_cdn(consumer: User) -> None:
    response = client_for(consumer).get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
