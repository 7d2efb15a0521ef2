"""The SDK's HTTP behaviour against a mocked platform (respx): retries and their delays, timeouts,
pagination, every API error code as its exception and CLI exit code, the Idempotency-Key of job
submissions, an expired or revoked token, a wrong chain id. Delays are asserted as the values the
client asks its injected ``sleep`` for, never as wall time."""

from __future__ import annotations

import email.utils
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from eth_account import Account

from dataspace.errors import ErrorCode, http_status_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk" / "src"))

from redlake_client import cli, errors, signing  # noqa: E402
from redlake_client.client import Client  # noqa: E402
from redlake_client.models import Dataset  # noqa: E402

pytestmark = pytest.mark.smoke
URL = "http://redlake.test"
API = URL + "/api/"
AGREEMENT = "00000000-0000-0000-0000-00000000000a"
JOB = "00000000-0000-0000-0000-00000000000b"


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> Iterator[Client]:
    with Client(URL, "t0ken", sleep=sleeps.append, clock=lambda: 1_000_000.0, custodians=[]) as made:
        yield made


def error(status: int, code: str, message: str = "m", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "details": {}}}, headers=headers or {}
    )


def me() -> httpx.Response:
    return httpx.Response(200, json={"username": "analyst", "roles": ["consumer"]})


def job_body(status: str = "requested") -> dict[str, Any]:
    return {
        "id": JOB,
        "status": status,
        "agreement": AGREEMENT,
        "dataset": "00000000-0000-0000-0000-00000000000c",
        "operation": "mean",
        "params": {"column": "cost"},
        "purpose": "research",
        "epsilon": 0.1,
    }


def space_body(chain_id: int = 31337) -> dict[str, Any]:
    return {
        "chain_id": chain_id,
        "rpc_url": "http://127.0.0.1:8545",
        "contracts": [
            {"name": "UsageAgreements", "address": "0x" + "11" * 20, "deployed_block": 3, "tx_hash": "0x" + "aa" * 32},
            {
                "name": "CustodianRegistry",
                "address": "0x" + "22" * 20,
                "deployed_block": 4,
                "tx_hash": "0x" + "bb" * 32,
            },
        ],
        "token": {"address": "0x" + "33" * 20, "symbol": "RLT", "decimals": 18},
        "custodians": [{"address": "0x" + "44" * 20, "valid_from_block": 5, "valid_until_block": None}],
        "tee": {"backend": "sandbox", "label": "SIMULATED sandbox", "simulated": True},
    }


# ---------------------------------------------------------------- retries


def test_429_and_503_are_retried_after_the_delay_retry_after_asks_for(
    api: respx.MockRouter, client: Client, sleeps: list[float]
) -> None:
    route = api.get("me/").mock(
        side_effect=[
            error(429, "throttled", headers={"Retry-After": "3"}),
            error(503, "chain_unavailable", headers={"Retry-After": "1.5"}),
            me(),
        ]
    )
    assert client.me().username == "analyst"
    assert route.call_count == 3
    assert sleeps == [3.0, 1.5]


def test_a_retry_after_date_is_read_against_the_clock(
    api: respx.MockRouter, client: Client, sleeps: list[float]
) -> None:
    in_seven_seconds = email.utils.formatdate(1_000_007.0, usegmt=True)
    api.get("me/").mock(side_effect=[error(503, "broker_unavailable", headers={"Retry-After": in_seven_seconds}), me()])
    client.me()
    assert sleeps == [7.0]


def test_a_retry_after_beyond_the_ceiling_waits_the_ceiling(api: respx.MockRouter, sleeps: list[float]) -> None:
    api.get("me/").mock(side_effect=[error(429, "throttled", headers={"Retry-After": "3600"}), me()])
    Client(URL, "t", sleep=sleeps.append, max_backoff=12.0).me()
    assert sleeps == [12.0]


def test_without_retry_after_the_backoff_doubles_with_jitter_and_ends(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.get("me/").mock(return_value=error(503, "chain_unavailable"))
    limited = Client(URL, "t", sleep=sleeps.append, retries=4, backoff=0.5, max_backoff=3.0)
    with pytest.raises(errors.ServiceUnavailable) as raised:
        limited.me()
    assert raised.value.code == "chain_unavailable" and raised.value.exit_code == errors.EXIT_UNAVAILABLE
    assert route.call_count == 5 and len(sleeps) == 4
    for attempt, delay in enumerate(sleeps):
        ceiling = min(0.5 * 2**attempt, 3.0)
        assert ceiling / 2 <= delay <= ceiling


def test_other_errors_are_not_retried(api: respx.MockRouter, client: Client, sleeps: list[float]) -> None:
    route = api.get("me/").mock(return_value=error(500, "blob_tampered"))
    with pytest.raises(errors.ApiError):
        client.me()
    assert route.call_count == 1 and sleeps == []


# ---------------------------------------------------------------- timeouts


def test_the_timeout_is_given_to_every_request_and_a_timed_out_read_is_retried(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.get("me/").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), me()])
    patient = Client(URL, "t", timeout=2.5, sleep=sleeps.append)
    assert patient.me().username == "analyst"
    assert route.call_count == 3 and len(sleeps) == 2
    assert route.calls[0].request.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


def test_a_timed_out_write_without_idempotency_key_is_not_repeated(
    api: respx.MockRouter, client: Client, sleeps: list[float]
) -> None:
    route = api.post("agreements/").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(errors.NetworkError, match="agreements/") as raised:
        client.register_agreement(AGREEMENT, "0x" + "ab" * 32)
    assert raised.value.exit_code == errors.EXIT_UNAVAILABLE
    assert route.call_count == 1 and sleeps == []


def test_reads_that_keep_timing_out_end_in_a_network_error(api: respx.MockRouter, sleeps: list[float]) -> None:
    route = api.get("me/").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(errors.NetworkError):
        Client(URL, "t", retries=2, sleep=sleeps.append).me()
    assert route.call_count == 3 and len(sleeps) == 2


# ---------------------------------------------------------------- pagination


def test_a_list_is_every_item_of_every_page(api: respx.MockRouter, client: Client) -> None:
    items = [
        {"id": f"00000000-0000-0000-0000-{i:012d}", "title": f"d{i}", "provider": "p", "content_sha256": "0x00"}
        for i in range(7)
    ]

    def page(request: httpx.Request) -> httpx.Response:
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        more = offset + limit < len(items)
        return httpx.Response(
            200,
            json={
                "count": len(items),
                "next": f"{API}datasets/?limit={limit}&offset={offset + limit}" if more else None,
                "previous": None,
                "results": items[offset : offset + limit],
            },
        )

    route = api.get("datasets/").mock(side_effect=page)
    found = list(client._paginate("datasets/", Dataset, page_size=3, search="reg"))
    assert [d.title for d in found] == [f"d{i}" for i in range(7)]
    assert [(c.request.url.params["offset"], c.request.url.params["search"]) for c in route.calls] == [
        ("0", "reg"),
        ("3", "reg"),
        ("6", "reg"),
    ]


def test_a_list_is_read_lazily(api: respx.MockRouter, client: Client) -> None:
    first = {"id": "00000000-0000-0000-0000-000000000001", "title": "a", "provider": "p", "content_sha256": "0x"}
    route = api.get("datasets/").mock(
        return_value=httpx.Response(200, json={"count": 99, "next": f"{API}datasets/?offset=50", "results": [first]})
    )
    assert next(client.datasets()).title == "a"
    assert route.call_count == 1


# ---------------------------------------------------------------- error codes

POLICY = {
    ErrorCode.PURPOSE_NOT_ALLOWED,
    ErrorCode.OPERATION_NOT_ALLOWED,
    ErrorCode.CALLS_EXHAUSTED,
    ErrorCode.BUDGET_EXHAUSTED,
    ErrorCode.AGREEMENT_EXPIRED,
    ErrorCode.AGREEMENT_NOT_ACTIVE,
    ErrorCode.EPSILON_INVALID,
    ErrorCode.COLUMN_NOT_PUBLIC,
    ErrorCode.OFFER_NOT_PUBLISHED,
    ErrorCode.INSUFFICIENT_FUNDS,
    ErrorCode.ROLE_REQUIRED,
    ErrorCode.PERMISSION_DENIED,
    ErrorCode.WALLET_REQUIRED,
    ErrorCode.COHORT_TOO_SMALL,
}
AUTH = {ErrorCode.NOT_AUTHENTICATED, ErrorCode.AUTHENTICATION_FAILED}
UNAVAILABLE = {ErrorCode.CHAIN_UNAVAILABLE, ErrorCode.BROKER_UNAVAILABLE, ErrorCode.CHAIN_MISMATCH, ErrorCode.THROTTLED}


def expected_for(code: ErrorCode) -> tuple[type[errors.ApiError], int]:
    """What each of the platform's codes must become, at the status the platform sends it with."""
    if code in POLICY:
        return errors.PolicyRefused, errors.EXIT_REFUSED
    if code in AUTH:
        return errors.AuthenticationError, errors.EXIT_AUTH
    if code == ErrorCode.NOT_FOUND:
        return errors.NotFoundError, errors.EXIT_NOT_FOUND
    if code in UNAVAILABLE:
        return errors.ServiceUnavailable, errors.EXIT_UNAVAILABLE
    if http_status_for(code) >= 500:  # the platform's integrity failures: not the caller's fault
        return errors.ApiError, errors.EXIT_ERROR
    return errors.InvalidRequest, errors.EXIT_INVALID


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_api_error_code_is_its_exception(code: ErrorCode, api: respx.MockRouter, client: Client) -> None:
    status = http_status_for(code)
    api.get("me/").mock(return_value=error(status, str(code), "said the platform"))
    kind, exit_code = expected_for(code)
    with pytest.raises(errors.ApiError) as raised:
        client.me()
    assert type(raised.value) is kind
    assert (raised.value.code, raised.value.status, raised.value.exit_code) == (str(code), status, exit_code)
    assert "said the platform" in raised.value.message


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``redlake`` in this process (so respx answers it); returns its exit code."""
    monkeypatch.setattr(sys, "argv", ["redlake", *args])
    monkeypatch.setitem(cli.STATE, "json", False)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return int(exited.value.code or 0)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleeps: list[float]) -> None:
    monkeypatch.setenv("REDLAKE_URL", URL)
    monkeypatch.setenv("REDLAKE_TOKEN", "t0ken")
    monkeypatch.setenv("REDLAKE_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("REDLAKE_CHAIN_ID", "REDLAKE_RPC_URL", "REDLAKE_CUSTODIANS", "REDLAKE_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    # The CLI's client waits with time.sleep: recorded here, so a 503's retries take no time.
    monkeypatch.setattr("redlake_client.client.time.sleep", sleeps.append)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_api_error_code_is_its_cli_exit_code(
    code: ErrorCode,
    api: respx.MockRouter,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.get("me/").mock(return_value=error(http_status_for(code), str(code)))
    exit_code = run_cli(monkeypatch, "--json", "whoami")
    assert exit_code == expected_for(code)[1]
    reported = json.loads(capsys.readouterr().err)["error"]
    assert (reported["code"], reported["status"]) == (str(code), http_status_for(code))


# ---------------------------------------------------------------- tokens


@pytest.mark.parametrize("message", ["Invalid token.", "Token has expired."])
def test_an_expired_or_revoked_token_says_to_log_in_again(
    message: str,
    api: respx.MockRouter,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.get("me/").mock(return_value=error(401, "authentication_failed", message))
    exit_code = run_cli(monkeypatch, "whoami")
    said = " ".join(capsys.readouterr().err.split())
    assert exit_code == errors.EXIT_AUTH
    assert message in said and "expired, revoked or wrong" in said and "redlake login" in said


def test_no_token_at_all_is_an_authentication_error(api: respx.MockRouter, sleeps: list[float]) -> None:
    api.get("me/").mock(return_value=httpx.Response(401))
    with pytest.raises(errors.AuthenticationError, match="redlake login") as raised:
        Client(URL, "", sleep=sleeps.append).me()
    assert raised.value.code == "not_authenticated"


# ---------------------------------------------------------------- idempotency


def submission_body(request: httpx.Request) -> dict[str, Any]:
    return dict(json.loads(request.content))


def test_every_job_submission_carries_its_own_idempotency_key(api: respx.MockRouter, client: Client) -> None:
    route = api.post("jobs/").mock(return_value=httpx.Response(201, json=job_body()))
    first = client.submit_job(AGREEMENT, "mean", {"column": "cost"})
    second = client.submit_job(AGREEMENT, "mean", {"column": "cost"})
    keys = [c.request.headers.get("Idempotency-Key") for c in route.calls]
    assert all(keys) and keys[0] != keys[1]
    assert [first.idempotency_key, second.idempotency_key] == keys


def test_a_retried_submission_sends_the_same_idempotency_key(
    api: respx.MockRouter, client: Client, sleeps: list[float]
) -> None:
    route = api.post("jobs/").mock(
        side_effect=[
            httpx.ConnectError("dropped"),
            error(503, "broker_unavailable", headers={"Retry-After": "2"}),
            httpx.ReadTimeout("answer lost"),
            httpx.Response(200, json=job_body()),  # the platform's first job, for the same key
        ]
    )
    job = client.submit_job(AGREEMENT, "mean", {"column": "cost"})
    keys = {c.request.headers["Idempotency-Key"] for c in route.calls}
    assert route.call_count == 4 and keys == {job.idempotency_key}
    assert len({c.request.content for c in route.calls}) == 1  # the same body, byte for byte
    assert sleeps[1] == 2.0


def test_a_key_given_by_the_caller_is_the_one_sent(api: respx.MockRouter, client: Client) -> None:
    route = api.post("jobs/").mock(return_value=httpx.Response(200, json=job_body()))
    assert client.submit_job(AGREEMENT, "count", idempotency_key="mine-1").idempotency_key == "mine-1"
    assert route.calls.last.request.headers["Idempotency-Key"] == "mine-1"


def test_a_key_reused_for_another_request_is_an_invalid_request(api: respx.MockRouter, client: Client) -> None:
    api.post("jobs/").mock(return_value=error(409, "idempotency_key_reused"))
    with pytest.raises(errors.InvalidRequest) as raised:
        client.submit_job(AGREEMENT, "count", idempotency_key="mine-1")
    assert raised.value.exit_code == errors.EXIT_INVALID


def test_waiting_on_a_job_after_a_drop_resumes_it_by_id(
    api: respx.MockRouter, client: Client, sleeps: list[float]
) -> None:
    submitted = api.post("jobs/").mock(return_value=httpx.Response(201, json=job_body()))
    polled = api.get(f"jobs/{JOB}/").mock(
        side_effect=[
            httpx.Response(200, json=job_body("authorised")),
            httpx.ConnectError("dropped"),
            httpx.ConnectError("dropped"),
            httpx.Response(200, json=job_body("settled")),
        ]
    )
    seen: list[str] = []
    job = client.run(AGREEMENT, "mean", {"column": "cost"}, on_status=lambda j: seen.append(j.status))
    assert job.status == "settled" and seen == ["authorised", "settled"]
    assert submitted.call_count == 1 and polled.call_count == 4


# ---------------------------------------------------------------- the space and its chain


def test_the_space_is_read_from_the_platform(api: respx.MockRouter, client: Client) -> None:
    api.get("space/").mock(return_value=httpx.Response(200, json=space_body()))
    space = client.space()
    assert space.chain_id == 31337 and space.address("CustodianRegistry") == "0x" + "22" * 20
    assert space.token is not None and space.token.symbol == "RLT"
    assert space.custodians[0].valid_until_block is None and space.tee is not None and space.tee.simulated
    with pytest.raises(errors.RedlakeError, match="no DatasetRegistry"):
        space.address("DatasetRegistry")


def test_a_space_on_another_chain_than_you_expect_is_refused(api: respx.MockRouter, sleeps: list[float]) -> None:
    api.get("space/").mock(return_value=httpx.Response(200, json=space_body(31337)))
    with pytest.raises(errors.ChainMismatch, match=r"chain 31337.*expect chain 1") as raised:
        Client(URL, "t", chain_id=1, sleep=sleeps.append).space()
    assert raised.value.exit_code == errors.EXIT_UNAVAILABLE


def test_a_wrong_chain_id_signs_nothing(api: respx.MockRouter, sleeps: list[float], tmp_path: Path) -> None:
    account = Account.create()
    key = tmp_path / "key"
    key.write_text(bytes(account.key).hex())
    key.chmod(0o600)
    api.get("space/").mock(return_value=httpx.Response(200, json=space_body(31337)))
    api.get(f"agreements/{AGREEMENT}/").mock(
        return_value=httpx.Response(
            200,
            json={
                "id": AGREEMENT,
                "offer": JOB,
                "consumer": "analyst",
                "calls": 3,
                "amount": 3,
                "status": "active",
                "chain_agreement_id": 1,
            },
        )
    )
    api.post("jobs/usage/").mock(return_value=httpx.Response(200, json={"typed_data": {"domain": {}, "message": {}}}))
    submitted = api.post("jobs/").mock(return_value=httpx.Response(201, json=job_body()))
    wrong = Client(URL, "t", chain_id=5, sleep=sleeps.append)
    with pytest.raises(errors.ChainMismatch):
        wrong.submit_job(AGREEMENT, "mean", {"column": "cost"}, signer=signing.from_key_file(key))
    assert submitted.call_count == 0


def test_the_cli_refuses_a_wrong_chain_id_with_exit_6(
    api: respx.MockRouter,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDLAKE_CHAIN_ID", "1")
    settled = {**job_body("settled"), "chain_job_id": "0x" + "cd" * 32, "receipt": {"signature": "0x"}}
    api.get(f"jobs/{JOB}/").mock(return_value=httpx.Response(200, json=settled))
    api.get("space/").mock(return_value=httpx.Response(200, json=space_body(31337)))
    exit_code = run_cli(monkeypatch, "--json", "verify", JOB)
    assert exit_code == errors.EXIT_UNAVAILABLE
    assert "expect chain 1" in json.loads(capsys.readouterr().err)["error"]["message"]


# ---------------------------------------------------------------- algorithms in a TEE (ISSUE-13)

OFFER = "00000000-0000-0000-0000-00000000000d"
ALGORITHM = "00000000-0000-0000-0000-00000000000e"
VALUE_SCHEMA = {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]}
SOURCE = "def run(tables, params):\n    return {'value': float(tables['data'].num_rows)}\n"


def algorithm_body(status: str = "pending", reason: str = "") -> dict[str, Any]:
    return {
        "id": ALGORITHM,
        "url": f"/api/algorithms/{ALGORITHM}/",
        "offer": OFFER,
        "consumer": "analyst",
        "name": "rows",
        "kind": "python",
        "bundle": {"kind": "python", "source": SOURCE, "output_schema": VALUE_SCHEMA},
        "bundle_sha256": "ab" * 32,
        "measurement": "cd" * 32,
        "status": status,
        "reason": reason,
        "approve_tx": None,
        "revoke_tx": None,
        "created_at": "2026-11-27T12:00:00Z",
        "decided_at": None,
    }


def test_the_algorithm_operation_is_listed_with_its_parameters(api: respx.MockRouter, client: Client) -> None:
    listed = [
        {"name": "mean", "engine": "he", "description": "d", "depth": 1, "parameters": {}, "output": "o",
         "precision_significant_digits": 6},
        {"name": "algorithm", "engine": "tee", "description": "d", "depth": None, "output": "o",
         "precision_significant_digits": None,
         "parameters": {"type": "object", "properties": {"algorithm": {"type": "string", "format": "uuid"},
                                                         "params": {"type": "object"}}, "required": ["algorithm"]}},
    ]  # fmt: skip
    api.get("operations/").mock(return_value=httpx.Response(200, json=listed))
    operations = {op.name: op for op in client.operations()}
    assert operations["mean"].engine == "he"
    assert operations["mean"].depth == 1
    assert operations["algorithm"].engine == "tee"
    assert operations["algorithm"].depth is None
    assert operations["algorithm"].parameters["required"] == ["algorithm"]


def test_submitting_an_algorithm_sends_the_bundle_once(api: respx.MockRouter, client: Client) -> None:
    route = api.post("algorithms/").mock(return_value=httpx.Response(201, json=algorithm_body()))
    algorithm = client.submit_algorithm(
        OFFER, SOURCE, output_schema=VALUE_SCHEMA, max_output_bytes=1024, lockfile={"numpy": "2.0.0"}, name="rows"
    )
    assert str(algorithm.id) == ALGORITHM
    assert algorithm.status == "pending"
    assert not algorithm.approved
    assert algorithm.measurement == "cd" * 32
    assert submission_body(route.calls.last.request) == {
        "offer": OFFER,
        "kind": "python",
        "source": SOURCE,
        "output_schema": VALUE_SCHEMA,
        "max_output_bytes": 1024,
        "lockfile": {"numpy": "2.0.0"},
        "name": "rows",
    }


def test_a_dropped_algorithm_submission_is_not_repeated(api: respx.MockRouter, client: Client) -> None:
    route = api.post("algorithms/").mock(side_effect=httpx.ConnectError("dropped"))
    with pytest.raises(errors.NetworkError):
        client.submit_algorithm(OFFER, "SELECT 1 AS n", kind="sql", output_schema={}, max_output_bytes=64)
    assert route.call_count == 1


def test_an_invalid_algorithm_is_an_invalid_request(api: respx.MockRouter, client: Client) -> None:
    api.post("algorithms/").mock(return_value=error(400, "algorithm_invalid", "no run(tables, params)"))
    with pytest.raises(errors.ApiError) as raised:
        client.submit_algorithm(OFFER, "x = 1\n", output_schema=VALUE_SCHEMA, max_output_bytes=64)
    assert raised.value.code == "algorithm_invalid"


def test_waiting_for_the_providers_approval(api: respx.MockRouter, client: Client, sleeps: list[float]) -> None:
    api.get(f"algorithms/{ALGORITHM}/").mock(
        side_effect=[
            httpx.Response(200, json=algorithm_body("pending")),
            httpx.Response(200, json=algorithm_body("approving")),
            httpx.Response(200, json=algorithm_body("approved")),
        ]
    )
    assert client.wait_algorithm(ALGORITHM, poll=5).approved
    assert sleeps == [5, 5]


def test_a_rejected_algorithm_ends_the_wait_with_the_providers_reason(api: respx.MockRouter, client: Client) -> None:
    api.get(f"algorithms/{ALGORITHM}/").mock(
        return_value=httpx.Response(200, json=algorithm_body("rejected", "reads too much"))
    )
    with pytest.raises(errors.ApiError) as raised:
        client.wait_algorithm(ALGORITHM)
    assert raised.value.code == "algorithm_not_approved"
    assert "reads too much" in str(raised.value)


def test_an_algorithm_job_runs_through_the_job_lifecycle(
    api: respx.MockRouter, client: Client, sleeps: list[float]
) -> None:
    body = job_body() | {"operation": "algorithm", "params": {"algorithm": ALGORITHM, "params": {"c": 1.0}}}
    submitted = api.post("jobs/").mock(return_value=httpx.Response(202, json=body))
    api.get(f"jobs/{JOB}/").mock(
        side_effect=[
            httpx.Response(200, json=body | {"status": "authorised"}),
            httpx.Response(200, json=body | {"status": "settled", "result": {"value": 3.0}}),
        ]
    )
    job = client.run_algorithm(AGREEMENT, ALGORITHM, {"c": 1.0}, purpose="research")
    assert job.status == "settled"
    sent = submission_body(submitted.calls.last.request)
    assert sent["operation"] == "algorithm"
    assert sent["params"] == {"algorithm": ALGORITHM, "params": {"c": 1.0}}
    assert sent["purpose"] == "research"
    assert submitted.calls.last.request.headers["Idempotency-Key"] == job.idempotency_key


def test_submitting_an_algorithm_job_without_waiting(api: respx.MockRouter, client: Client) -> None:
    route = api.post("jobs/").mock(return_value=httpx.Response(202, json=job_body() | {"operation": "algorithm"}))
    job = client.submit_algorithm_job(AGREEMENT, ALGORITHM)
    assert job.status == "requested"
    assert submission_body(route.calls.last.request)["params"] == {"algorithm": ALGORITHM, "params": {}}
