"""Uploading through REST: the happy path, and every bad input refused with nothing left behind."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from django.test import override_settings

from dataspace.accounts.models import User
from dataspace.catalog import services
from dataspace.catalog.models import Dataset, Ingest
from dataspace.vault.models import DataKey
from tests.support.files import parquet_bytes, parquet_lying_about_rows, registry_csv
from tests.support.users import client_for, upload

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def blobs_on_disk(vault_dir: Path) -> list[Path]:
    return [p for p in (vault_dir / "blobs").rglob("*") if p.is_file()]


def assert_nothing_left(vault_dir: Path) -> None:
    assert not Dataset.objects.exists()
    assert not Ingest.objects.exists()
    assert not DataKey.objects.exists()
    assert blobs_on_disk(vault_dir) == []


def test_upload_is_sealed_then_ingested(provider: User, isolated_vault: Path) -> None:
    content = registry_csv(2_000)
    response = upload(client_for(provider), content, name="registry.csv", title="Registry", keywords="health, demo")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert len(body["content_sha256"]) == 64
    [blob] = blobs_on_disk(isolated_vault)
    assert b"record_id" not in blob.read_bytes()  # sealed on arrival

    services.ingest_run(ingest_id=body["id"])  # what the worker does; integration tests use a real one
    status = client_for(provider).get(f"/api/ingests/{body['id']}/").json()
    assert (status["status"], status["progress"]) == ("succeeded", 100)
    dataset = client_for(provider).get(f"/api/datasets/{status['dataset']}/").json()
    assert dataset["title"] == "Registry"
    assert dataset["keywords"] == ["health", "demo"]
    assert dataset["row_count"] == 2_000
    assert dataset["profile"]["rows_approx"] == 2_000
    import hashlib

    assert dataset["content_sha256"] == hashlib.sha256(content).hexdigest()


def test_parquet_upload(provider: User) -> None:
    data = parquet_bytes(pa.table({"age": list(range(50)), "sex": ["F", "M"] * 25}))
    response = upload(client_for(provider), data, name="t.parquet")
    assert response.status_code == 202
    assert services.ingest_run(ingest_id=response.json()["id"]) is not None


BAD_UPLOADS: list[tuple[str, bytes, str, dict[str, Any]]] = [
    ("empty.csv", b"", "file_empty", {}),
    ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "ragged_rows", {}),
    ("latin1.csv", "a,b\n1,caf\u00e9\n".encode("latin-1"), "invalid_encoding", {}),
    ("binary.csv", bytes(range(256)) * 4, "binary_content", {}),
    ("dup.csv", b"a,a\n1,2\n", "duplicate_column", {}),
    ("blank.csv", b"a,\n1,2\n", "empty_column_name", {}),
    ("sql.csv", b'a,"b\'; DROP TABLE x;--"\n1,2\n', "invalid_column_name", {}),
    ("html.csv", b"a,<img src=x onerror=alert(1)>\n1,2\n", "invalid_column_name", {}),
    ("header.csv", b"a,b\n", "no_rows", {}),
    ("notes.txt", b"a,b\n1,2\n", "unsupported_format", {}),
    ("fake.parquet", b"a,b\n1,2\n", "malformed_parquet", {}),
    ("lies.parquet", parquet_lying_about_rows(pa.table({"a": [1, 2, 3]}), 40), "parquet_schema_mismatch", {}),
    ("ok.csv", b"a,b\n1,2\n", "validation_failed", {"title": ""}),
    ("ok.csv", b"a,b\n1,2\n", "validation_failed", {"delimiter": "x"}),
]


@pytest.mark.parametrize(
    ("name", "content", "code", "fields"), BAD_UPLOADS, ids=[b[0] + ":" + b[2] for b in BAD_UPLOADS]
)
def test_bad_upload_is_refused_and_leaves_nothing(
    provider: User, isolated_vault: Path, name: str, content: bytes, code: str, fields: dict[str, Any]
) -> None:
    response = upload(client_for(provider), content, name=name, **fields)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert_nothing_left(isolated_vault)


def test_oversize_upload_is_refused_with_413(provider: User, isolated_vault: Path) -> None:
    with override_settings(UPLOAD_MAX_BYTES=100_000):
        response = upload(client_for(provider), registry_csv(5_000), name="big.csv")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert_nothing_left(isolated_vault)


def test_missing_file_is_refused(provider: User) -> None:
    response = client_for(provider).post("/api/datasets/", {"title": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "file_missing"


def test_json_body_is_refused(provider: User) -> None:
    response = client_for(provider).post("/api/datasets/", {"title": "x"}, format="json")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_consumer_cannot_upload(consumer: User, isolated_vault: Path) -> None:
    response = upload(client_for(consumer), b"a,b\n1,2\n")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_required"
    assert_nothing_left(isolated_vault)


def test_failure_found_late_fails_the_ingest_and_removes_everything(provider: User, isolated_vault: Path) -> None:
    # Valid head, ragged row after the first megabyte: the API accepts, the ingest fails.
    content = b"a,b\n" + b"1,2\n" * 400_000 + b"3,4,5\n"
    response = upload(client_for(provider), content)
    assert response.status_code == 202
    assert services.ingest_run(ingest_id=response.json()["id"]) is None
    ingest = client_for(provider).get(f"/api/ingests/{response.json()['id']}/").json()
    assert ingest["status"] == "failed"
    assert ingest["error"]["code"] == "ragged_rows"
    assert "line 400002" in ingest["error"]["message"]
    assert not Dataset.objects.exists()
    assert not DataKey.objects.exists()
    assert blobs_on_disk(isolated_vault) == []


def test_ingest_run_is_idempotent(provider: User) -> None:
    response = upload(client_for(provider), b"a,b\n1,2\n3,4\n")
    first = services.ingest_run(ingest_id=response.json()["id"])
    assert first is not None
    assert services.ingest_run(ingest_id=response.json()["id"]) is None
    assert Dataset.objects.count() == 1


def test_session_upload_without_csrf_leaves_nothing(provider: User, isolated_vault: Path) -> None:
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(provider)
    response = upload(client, b"a,b\n1,2\n")
    assert response.status_code == 403
    assert_nothing_left(isolated_vault)


def named(content: bytes, name: str = "data.csv") -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def post_form(user: User, data: dict[str, Any]) -> Any:
    return client_for(user).post("/api/datasets/", data, format="multipart")


def assert_refused_leaving_nothing(response: Any, status: int, code: str, vault_dir: Path) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert_nothing_left(vault_dir)
    assert not (vault_dir / "blobs" / "uploads").exists() or not any((vault_dir / "blobs" / "uploads").iterdir())


def test_a_second_file_is_refused_and_the_first_removed(provider: User, isolated_vault: Path) -> None:
    response = post_form(provider, {"file": [named(b"a,b\n1,2\n"), named(b"a,b\n3,4\n")], "title": "t"})
    assert_refused_leaving_nothing(response, 400, "unexpected_file", isolated_vault)


def test_a_file_in_another_field_is_refused(provider: User, isolated_vault: Path) -> None:
    response = post_form(provider, {"file": named(b"a,b\n1,2\n"), "extra": named(b"x"), "title": "t"})
    assert_refused_leaving_nothing(response, 400, "unexpected_file", isolated_vault)


def test_too_many_fields_after_the_file_are_refused(provider: User, isolated_vault: Path) -> None:
    fields = {f"field{i}": "1" for i in range(1001)}
    response = post_form(provider, {"file": named(b"a,b\n1,2\n"), "title": "t", **fields})
    assert_refused_leaving_nothing(response, 400, "too_many_fields", isolated_vault)


def test_an_oversize_field_after_the_file_is_refused(provider: User, isolated_vault: Path) -> None:
    response = post_form(provider, {"file": named(b"a,b\n1,2\n"), "title": "t", "description": "x" * 3_000_000})
    assert_refused_leaving_nothing(response, 413, "body_too_large", isolated_vault)


def test_a_body_broken_inside_the_file_leaves_no_half_sealed_blob(provider: User, isolated_vault: Path) -> None:
    # Base64 transfer encoding with a truncated last quantum: Django gives up after the handler
    # has sealed part of the file.
    body = (
        b'--B\r\nContent-Disposition: form-data; name="title"\r\n\r\nt\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        b"Content-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"a,b\n" + b"1,2\n" * 1000)
        + b"QQ\r\n--B--\r\n"
    )
    response = client_for(provider).generic(
        "POST", "/api/datasets/", body, content_type="multipart/form-data; boundary=B"
    )
    assert_refused_leaving_nothing(response, 400, "validation_failed", isolated_vault)


def test_deeply_nested_encryption_options_are_refused(provider: User, isolated_vault: Path) -> None:
    options = '{"buckets": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001
    response = upload(client_for(provider), b"a,b\n1,2\n", encryption=options)
    assert_refused_leaving_nothing(response, 400, "nesting_too_deep", isolated_vault)


BAD_BOUNDS: list[tuple[str, str]] = [
    ('{"bounds": {"a": [1]}}', "bounds_invalid"),
    ('{"bounds": {"a": [1, 2, 3]}}', "bounds_invalid"),
    ('{"bounds": {"a": [2, 1]}}', "bounds_invalid"),
    ('{"bounds": {"a": [1, 1]}}', "bounds_invalid"),
    ('{"bounds": {"a": ["0", 1]}}', "bounds_invalid"),
    ('{"bounds": {"a": [true, 2]}}', "bounds_invalid"),
    ('{"bounds": {"a": [0, 1e400]}}', "bounds_invalid"),  # parses as infinity
    ('{"bounds": {"a": [-1e400, 1]}}', "bounds_invalid"),
    ('{"bounds": {"a": [NaN, 1]}}', "validation_failed"),  # not JSON: refused by the parser
    ('{"bounds": {"a": {"lo": 0, "hi": 1}}}', "bounds_invalid"),
    ('{"bounds": [[0, 1]]}', "bounds_invalid"),
    ('{"bounds": {"nope": [0, 1]}}', "bounds_column_unknown"),
    ('{"bounds": {"b": [0, 1]}}', "bounds_column_unknown"),  # b is categorical
]


@pytest.mark.parametrize(("options", "code"), BAD_BOUNDS, ids=[f"{c}:{o}" for o, c in BAD_BOUNDS])
def test_bad_bounds_are_refused_and_leave_nothing(
    provider: User, isolated_vault: Path, options: str, code: str
) -> None:
    response = upload(client_for(provider), b"a,b\n1,x\n2,y\n3,x\n", encryption=options)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert_nothing_left(isolated_vault)


def test_declared_bounds_are_kept_for_the_store(provider: User) -> None:
    options = '{"bounds": {"a": [0, 10], "c": [-1.5, 2]}, "buckets": {"a": [0, 5, 10]}}'
    response = upload(client_for(provider), b"a,b,c\n1,x,0.5\n2,y,1.5\n", encryption=options)
    assert response.status_code == 202, response.json()
    ingest = Ingest.objects.get(pk=response.json()["id"])
    assert ingest.metadata["encryption"]["bounds"] == {"a": [0.0, 10.0], "c": [-1.5, 2.0]}


def test_bounds_are_checked_against_a_parquet_schema(provider: User, isolated_vault: Path) -> None:
    data = parquet_bytes(pa.table({"age": list(range(50)), "sex": ["F", "M"] * 25}))
    ok = upload(client_for(provider), data, name="t.parquet", encryption='{"bounds": {"age": [0, 120]}}')
    assert ok.status_code == 202, ok.json()
    refused = upload(client_for(provider), data, name="t.parquet", encryption='{"bounds": {"sex": [0, 1]}}')
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "bounds_column_unknown"


# ISSUE-15: the provider corrects an inferred column type at upload.

WARDS = b"ward,cost,note\n" + b"".join(f"{7 + i % 3:03d},{100 + i},n{i}\n".encode() for i in range(30))


def schema_of(provider: User, ingest_id: str) -> dict[str, dict[str, Any]]:
    ingest = Ingest.objects.get(pk=ingest_id)
    assert ingest.status == Ingest.Status.SUCCEEDED
    assert ingest.dataset is not None
    return {c["name"]: c for c in ingest.dataset.schema}


def test_corrected_types_replace_the_inferred_ones(provider: User) -> None:
    inferred = upload(client_for(provider), WARDS)
    services.ingest_run(ingest_id=inferred.json()["id"])
    as_inferred = schema_of(provider, inferred.json()["id"])
    assert (as_inferred["ward"]["type"], as_inferred["cost"]["type"]) == ("integer", "integer")

    corrected = upload(client_for(provider), WARDS, column_types='{"ward": "categorical", "cost": "float"}')
    assert corrected.status_code == 202, corrected.json()
    services.ingest_run(ingest_id=corrected.json()["id"])
    schema = schema_of(provider, corrected.json()["id"])
    assert schema["ward"]["type"] == "categorical"
    assert schema["ward"]["categories"] == ["007", "008", "009"]  # the file's spelling, not 7
    assert schema["cost"]["type"] == "float"
    assert schema["note"]["type"] == "text"


def test_an_unknown_type_is_refused_with_a_stable_code(provider: User, isolated_vault: Path) -> None:
    response = upload(client_for(provider), WARDS, column_types='{"ward": "postcode"}')
    assert_refused_leaving_nothing(response, 400, "unsupported_column_type", isolated_vault)
    details = response.json()["error"]["details"]
    assert details["column"] == "ward"
    assert "categorical" in details["supported"]


def test_a_type_for_a_missing_column_is_refused(provider: User, isolated_vault: Path) -> None:
    response = upload(client_for(provider), WARDS, column_types='{"wards": "categorical"}')
    assert_refused_leaving_nothing(response, 400, "column_not_found", isolated_vault)


def test_types_must_be_an_object_of_names(provider: User, isolated_vault: Path) -> None:
    response = upload(client_for(provider), WARDS, column_types='["ward"]')
    assert_refused_leaving_nothing(response, 400, "validation_failed", isolated_vault)


def test_a_correction_the_column_cannot_take_fails_the_ingest_naming_it(provider: User) -> None:
    response = upload(client_for(provider), WARDS, column_types='{"note": "float"}')
    assert response.status_code == 202, response.json()
    services.ingest_run(ingest_id=response.json()["id"])
    ingest = Ingest.objects.get(pk=response.json()["id"])
    assert ingest.status == Ingest.Status.FAILED
    status = client_for(provider).get(f"/api/ingests/{ingest.id}/").json()
    assert status["error"]["code"] == "unsupported_column_type"
    assert "'note'" in status["error"]["message"]


def test_bounds_on_a_column_corrected_to_categorical_are_refused(provider: User, isolated_vault: Path) -> None:
    response = upload(
        client_for(provider),
        WARDS,
        column_types='{"ward": "categorical"}',
        encryption='{"bounds": {"ward": [0, 10]}}',
    )
    assert_refused_leaving_nothing(response, 400, "bounds_column_unknown", isolated_vault)


@pytest.mark.parametrize("group_by", ['{"group_by": ["b"]}', '{"group_by": {"b": "a"}}', '{"group_by": {"b": [1]}}'])
def test_malformed_group_by_declarations_are_refused(provider: User, isolated_vault: Path, group_by: str) -> None:
    response = upload(client_for(provider), b"a,b\n1,x\n2,y\n3,x\n", encryption=group_by)
    assert_refused_leaving_nothing(response, 400, "validation_failed", isolated_vault)


def test_declared_group_by_is_kept_for_the_store(provider: User) -> None:
    options = '{"bounds": {"a": [0, 10]}, "group_by": {"b": ["a"]}}'
    response = upload(client_for(provider), b"a,b\n1,x\n2,y\n", encryption=options)
    assert response.status_code == 202, response.json()
    ingest = Ingest.objects.get(pk=response.json()["id"])
    assert ingest.metadata["encryption"]["group_by"] == {"b": ["a"]}
