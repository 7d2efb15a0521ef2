"""The code that holds a release secret runs only in the custodian's process, and a custodial
wallet's key only in the chain signer's: every other role is refused at the function's entry,
and nothing outside the custody path even names those functions."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from dataspace.accounts.models import Wallet
from dataspace.accounts.services import wallet_private_key
from dataspace.celery import app
from dataspace.compute import custody, jobs, receipts
from dataspace.compute.models import Job
from dataspace.role_checks import WrongRole, current_role
from dataspace.roles import Role

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
CUSTODIAN_KEY = "0x" + "11" * 32
NOT_CUSTODIAN = [Role.WEB, Role.INGEST, Role.HE, Role.CHAIN, Role.BEAT]
NOT_CHAIN = [Role.WEB, Role.INGEST, Role.HE, Role.CUSTODIAN, Role.BEAT]


@pytest.mark.parametrize("role", NOT_CUSTODIAN)
def test_release_secrets_are_refused_outside_the_custodian(role: Role, settings: Any) -> None:
    settings.REDLAKE_ROLE = role.value
    settings.CUSTODIAN_KEY = CUSTODIAN_KEY
    with pytest.raises(WrongRole, match="custodian role"):
        jobs.job_release(job_id=uuid.uuid4())
    with pytest.raises(WrongRole, match="custodian role"):
        custody.release(Job())
    with pytest.raises(WrongRole, match="custodian role"):
        custody._secret_context("never/read.sealed", uuid.uuid4())
    with pytest.raises(WrongRole, match="custodian role"):
        receipts.receipt_sign({"job_id": "0x00"})
    with pytest.raises(WrongRole, match="custodian role"):
        receipts.custodian()


@pytest.mark.parametrize("role", [Role.CUSTODIAN, Role.DEV])
def test_the_custodian_signs_receipts(role: Role, settings: Any) -> None:
    settings.REDLAKE_ROLE = role.value
    settings.CUSTODIAN_KEY = CUSTODIAN_KEY
    signed = receipts.receipt_sign({"job_id": "0x00"})
    assert receipts.receipt_signer(signed) == receipts.custodian().address


def test_a_custodian_without_its_key_refuses_to_make_one_up(settings: Any, tmp_path: Path) -> None:
    settings.REDLAKE_ROLE = Role.CUSTODIAN.value
    settings.CUSTODIAN_KEY = ""
    settings.RECEIPT_KEY_FILE = tmp_path / "receipt-key.sealed"
    receipts._custodian_account.cache_clear()
    with pytest.raises(ImproperlyConfigured, match="CUSTODIAN_KEY"):
        receipts.custodian()


@pytest.mark.parametrize("role", NOT_CHAIN)
def test_wallet_keys_are_refused_outside_the_chain_signer(role: Role, settings: Any) -> None:
    settings.REDLAKE_ROLE = role.value
    with pytest.raises(WrongRole, match="chain role"):
        wallet_private_key(wallet=Wallet(kind=Wallet.Kind.CUSTODIAL))


def test_an_unknown_role_is_a_configuration_error(settings: Any) -> None:
    settings.REDLAKE_ROLE = "root"
    with pytest.raises(ImproperlyConfigured, match="REDLAKE_ROLE"):
        current_role()


def test_the_release_is_a_task_on_the_custody_queue_only() -> None:
    assert jobs.STEP_TASKS[Job.Status.COMPUTED] == "dataspace.compute.tasks.release_job"
    route = app.amqp.router.route({}, "dataspace.compute.tasks.release_job")
    assert route["queue"].name == "custody"
    # No other task lands on the custodian's queue, and the custodian's task on no other.
    from django.conf import settings

    on_custody = [name for name, r in settings.CELERY_TASK_ROUTES.items() if r["queue"] == "custody"]
    assert on_custody == ["dataspace.compute.tasks.release_job"]


# Who may name each secret-holding function: the function's own module, the one step that calls
# it, and nothing else in dataspace/ (a web view, an HE task or a chain follow-up that called it
# in-process would put the secret in that tier).
SECRET_USERS: dict[str, set[str]] = {
    "job_release": {"dataspace/compute/jobs.py", "dataspace/compute/tasks.py"},
    "release": {"dataspace/compute/custody.py", "dataspace/compute/jobs.py"},
    "_secret_context": {"dataspace/compute/custody.py"},
    # ISSUE-14: a custodian process opens the likely next dataset's secret contexts as it starts.
    "secret_contexts_warm": {"dataspace/compute/custody.py", "dataspace/compute/warm_up.py"},
    # ISSUE-13: tee_custody is the custodian's release of a tee job (called from custody.release).
    "receipt_sign": {
        "dataspace/compute/receipts.py",
        "dataspace/compute/custody.py",
        "dataspace/compute/tee_custody.py",
    },
    # receivers.py reads only the receipt key's address, for the deploy to register on chain.
    "custodian": {
        "dataspace/compute/receipts.py",
        "dataspace/compute/custody.py",
        "dataspace/compute/receivers.py",
        "dataspace/compute/tee_custody.py",
    },
    # Loading a secret context: the custodian's unsealing, and the store builder's encryption
    # processes, which hold the keys they have just generated (ingest) and never a sealed one.
    "load_secret_context": {
        "dataspace/compute/he/keys.py",
        "dataspace/compute/custody.py",
        "dataspace/compute/he/executors.py",
    },
    "wallet_private_key": {"dataspace/accounts/services.py", "dataspace/catalog/services.py"},
    "custodial_account": {"dataspace/accounts/services.py", "dataspace/chain/outbox.py"},
}
# Names too common to search as bare names: only their qualified uses count.
QUALIFIED_ONLY = {"release": "custody", "custodian": "receipts"}


def _uses(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if node.attr in QUALIFIED_ONLY:
                if base == QUALIFIED_ONLY[node.attr]:
                    names.add(node.attr)
            elif node.attr in SECRET_USERS:
                names.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in SECRET_USERS and node.id not in QUALIFIED_ONLY:
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef) and node.name in SECRET_USERS and node.name not in QUALIFIED_ONLY:
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names if alias.name in SECRET_USERS)
    return names


def test_only_the_custody_path_names_the_secret_holding_functions() -> None:
    offenders = []
    for path in sorted((ROOT / "dataspace").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if "/migrations/" in relative:
            continue
        for name in _uses(ast.parse(path.read_text(), filename=relative)):
            if relative not in SECRET_USERS[name]:
                offenders.append(f"{relative} uses {name}")
    assert offenders == []
