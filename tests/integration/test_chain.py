"""The chain gateway, outbox and indexer against a real anvil node (stopped and restarted)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from eth_account import Account

from dataspace.accounts.models import User
from dataspace.catalog.models import Dataset, Ingest
from dataspace.chain import agents, gateway, indexer, outbox
from dataspace.chain.encoding import dataset_chain_id
from dataspace.chain.models import ChainEvent, ChainTransaction, SenderNonce
from dataspace.errors import DomainError, ErrorCode
from tests.support.anvil import AnvilNode
from tests.support.users import client_for, upload
from tests.support.waiting import wait_for, wait_for_ingest
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Status = ChainTransaction.Status


def mint_write(recipient: str, amount: int, key: str) -> ChainTransaction:
    return outbox.write_enqueue(
        kind="mint", contract="DevToken", function="mint", args=[recipient, amount], idempotency_key=key
    )


def balance(address: str) -> int:
    return int(gateway.contract("DevToken").functions.balanceOf(address).call())


def operator_nonce() -> int:
    return int(gateway.web3().eth.get_transaction_count(gateway.operator().address))


def test_write_is_confirmed_once_and_keyed(anvil: AnvilNode) -> None:
    recipient = Account.create().address
    tx = mint_write(recipient, 7, "mint:a")
    assert mint_write(recipient, 7, "mint:a").pk == tx.pk  # same key, same write
    with pytest.raises(DomainError) as error:
        mint_write(recipient, 8, "mint:a")
    assert error.value.code == ErrorCode.CONFLICT
    done = outbox.write_progress(tx_id=tx.pk)
    assert done.status == Status.CONFIRMED
    assert done.gas_used
    assert outbox.write_progress(tx_id=tx.pk).status == Status.CONFIRMED  # re-running is a no-op
    assert balance(recipient) == 7


def test_revert_is_decoded_and_takes_no_nonce(anvil: AnvilNode) -> None:
    import uuid

    provider = Account.create().address
    dataset = "0x" + dataset_chain_id(uuid.uuid4(), provider=provider).hex()
    forged = outbox.write_enqueue(
        kind="dataset_register",
        contract="DatasetRegistry",
        function="registerFor",
        args=[dataset, provider, "0x" + "22" * 32, "0x" + "33" * 32, 2**40, "0x" + "00" * 65],
        idempotency_key="forged",
    )
    nonce_before = operator_nonce()
    failed = outbox.write_progress(tx_id=forged.pk)
    assert failed.status == Status.FAILED
    assert failed.revert_reason.startswith("InvalidSignature(recovered=")
    assert failed.nonce is None
    assert operator_nonce() == nonce_before


def test_a_second_worker_with_a_stale_copy_does_not_fail_a_mined_write(anvil: AnvilNode) -> None:
    """ISSUE-16: one write moved by two workers (its send task and a sweep): the first one's
    transaction is mined while it waits for the receipt; the second one, still holding the row as
    pending, estimates gas, which now reverts. The write must stay on its way, then confirm."""
    import uuid

    write = agents.DatasetRegistryAgent().register(
        dataset_id=uuid.uuid4(),
        provider_key=Account.create().key,
        metadata_hash=b"\x01" * 32,
        content_hash=b"\x02" * 32,
    )
    stale = ChainTransaction.objects.get(pk=write.pk)
    assert stale.status == Status.PENDING
    outbox._sign(ChainTransaction.objects.get(pk=write.pk))
    outbox._broadcast(ChainTransaction.objects.get(pk=write.pk))
    wait_for(lambda: gateway.web3().eth.get_transaction_receipt(ChainTransaction.objects.get(pk=write.pk).tx_hash))
    outbox._sign(stale)  # the second worker: its estimate reverts now that the write is mined
    assert ChainTransaction.objects.get(pk=write.pk).status == Status.SENT
    assert outbox.write_progress(tx_id=write.pk).status == Status.CONFIRMED


def test_replayed_registration_is_refused_with_its_reason(anvil: AnvilNode) -> None:
    import uuid

    key = Account.create().key
    dataset_id = uuid.uuid4()
    agent = agents.DatasetRegistryAgent()
    first = agent.register(
        dataset_id=dataset_id, provider_key=key, metadata_hash=b"\x01" * 32, content_hash=b"\x02" * 32
    )
    assert outbox.write_progress(tx_id=first.pk).status == Status.CONFIRMED
    replay = outbox.write_enqueue(
        kind="dataset_register",
        contract=first.contract,
        function=first.function,
        args=first.args,
        idempotency_key="replay",
    )
    failed = outbox.write_progress(tx_id=replay.pk)
    assert failed.status == Status.FAILED
    # The dataset's nonce moved on, so the replayed signature no longer verifies.
    assert failed.revert_reason.startswith("InvalidSignature(recovered=0x")


def test_front_running_a_registration_reverts_decoded(anvil: AnvilNode) -> None:
    """Someone who saw a provider's dataset id (in the mempool, or the catalogue) signs a
    registration of it for themselves: the registry refuses an id bound to another provider."""
    import uuid

    from dataspace.chain import eip712

    victim_key, attacker_key = Account.create().key, Account.create().key
    victim, attacker = Account.from_key(victim_key).address, Account.from_key(attacker_key).address
    dataset_id = uuid.uuid4()
    stolen = dataset_chain_id(dataset_id, provider=victim)
    deadline = 2**40
    signature = eip712.sign_dataset_change(
        key=bytes(attacker_key),
        chain_id=31337,
        registry=gateway.deployment("DatasetRegistry").address,
        dataset_id=stolen,
        action=eip712.ACTION_REGISTER,
        metadata_hash=b"\x01" * 32,
        content_hash=b"\x02" * 32,
        nonce=0,
        deadline=deadline,
    )
    front_run = outbox.write_enqueue(
        kind="dataset_register",
        contract="DatasetRegistry",
        function="registerFor",
        args=["0x" + stolen.hex(), attacker, "0x" + "01" * 32, "0x" + "02" * 32, deadline, "0x" + signature.hex()],
        idempotency_key="front-run",
    )
    failed = outbox.write_progress(tx_id=front_run.pk)
    assert failed.status == Status.FAILED
    assert failed.revert_reason == f"NotDatasetProvider(datasetId=0x{stolen.hex()}, caller={attacker.lower()})"
    # The provider's own registration of the id still lands.
    agent = agents.DatasetRegistryAgent()
    own = agent.register(
        dataset_id=dataset_id, provider_key=bytes(victim_key), metadata_hash=b"\x01" * 32, content_hash=b"\x02" * 32
    )
    assert outbox.write_progress(tx_id=own.pk).status == Status.CONFIRMED
    entry = agent.get(dataset_id, provider=victim)
    assert entry is not None
    assert entry.provider == victim


def test_wrong_chain_id_and_unreachable_node_are_clear_errors(anvil: AnvilNode, settings: Any) -> None:
    settings.CHAIN_ID = 1
    with pytest.raises(gateway.ChainUnavailable) as error:
        gateway.connected_web3()
    assert error.value.code == ErrorCode.CHAIN_MISMATCH
    assert "serves chain 31337, not the configured 1" in error.value.message
    settings.CHAIN_ID = 31337
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    with pytest.raises(gateway.ChainUnavailable) as error:
        gateway.connected_web3()
    assert "unreachable" in error.value.message


def test_a_contract_is_built_once_per_node_and_address_and_reads_the_chain(anvil: AnvilNode, settings: Any) -> None:
    usage = gateway.contract("UsageAgreements")
    assert gateway.contract("UsageAgreements") is usage  # no ABI parsing per call
    assert gateway.view(usage.functions.agreementCount()) == 0
    elsewhere = gateway.contract("UsageAgreements", address=Account.create().address)
    assert elsewhere is not usage
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"  # another node: its own objects, not the cached ones
    with pytest.raises(gateway.ChainUnavailable):
        gateway.view(gateway.contract("UsageAgreements").functions.agreementCount())
    # A view call is one request: web3's chain-id validation (two more per call) is off.
    assert "validation" not in [name for _, name in gateway.web3().middleware_onion.middleware]


def test_node_down_then_back_sends_every_write_exactly_once(anvil: AnvilNode, tmp_path: Any) -> None:
    recipients = [Account.create().address for _ in range(5)]
    writes = [mint_write(r, 100 + i, f"mint:{i}") for i, r in enumerate(recipients)]
    # Two go through; the third is signed and broadcast, then the node stops before we record it.
    for tx in writes[:2]:
        assert outbox.write_progress(tx_id=tx.pk).status == Status.CONFIRMED
    outbox._sign(writes[2])
    signed = ChainTransaction.objects.get(pk=writes[2].pk)
    sent = gateway.web3().eth.send_raw_transaction(bytes(signed.raw_tx or b""))
    # anvil mines an automined transaction just after it answers: read the nonce once it has.
    gateway.web3().eth.wait_for_transaction_receipt(sent, timeout=30)
    nonce_before_outage = operator_nonce()
    anvil.stop()
    for tx in writes[2:]:
        with pytest.raises(gateway.ChainUnavailable):
            outbox.write_progress(tx_id=tx.pk)
    assert ChainTransaction.objects.get(pk=writes[2].pk).status == Status.SIGNED  # the crash we staged
    anvil.start()  # same port, state restored from the file anvil wrote on the way down
    for tx in writes[2:]:
        assert outbox.write_progress(tx_id=tx.pk).status == Status.CONFIRMED
    assert ChainTransaction.objects.get(pk=writes[2].pk).tx_hash == signed.tx_hash  # never re-signed
    assert [balance(r) for r in recipients] == [100, 101, 102, 103, 104]
    assert operator_nonce() == nonce_before_outage + 2  # the staged write counted once
    row = SenderNonce.objects.get(address=gateway.operator().address)
    assert row.next_nonce == operator_nonce()


def test_worker_sends_queued_writes_after_the_node_returns(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    anvil.stop()
    recipients = [Account.create().address for _ in range(3)]
    writes = [mint_write(r, 5, f"worker-mint:{i}") for i, r in enumerate(recipients)]
    wait_for(
        lambda: "chain_unavailable" in celery_worker_process.log() or "Retry" in celery_worker_process.log(), timeout=30
    )
    assert all(ChainTransaction.objects.get(pk=t.pk).status == Status.PENDING for t in writes)
    anvil.start()
    wait_for(
        lambda: all(ChainTransaction.objects.get(pk=t.pk).status == Status.CONFIRMED for t in writes),
        timeout=120,
        interval=0.2,
    )
    assert [balance(r) for r in recipients] == [5, 5, 5]


def test_ingested_dataset_is_registered_with_its_content_hash(
    anvil: AnvilNode, provider: User, celery_worker_process: WorkerProcess
) -> None:
    from dataspace.accounts.services import wallet_create_custodial

    wallet = wallet_create_custodial(user=provider)
    accepted = upload(client_for(provider), b"age,region\n" + b"".join(b"%d,north\n" % i for i in range(50)))
    ingest = wait_for_ingest(accepted.json()["id"])
    assert ingest.status == Ingest.Status.SUCCEEDED
    dataset = Dataset.objects.get(pk=ingest.dataset_id)
    wait_for(lambda: Dataset.objects.get(pk=dataset.pk).chain_registration_id is not None, timeout=30)
    registration = Dataset.objects.get(pk=dataset.pk).chain_registration
    assert registration is not None
    wait_for(lambda: ChainTransaction.objects.get(pk=registration.pk).status == Status.CONFIRMED, timeout=60)
    shown = client_for(provider).get(f"/api/datasets/{dataset.id}/").json()["chain"]
    assert shown["status"] == "confirmed"
    assert shown["tx_hash"] == ChainTransaction.objects.get(pk=registration.pk).tx_hash
    on_chain = agents.DatasetRegistryAgent().get(dataset.id, provider=wallet.address)
    assert on_chain is not None
    assert on_chain.content_hash == "0x" + dataset.content_sha256
    assert on_chain.provider == wallet.address
    indexer.index_events()
    event = ChainEvent.objects.get(event="DatasetRegistered")
    assert event.args["contentHash"] == "0x" + dataset.content_sha256
    assert event.tx_hash == ChainTransaction.objects.get(pk=registration.pk).tx_hash


def test_indexer_is_safe_to_run_twice_at_once(anvil: AnvilNode) -> None:
    for i in range(6):
        outbox.write_progress(tx_id=mint_write(Account.create().address, 1, f"idx:{i}").pk)
    reports: list[Any] = []

    def run() -> None:
        try:
            reports.append(indexer.index_events(chunk=3))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while (report := indexer.index_events(chunk=3)) is not None and report.to_block >= report.from_block:
        pass
    transfers = ChainEvent.objects.filter(event="Transfer")
    assert transfers.count() == 6
    assert len({(e.tx_hash, e.log_index) for e in transfers}) == 6


def test_indexer_rewinds_past_a_reorg(anvil: AnvilNode) -> None:
    w3 = gateway.web3()
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    outbox.write_progress(tx_id=mint_write(Account.create().address, 1, "fork:a").pk)
    indexer.index_events()
    assert ChainEvent.objects.filter(event="Transfer").count() == 1
    # Replace the indexed block with a different one at the same height.
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    SenderNonce.objects.all().delete()
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    report = indexer.index_events()
    assert report is not None
    assert report.rewound_to is not None
    assert ChainEvent.objects.filter(event="Transfer").count() == 0


def test_unfunded_operator_leaves_the_write_signed_until_funded(anvil: AnvilNode, settings: Any) -> None:
    import uuid

    poor = Account.create()
    settings.CHAIN_OPERATOR_KEY = "0x" + bytes(poor.key).hex()
    # Anyone may register a dataset id bound to its own address, so no role is needed for this write.
    own_id = "0x" + dataset_chain_id(uuid.uuid4(), provider=poor.address).hex()
    write = outbox.write_enqueue(
        kind="dataset_register",
        contract="DatasetRegistry",
        function="register",
        args=[own_id, "0x" + "55" * 32, "0x" + "66" * 32],
        idempotency_key="poor",
    )
    with pytest.raises(gateway.ChainUnavailable) as error:
        outbox.write_progress(tx_id=write.pk)
    assert "insufficient funds" in error.value.message.lower()
    stuck = ChainTransaction.objects.get(pk=write.pk)
    assert (stuck.status, stuck.nonce) == (Status.SIGNED, 0)
    assert "insufficient funds" in stuck.last_error.lower()
    gateway.web3().provider.make_request("anvil_setBalance", [poor.address, hex(10**18)])  # type: ignore[arg-type]
    done = outbox.write_progress(tx_id=write.pk)
    assert done.status == Status.CONFIRMED
    assert done.tx_hash == stuck.tx_hash


def test_expired_deadline_is_refused_with_its_reason(anvil: AnvilNode) -> None:
    import uuid

    from dataspace.chain import eip712

    key = Account.create().key
    dataset = dataset_chain_id(uuid.uuid4(), provider=Account.from_key(key).address)
    signature = eip712.sign_dataset_change(
        key=bytes(key),
        chain_id=31337,
        registry=gateway.deployment("DatasetRegistry").address,
        dataset_id=dataset,
        action=eip712.ACTION_REGISTER,
        metadata_hash=b"\x01" * 32,
        content_hash=b"\x02" * 32,
        nonce=0,
        deadline=1,
    )
    write = outbox.write_enqueue(
        kind="dataset_register",
        contract="DatasetRegistry",
        function="registerFor",
        args=[
            "0x" + dataset.hex(),
            Account.from_key(key).address,
            "0x" + "01" * 32,
            "0x" + "02" * 32,
            1,
            "0x" + signature.hex(),
        ],
        idempotency_key="expired",
    )
    failed = outbox.write_progress(tx_id=write.pk)
    assert failed.status == Status.FAILED
    assert failed.revert_reason.startswith("SignatureExpired(deadline=1, nowTimestamp=")


def test_demo_seed_funds_demo_wallets_once_and_opens_a_market(anvil: AnvilNode) -> None:
    import io

    from django.core.management import call_command

    from dataspace.accounts.models import Wallet
    from dataspace.compute.models import EncryptedStore
    from dataspace.policies.models import Agreement, Offer

    for _ in range(2):  # running it twice mints, offers and accepts nothing more
        call_command("demo", "seed", "--rows", "500", stdout=io.StringIO())
    token = agents.DevTokenAgent()
    balances = {w.user.username: token.balance(w.address) for w in Wallet.objects.select_related("user")}
    escrow = 100 * 10**18  # the demo consumer's agreement: 100 calls at 1 rEUR
    assert balances == {
        "provider": 10_000 * 10**18,
        "consumer": 10_000 * 10**18 - escrow,
        "auditor": 10_000 * 10**18,
        "operator": 10_000 * 10**18,
    }
    assert EncryptedStore.objects.get().status == EncryptedStore.Status.READY
    assert Offer.objects.get().status == Offer.Status.PUBLISHED
    assert Agreement.objects.get().status == Agreement.Status.ACTIVE
