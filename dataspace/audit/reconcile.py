"""Chain against database, both ways: every use, settlement, refund, agreement, offer,
dataset privacy budget and registry entry the chain holds must be in the platform's records in
the matching state, and the reverse. The chain side is read from the contracts' events (indexed to the head first)
and their view functions."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dataspace.accounts import selectors as accounts_selectors
from dataspace.catalog.models import Dataset
from dataspace.catalog.services import dataset_metadata_hash
from dataspace.chain import agents, encoding, gateway, indexer, merkle
from dataspace.chain.encoding import dataset_uuid
from dataspace.chain.models import ChainEvent, ChainTransaction
from dataspace.compute import receipts
from dataspace.compute.models import Job, SettlementBatchEntry
from dataspace.policies.models import Agreement, Offer

RECORDED_STATES = {
    Job.Status.AUTHORISED,
    Job.Status.COMPUTED,
    Job.Status.RELEASED,
    Job.Status.SETTLED,
    Job.Status.WITHHELD,
    Job.Status.FAILED,
    Job.Status.REFUNDED,
}


# Settled on chain: an answer, or the custodian's withholding of it (paid for like an answer).
PAID_STATES = {Job.Status.SETTLED, Job.Status.WITHHELD}


@dataclass
class Report:
    checked: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": dict(self.checked), "mismatches": self.mismatches}


def _events(name: str) -> list[dict[str, Any]]:
    rows = ChainEvent.objects.filter(chain_id=gateway.chain_id(), contract="UsageAgreements", event=name)
    return [row.args for row in rows]


def _catch_up() -> None:
    while True:
        report = indexer.index_events()
        if report is None or report.to_block < report.from_block:
            return


def reconcile() -> Report:
    _catch_up()
    report = Report()
    jobs = {job.chain_job_id: job for job in Job.objects.all()}
    recorded = {e["jobId"]: e for e in _events("UsageRecorded")}
    settled = {e["jobId"]: e for e in _events("JobSettled")}
    refunded = {e["jobId"]: e for e in _events("UsageRefunded")}
    for job_id, event in recorded.items():
        report.checked["usage_recorded"] += 1
        job = jobs.get(job_id)
        if job is None:
            report.mismatches.append(f"chain recorded job {job_id}; the platform has no such job")
        elif job.status not in RECORDED_STATES:
            report.mismatches.append(f"chain recorded job {job_id}; the platform has it {job.status}")
        elif event["paramsHash"] != "0x" + encoding.params_hash(job.request_params).hex():
            report.mismatches.append(f"job {job_id}: the parameters signed on chain differ from the platform's")
    for job_id, event in settled.items():
        report.checked["job_settled"] += 1
        job = jobs.get(job_id)
        if job is None or job.status not in PAID_STATES:
            report.mismatches.append(
                f"chain settled job {job_id}; the platform has it {job.status if job else 'absent'}"
            )
        elif job.result_hash != event["resultHash"]:
            report.mismatches.append(f"job {job_id}: result hash on chain differs from the platform's")
    batched = _reconcile_batches(report, jobs)
    # ISSUE-13: a metered settlement charged the CPU-milliseconds the job's receipt states.
    for job_id, event in {e["jobId"]: e for e in _events("ComputeMetered")}.items():
        report.checked["compute_metered"] += 1
        job = jobs.get(job_id)
        metering = (job.receipt or {}).get("metering", {}) if job else {}
        if metering.get("cpu_millis") != int(event["cpuMillis"]):
            report.mismatches.append(f"job {job_id}: CPU-milliseconds charged on chain differ from its receipt's")
    for job_id in refunded:
        report.checked["usage_refunded"] += 1
        job = jobs.get(job_id)
        if job is None or job.status != Job.Status.REFUNDED:
            report.mismatches.append(
                f"chain refunded job {job_id}; the platform has it {job.status if job else 'absent'}"
            )
    for job_id, job in jobs.items():
        report.checked["platform_jobs"] += 1
        on_chain = job_id in recorded
        if job.status in RECORDED_STATES and not on_chain:
            report.mismatches.append(f"platform job {job.id} is {job.status} but the chain never recorded its use")
        if job.status not in RECORDED_STATES and on_chain:
            continue  # already reported above
        if job.status in PAID_STATES and job_id not in settled and job_id not in batched:
            report.mismatches.append(f"platform job {job.id} is settled but the chain has no settlement")
        if job.status == Job.Status.REFUNDED and job_id not in refunded:
            report.mismatches.append(f"platform job {job.id} is refunded but the chain has no refund")
    _reconcile_agreements(report)
    _reconcile_offers(report)
    _reconcile_dataset_privacy(report)
    _reconcile_registry(report)
    return report


def _reconcile_batches(report: Report, jobs: dict[str, Job]) -> set[str]:
    """ISSUE-14: every job a BatchSettled names is settled on the platform, in that batch, and its
    receipt leaf (recomputed from the platform's record, not read from it) proves against the
    root the chain holds for the batch. Returns the chain job ids settled in batches."""
    entries = {entry.job_id: entry for entry in SettlementBatchEntry.objects.select_related("batch")}
    batched: set[str] = set()
    for event in _events("BatchSettled"):
        batch_id, root = int(event["batchId"]), bytes.fromhex(str(event["root"])[2:])
        report.checked["batches_settled"] += 1
        for job_id in event["jobIds"]:
            batched.add(job_id)
            report.checked["batch_settled_jobs"] += 1
            job = jobs.get(job_id)
            entry = entries.get(job.pk) if job is not None else None
            if job is None or job.status not in PAID_STATES:
                report.mismatches.append(
                    f"chain settled job {job_id} in batch {batch_id}; the platform has it "
                    f"{job.status if job else 'absent'}"
                )
            elif entry is None or entry.batch.chain_batch_id != batch_id:
                report.mismatches.append(
                    f"chain settled job {job_id} in batch {batch_id}; the platform has it in no such batch"
                )
            elif job.receipt is None or not merkle.merkle_verify(
                merkle.receipt_leaf(
                    bytes.fromhex(job_id[2:]),
                    bytes.fromhex(job.result_hash[2:]),
                    receipts.settled_attestation(job.receipt),
                ),
                [bytes.fromhex(step[2:]) for step in entry.proof],
                root,
            ):
                report.mismatches.append(
                    f"job {job_id}: its receipt leaf does not prove against batch {batch_id}'s root on chain"
                )
    return batched


def _reconcile_agreements(report: Report) -> None:
    agent = agents.UsageAgreementsAgent()
    created = {int(e["agreementId"]): e for e in _events("AgreementCreated")}
    mirrored = {int(a.chain_agreement_id or 0): a for a in Agreement.objects.exclude(chain_agreement_id=None)}
    for agreement_id in created.keys() - mirrored.keys():
        report.mismatches.append(f"chain agreement {agreement_id} is missing from the platform")
    for agreement_id, agreement in mirrored.items():
        report.checked["agreements"] += 1
        if agreement_id not in created:
            report.mismatches.append(f"platform agreement {agreement.id} has no AgreementCreated on chain")
            continue
        state = agent.agreement(agreement_id)
        in_use = agreement.jobs.filter(status__in=[s for s in RECORDED_STATES if s != Job.Status.REFUNDED]).count()
        settled = agreement.jobs.filter(status__in=PAID_STATES).count()
        if state["calls_used"] != in_use:
            report.mismatches.append(
                f"agreement {agreement_id}: {state['calls_used']} calls used on chain, {in_use} on the platform"
            )
        if state["calls_settled"] != settled:
            report.mismatches.append(
                f"agreement {agreement_id}: {state['calls_settled']} calls settled on chain, {settled} on the platform"
            )


def _reconcile_offers(report: Report) -> None:
    published = {int(e["offerId"]): e for e in _events("OfferPublished")}
    mirrored = {int(o.chain_offer_id or 0): o for o in Offer.objects.exclude(chain_offer_id=None)}
    for offer_id in published.keys() - mirrored.keys():
        report.mismatches.append(f"chain offer {offer_id} is missing from the platform")
    for offer_id, offer in mirrored.items():
        report.checked["offers"] += 1
        event = published.get(offer_id)
        if event is None:
            report.mismatches.append(f"platform offer {offer.id} has no OfferPublished on chain")
        elif event["policyHash"] != offer.policy_hash:
            report.mismatches.append(f"offer {offer_id}: policy hash on chain differs from the platform's")


def _reconcile_dataset_privacy(report: Report) -> None:
    """Each dataset's spent privacy loss on chain is the sum of its recorded, unrefunded jobs'."""
    agent = agents.UsageAgreementsAgent()
    spent: Counter[uuid.UUID] = Counter()
    in_use = [s for s in RECORDED_STATES if s != Job.Status.REFUNDED]
    for dataset_id, rho in Job.objects.filter(status__in=in_use).values_list("dataset_id", "rho"):
        spent[dataset_id] += encoding.rho_nano(rho)
    for dataset_id, provider_id in Job.objects.values_list("dataset_id", "dataset__provider_id").distinct():
        report.checked["datasets"] += 1
        provider = accounts_selectors.wallet_address(user_id=provider_id)
        used = agent.dataset_privacy(dataset_id, provider=provider).used
        if used != spent[dataset_id]:
            report.mismatches.append(
                f"dataset {dataset_id}: {used} nano-rho spent on chain, {spent[dataset_id]} on the platform"
            )


def _reconcile_registry(report: Report) -> None:
    """Each registered catalogue dataset is active on chain with the catalogue's metadata hash
    (else it is reported stale, or retired); each dataset the platform registered and then
    deleted is retired on chain."""
    indexed = indexer.indexed_datasets()
    confirmed = ChainTransaction.Status.CONFIRMED
    datasets = Dataset.objects.filter(chain_registration__status=confirmed).select_related("chain_registration")
    in_catalogue = set(Dataset.objects.values_list("id", flat=True))
    for dataset in datasets:
        report.checked["registry_datasets"] += 1
        chain_dataset = str(dataset.chain_registration.args[0]).lower()  # type: ignore[union-attr]
        entry = indexed.get(chain_dataset)
        wanted = "0x" + dataset_metadata_hash(dataset).hex()
        if entry is None:
            report.mismatches.append(f"dataset {dataset.id}: registered by the platform, no DatasetRegistered on chain")
        elif entry.retired:
            report.mismatches.append(f"dataset {dataset.id} is in the catalogue but retired on chain")
        elif entry.metadata_hash != wanted:
            report.mismatches.append(
                f"dataset {dataset.id}: metadata hash on chain is stale ({entry.metadata_hash}, catalogue {wanted})"
            )
    for tx in ChainTransaction.objects.filter(
        chain_id=gateway.chain_id(), kind="dataset_register", function="registerFor", status=confirmed
    ):
        chain_dataset = str(tx.args[0]).lower()
        dataset_id = dataset_uuid(bytes.fromhex(chain_dataset[2:]))
        if dataset_id in in_catalogue:
            continue
        report.checked["registry_deleted"] += 1
        entry = indexed.get(chain_dataset)
        if entry is not None and not entry.retired:
            report.mismatches.append(f"dataset {dataset_id} was deleted from the catalogue but is active on chain")
