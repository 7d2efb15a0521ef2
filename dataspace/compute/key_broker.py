"""The key custodian as the sandbox's key broker (``enclaves.sandbox.KeyBroker``).

Modelled on the Confidential Containers key broker protocol: the launcher asks for a nonce
(``issue_nonce``: a row here, single use, expiring), then presents the enclave's evidence and
ephemeral key (``release``). The custodian releases the dataset's data key, wrapped (JWE) to the
enclave's ephemeral key, only if

1. the nonce was issued here for this job, is fresh, and is consumed now (one conditional
   UPDATE; a refused attempt burns it too);
2. ``enclaves.attestation.verify`` accepts the evidence under the offer's policy: sandbox
   evidence only if the offer allows it and from a trusted launcher key, the measurement only if
   the chain (AlgorithmApprovals.isApproved, read now) approves it for this offer, report data
   bound to this nonce, the enclave's key and the manifest hash of *the job record* (the
   launcher's own manifest hash is ignored);
3. the key asked for is this job's dataset's, and the chain holds the job's use as recorded.

Only the custodian role runs it. Each release (or refusal) is recorded on the nonce's row.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from dataspace.chain import agents
from dataspace.compute import tee
from dataspace.compute.models import AttestationNonce, Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.role_checks import require_role
from dataspace.roles import Role
from dataspace.vault import services as vault
from enclaves.attestation import AttestationRefused, Evidence, Policy, RefusalCode, TeeType, verify
from enclaves.attestation.keywrap import wrap_data_key
from enclaves.sandbox import KeyRelease

NONCE_TTL = timedelta(minutes=5)


class KeyReleaseRefused(DomainError):
    """The custodian refused the key for a reason outside the evidence (the chain does not hold
    the job's use as recorded, the key asked for is not the job's)."""


class DatabaseNonceStore:
    """``enclaves.attestation.NonceStore`` over ``AttestationNonce`` rows of one job."""

    def __init__(self, job_id: uuid.UUID, ttl: timedelta = NONCE_TTL) -> None:
        self.job_id = job_id
        self.ttl = ttl

    def issue(self, *, now: datetime) -> bytes:
        nonce = secrets.token_bytes(32)
        AttestationNonce.objects.create(nonce=nonce.hex(), job_id=self.job_id, issued_at=now, expires_at=now + self.ttl)
        return nonce

    def consume(self, nonce: bytes, *, now: datetime) -> None:
        rows = AttestationNonce.objects.filter(nonce=nonce.hex(), job_id=self.job_id)
        if rows.filter(consumed_at__isnull=True, expires_at__gt=now).update(consumed_at=now) == 1:
            return
        row = rows.first()
        if row is None:
            raise AttestationRefused(RefusalCode.NONCE_UNKNOWN)
        if row.consumed_at is not None:
            raise AttestationRefused(RefusalCode.NONCE_REUSED)
        rows.filter(consumed_at__isnull=True).update(consumed_at=now, refusal=str(RefusalCode.NONCE_EXPIRED))
        raise AttestationRefused(RefusalCode.NONCE_EXPIRED)


def offer_policy(job: Job) -> Policy:
    """The offer's attestation policy, its allow-list read from the chain now: no hardware TEE
    types (this space has none configured), the sandbox only if the offer allows it, and the job's
    measurement only if AlgorithmApprovals approves it for this offer and TEE type."""
    offer = job.agreement.offer
    assert job.algorithm is not None
    assert offer.chain_offer_id is not None
    measurement = bytes.fromhex(job.algorithm.measurement)
    approved = agents.AlgorithmApprovalsAgent().is_approved(
        offer_id=offer.chain_offer_id, measurement=measurement, tee_type=agents.TeeBit.SANDBOX
    )
    launcher_keys = tee.trusted_launcher_keys() if offer.allow_sandbox else frozenset()
    return Policy(
        allowed_tee_types=frozenset(),
        allowed_measurements=frozenset({(TeeType.SANDBOX, measurement)}) if approved else frozenset(),
        allow_sandbox=offer.allow_sandbox and bool(launcher_keys),
        sandbox_launcher_keys=launcher_keys,
    )


class CustodianKeyBroker:
    def __init__(self, *, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.nonces = DatabaseNonceStore(job_id)

    def issue_nonce(self) -> bytes:
        require_role(Role.CUSTODIAN, purpose="Issuing a key-release nonce")
        return self.nonces.issue(now=timezone.now())

    def release(self, evidence: Evidence, *, nonce: bytes, manifest_hash: bytes, key_ids: Sequence[str]) -> KeyRelease:
        require_role(Role.CUSTODIAN, purpose="Releasing a data key to an enclave")
        del manifest_hash  # the launcher's word; the job record's is used below
        now = timezone.now()
        self.nonces.consume(nonce, now=now)  # first: a refused attempt burns the nonce too
        row = AttestationNonce.objects.filter(nonce=nonce.hex())
        job = Job.objects.select_related("agreement__offer", "dataset__data_key", "algorithm").get(pk=self.job_id)
        try:
            verified = verify(evidence, offer_policy(job), nonce, now, manifest_hash=tee.manifest_hash(job))
        except AttestationRefused as exc:
            row.update(refusal=str(exc.code))
            raise
        if list(key_ids) != [tee.data_key_id(job)]:
            row.update(refusal="key_not_the_jobs")
            raise KeyReleaseRefused(
                "The enclave asked for a key that is not this job's.", code=ErrorCode.ATTESTATION_REFUSED
            )
        usage = agents.UsageAgreementsAgent().usage(bytes.fromhex(job.chain_job_id[2:]))
        if usage.status != agents.JobStatus.RECORDED:
            row.update(refusal="usage_not_recorded")
            raise KeyReleaseRefused(
                "The chain does not hold this job's use as recorded.", code=ErrorCode.USAGE_NOT_RECORDED
            )
        context = verified.attestation_hash().hex()
        token = wrap_data_key(
            vault.data_key_unwrap(job.dataset.data_key), verified.ephemeral_public_key, context=context
        )
        row.update(released_at=timezone.now(), attestation_hash=context)
        return KeyRelease(tokens={tee.data_key_id(job): token}, context=context, verified=verified)
