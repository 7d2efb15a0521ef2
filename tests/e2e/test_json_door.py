"""The JSON door through REST: hostile or oversize bodies are refused with the error envelope."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from dataspace.accounts.models import User
from tests.support.users import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["details"], dict)


def post_raw(client: APIClient, path: str, body: bytes, content_type: str = "application/json") -> Any:
    return client.generic("POST", path, body, content_type=content_type)


def test_anonymous_deeply_nested_body_is_refused() -> None:
    # Before the JSON door this body killed the web process (SIGSEGV in the C JSON parser).
    response = post_raw(APIClient(), "/api/auth/token/", b"[" * 100_000 + b"]" * 100_000)
    assert_refused(response, 400, "nesting_too_deep")
    assert response.json()["error"]["details"] == {"max_depth": 32}


def test_nesting_inside_an_object_is_refused(consumer: User) -> None:
    body = b'{"agreement": "x", "operation": "mean", "purpose": "r", "params": ' + b'{"a":' * 40 + b"1" + b"}" * 41
    assert_refused(post_raw(client_for(consumer), "/api/jobs/", body), 400, "nesting_too_deep")


def test_body_over_the_json_limit_is_refused() -> None:
    body = json.dumps({"username": "u", "password": "x" * (1024 * 1024)}).encode()
    assert_refused(post_raw(APIClient(), "/api/auth/token/", body), 413, "body_too_large")


def test_body_over_djangos_limit_is_refused_with_the_envelope() -> None:
    # Past DATA_UPLOAD_MAX_MEMORY_SIZE Django itself refuses; the answer is still the envelope.
    body = json.dumps({"username": "u", "password": "x" * 3_000_000}).encode()
    assert_refused(post_raw(APIClient(), "/api/auth/token/", body), 413, "body_too_large")


def test_too_many_query_parameters_are_refused_with_the_envelope(consumer: User) -> None:
    query = "&".join(f"p{i}=1" for i in range(1001))
    assert_refused(client_for(consumer).get(f"/api/datasets/?{query}"), 400, "too_many_fields")


def test_malformed_json_is_a_validation_error() -> None:
    assert_refused(post_raw(APIClient(), "/api/auth/token/", b'{"username": '), 400, "validation_failed")


def test_the_api_takes_json_only(consumer: User) -> None:
    response = post_raw(
        client_for(consumer), "/api/me/wallet/register/", b"nonce=1", "application/x-www-form-urlencoded"
    )
    assert_refused(response, 415, "unsupported_media_type")


def test_a_reasonable_body_still_works(provider: User) -> None:
    body = json.dumps({"username": "prov", "password": "pw-prov-0123456789"}).encode()
    response = post_raw(APIClient(), "/api/auth/token/", body)
    assert response.status_code == 201, response.json()
