"""ISSUE-13: GET /api/operations/ lists ``algorithm`` with its parameters, so the portal's
generated form and the SDK see it next to the HE operations."""

from __future__ import annotations

import pytest

from dataspace.accounts.models import Role
from dataspace.compute.he.operations import REGISTRY
from dataspace.compute.job_requests import tee_params
from tests.support.users import client_for, make_user

pytestmark = pytest.mark.django_db


def test_the_algorithm_operation_is_listed_with_its_parameters() -> None:
    listed = client_for(make_user("lab", Role.CONSUMER)).get("/api/operations/").json()
    by_name = {op["name"]: op for op in listed}
    assert set(by_name) == {*REGISTRY, "algorithm"}
    assert all(op["engine"] == "he" and op["depth"] is not None for name, op in by_name.items() if name != "algorithm")

    algorithm = by_name["algorithm"]
    assert algorithm["engine"] == "tee"
    assert algorithm["depth"] is None
    assert algorithm["precision_significant_digits"] is None
    schema = algorithm["parameters"]
    assert schema["required"] == ["algorithm"]
    assert schema["properties"]["algorithm"] == {
        "type": "string",
        "format": "uuid",
        "description": "id of an algorithm approved for the agreement's offer",
    }
    assert schema["properties"]["params"]["type"] == "object"
    # What the listing describes is what a job request is checked against.
    algorithm_id = "6f1c1b8e-1d2f-4c4e-9a51-0f2d3f6b8a10"
    assert str(tee_params({"algorithm": algorithm_id, "params": {"c": 1}})[0]) == algorithm_id
    assert set(schema["properties"]) == {"algorithm", "params"}
