"""The consumer SDK and CLI against the live platform (a real web server, anvil, a Celery worker):
a consumer who holds their own key (no custodial wallet) registers it, accepts an offer from it on
chain, runs jobs whose usage their key signs, and verifies them against the chain; then every bad
input the SDK must explain with its exit code; then the quickstart notebook, executed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from eth_account import Account
from nbclient import NotebookClient

from dataspace.accounts.models import Role, Wallet
from dataspace.accounts.services import api_token_issue
from dataspace.chain import agents, gateway, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.compute import receipts
from dataspace.compute.models import Job
from dataspace.demo.synthetic import REGISTRY_ENCRYPTION, registry_csv_chunks
from dataspace.policies.models import Agreement
from tests.support.anvil import AnvilNode
from tests.support.proxy import Proxy
from tests.support.space import TOKENS, funded_user, ingest_dataset, publish_offer
from tests.support.users import make_user
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SDK_SRC = ROOT / "sdk" / "src"
sys.path.insert(0, str(SDK_SRC))

from redlake_client import Client, errors, signing  # noqa: E402

DECLARED = {"encryption": json.dumps(REGISTRY_ENCRYPTION), "public_value_columns": "region,sex,diagnosis"}


def own_key(tmp_path: Path, name: str = "key") -> tuple[Any, Path]:
    account = Account.create()
    path = tmp_path / name
    path.write_text(bytes(account.key).hex())
    path.chmod(0o600)
    agents.fund_for_gas(address=account.address, wei=10**20)
    mint = agents.DevTokenAgent().mint(to=account.address, amount=TOKENS, key=f"test-mint:{account.address}")
    assert outbox.write_progress(tx_id=mint.pk).status == ChainTransaction.Status.CONFIRMED
    return account, path


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redlake_client.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_own_key_consumer_end_to_end(
    anvil: AnvilNode, celery_worker_process: WorkerProcess, live_server: Any, tmp_path: Path
) -> None:
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    content = b"".join(registry_csv_chunks(2000))
    dataset = ingest_dataset(provider_api, content, non_personal="true", **DECLARED)
    offer = publish_offer(provider_api, dataset)
    consumer = make_user("analyst", Role.CONSUMER)
    _, token = api_token_issue(user=consumer)
    account, key_file = own_key(tmp_path)
    custodian = receipts.custodian().address
    client = Client(live_server.url, token, rpc_url=anvil.url, custodians=[custodian])
    signer = signing.from_key_file(key_file)

    # The wallet: the key proves ownership by signing the challenge locally; nothing custodial.
    wallet = client.register_wallet(signer)
    assert (wallet.kind, wallet.address) == ("external", account.address)
    assert Wallet.objects.get(user=consumer).sealed_private_key is None

    # The agreement: approve + acceptOffer sent from the consumer's wallet, recognised by the platform.
    agreement = client.accept_offer(offer.id, 6, signer=signer)
    assert agreement.status == "active"
    chain_agreement = agents.UsageAgreementsAgent().agreement(agreement.chain_agreement_id)
    assert chain_agreement["consumer"] == account.address
    assert Agreement.objects.get(pk=agreement.id).approve_tx is None  # the platform sent nothing

    # A job signed by the consumer's key, settled, verified against the chain.
    job = client.run(agreement.id, "mean", {"column": "cost"}, signer=signer)
    assert job.status == "settled" and not job.signed_by_platform
    report = client.verify(job)
    assert report.ok
    assert {c.name for c in report.checks} >= {
        "usage.signed_by_consumer",
        "settlement.result_commitment",
        "receipt.custodian",
        "dataset.content_hash",
    }
    assert account.address in next(c for c in report.checks if c.name == "usage.signed_by_consumer").detail
    # The receipt's signer is the one CustodianRegistry names for the settlement's block, asked
    # through the consumer's node (GET /api/space/ only says where the registry is).
    custodian_check = next(c for c in report.checks if c.name == "receipt.custodian").detail
    assert (
        f"the chain's custodian is {custodian}" in custodian_check
        and "CustodianRegistry of the space" in custodian_check
    )
    assert client.space().address("CustodianRegistry") == gateway.deployment("CustodianRegistry").address

    # The same Idempotency-Key returns the same job: never a second job or charge.
    again = client.submit_job(
        agreement.id, "mean", {"column": "cost"}, signer=signer, idempotency_key=job.idempotency_key
    )
    assert again.id == job.id
    assert Job.objects.filter(consumer=consumer).count() == 1

    # A network drop mid-request: the platform made the job, the answer was lost; the retry with
    # the same key gets the same job, and the chain charges one call.
    with Proxy(live_server.url) as proxy:
        flaky = Client(proxy.url, token, rpc_url=anvil.url, custodians=[custodian], backoff=0.05)
        proxy.drop.append(("POST", "/api/jobs/"))
        dropped = flaky.submit_job(agreement.id, "count", {}, signer=signer)
        assert [s for s in proxy.seen if s[0] == "POST" and s[1] == "/api/jobs/"] == [
            ("POST", "/api/jobs/", None),
            ("POST", "/api/jobs/", 200),
        ]
        assert flaky.wait_job(dropped.id).status == "settled"
    assert Job.objects.filter(consumer=consumer).count() == 2
    assert agents.UsageAgreementsAgent().agreement(agreement.chain_agreement_id)["calls_used"] == 2

    # The CLI, as a script would use it.
    env = {
        **os.environ,
        "PYTHONPATH": str(SDK_SRC),
        "REDLAKE_CONFIG_DIR": str(tmp_path / "config"),
        "REDLAKE_URL": live_server.url,
        "REDLAKE_TOKEN": token,
        "REDLAKE_RPC_URL": anvil.url,
        "REDLAKE_CUSTODIANS": custodian,
    }
    params = json.dumps({"by": "region", "aggregate": "mean", "column": "bmi"})
    ran = cli(
        env, "--json", "job", "run", str(agreement.id), "group_by", "--params", params, "--key-file", str(key_file)
    )
    assert ran.returncode == 0, ran.stderr
    grouped = json.loads(ran.stdout)
    assert grouped["status"] == "settled" and set(grouped["result"]["groups"]) >= {"north", "south"}
    verified = cli(env, "--json", "verify", grouped["id"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    as_csv = cli(env, "job", "wait", grouped["id"], "--format", "csv")
    assert as_csv.returncode == 0 and as_csv.stdout.splitlines()[0].startswith("region,")
    budget = cli(env, "--json", "budget", str(agreement.id))
    assert budget.returncode == 0, budget.stderr
    assert json.loads(budget.stdout)[0]["calls_left"] == 3
    for listing in (["job", "list"], ["catalogue", "search", "Hospital"], ["dataset", "show", str(dataset.id)]):
        listed = cli(env, "--json", *listing)
        assert listed.returncode == 0, listed.stderr
    shown = cli(env, "--json", "receipt", "show", grouped["id"])
    assert json.loads(shown.stdout)["custodian"] == custodian

    # Refused by policy: exit 2, the stable code on stderr, nothing charged.
    refused = cli(
        env, "--json", "job", "run", str(agreement.id), "count", "--purpose", "marketing", "--key-file", str(key_file)
    )
    assert refused.returncode == errors.EXIT_REFUSED, refused.stderr
    assert json.loads(refused.stderr)["error"]["code"] == "purpose_not_allowed"

    # A response tampered in transit: verify fails (exit 3).
    def tamper(method: str, path: str, body: Any) -> Any:
        if method == "GET" and path.startswith(f"/api/jobs/{grouped['id']}/") and body.get("result"):
            body["result"]["groups"]["north"]["mean"] += 1
        return body

    with Proxy(live_server.url) as proxy:
        proxy.rewrite = tamper
        tampered = cli({**env, "REDLAKE_URL": proxy.url}, "--json", "verify", grouped["id"])
    assert tampered.returncode == errors.EXIT_VERIFICATION_FAILED, tampered.stdout + tampered.stderr
    failed = {c["name"] for c in json.loads(tampered.stdout)["checks"] if not c["ok"]}
    assert "settlement.result_commitment" in failed

    # The platform lying about its custodians in GET /api/space/ changes nothing: verify asks
    # CustodianRegistry on chain (nothing pinned here), and still names the real custodian.
    liar = Account.create().address

    def lie(method: str, path: str, body: Any) -> Any:
        if method == "GET" and path.startswith("/api/space/"):
            body["custodians"] = [{"address": liar, "valid_from_block": 0, "valid_until_block": None}]
        return body

    with Proxy(live_server.url) as proxy:
        proxy.rewrite = lie
        lied = cli({**env, "REDLAKE_URL": proxy.url, "REDLAKE_CUSTODIANS": ""}, "--json", "verify", grouped["id"])
    assert lied.returncode == 0, lied.stdout + lied.stderr
    checked = next(c for c in json.loads(lied.stdout)["checks"] if c["name"] == "receipt.custodian")
    assert checked["ok"] and custodian in checked["detail"] and liar not in checked["detail"]

    # A receipt signed by a custodian the consumer does not trust: exit 3.
    stranger = cli({**env, "REDLAKE_CUSTODIANS": Account.create().address}, "--json", "verify", grouped["id"])
    assert stranger.returncode == errors.EXIT_VERIFICATION_FAILED
    assert {c["name"] for c in json.loads(stranger.stdout)["checks"] if not c["ok"]} == {"receipt.custodian"}

    # The wrong chain: the consumer expects another chain id than the node's: exit 6, nothing signed.
    wrong_chain = cli({**env, "REDLAKE_CHAIN_ID": "1"}, "--json", "verify", grouped["id"])
    assert wrong_chain.returncode == errors.EXIT_UNAVAILABLE
    assert "chain 31337" in json.loads(wrong_chain.stderr)["error"]["message"]

    # A key file others can read, and a keystore with the wrong passphrase: exit 8.
    key_file.chmod(0o644)
    loose = cli(env, "job", "run", str(agreement.id), "count", "--key-file", str(key_file))
    assert loose.returncode == errors.EXIT_KEY and "chmod 600" in loose.stderr
    key_file.chmod(0o600)
    keystore = tmp_path / "keystore.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "right horse battery")))
    keystore.chmod(0o600)
    wrong = cli(
        {**env, "REDLAKE_KEYSTORE_PASSPHRASE": "wrong"},
        "job",
        "run",
        str(agreement.id),
        "count",
        "--keystore",
        str(keystore),
    )
    assert wrong.returncode == errors.EXIT_KEY and "Wrong passphrase" in wrong.stderr
    assert Job.objects.filter(consumer=consumer).count() == 3  # none of the refused ones made a job

    # A revoked token, and an expired one: exit 4.
    revoked_instance, revoked = api_token_issue(user=consumer)
    Client(live_server.url, revoked).revoke_token(revoked_instance.token_key)
    assert cli({**env, "REDLAKE_TOKEN": revoked}, "whoami").returncode == errors.EXIT_AUTH
    expired_instance, expired = api_token_issue(user=consumer)
    type(expired_instance).objects.filter(pk=expired_instance.pk).update(expiry="2001-01-01T00:00:00Z")
    assert cli({**env, "REDLAKE_TOKEN": expired}, "whoami").returncode == errors.EXIT_AUTH

    # The quickstart notebook, executed against the running platform with a second own-key consumer.
    reader = make_user("notebook", Role.CONSUMER)
    _, reader_key = own_key(tmp_path, "notebook-key")
    reader_client = Client(live_server.url, api_token_issue(user=reader)[1], rpc_url=anvil.url)
    reader_client.register_wallet(signing.from_key_file(reader_key))
    notebook = nbformat.read(ROOT / "sdk" / "examples" / "quickstart.ipynb", as_version=4)
    kernel_env = {
        "REDLAKE_URL": live_server.url,
        "REDLAKE_USERNAME": "notebook",
        "REDLAKE_PASSWORD": "pw-notebook-0123456789",
        "REDLAKE_KEY_FILE": str(reader_key),
        "REDLAKE_RPC_URL": anvil.url,
        "REDLAKE_CONFIG_DIR": str(tmp_path / "nb-config"),
        "PYTHONPATH": str(SDK_SRC),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = "".join(
        str(o.get("text", "")) for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    assert "FAIL" not in outputs and "ok  usage.signed_by_consumer" in outputs
    assert Job.objects.filter(consumer=reader, status=Job.Status.SETTLED, signed_by_platform=False).count() == 3
