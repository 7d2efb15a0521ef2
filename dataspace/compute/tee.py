"""The ``tee`` engine: an approved algorithm run over a dataset inside the sandbox backend.

The worker serving the ``tee`` queue launches the sandbox (``enclaves.sandbox``) and is, for the
SIMULATED backend, the key custodian too: the launcher needs root (cgroups, the staging mounts)
and the key broker needs the data keyring, so compose runs the queue in the custodian service.
The dataset's raw vault blob (the RLV1 sealed upload, as stored) is handed to the sandbox as its
sealed input; its data key is released only by ``key_broker.CustodianKeyBroker`` after the
sandbox's evidence verifies for this job. Nothing is decrypted outside the sandbox.

A job's manifest hash is computed here from the job record (the chain job id, the dataset and
its content hash, the algorithm's measurement, the signed parameters' hash, the offer): the
broker binds the evidence to it, never to what a launcher says.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from dataspace.canonical import canonical_json
from dataspace.chain import encoding
from dataspace.compute.models import Algorithm, Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.policies.models import Offer
from dataspace.vault import blobs
from enclaves.attestation.sandbox import launcher_public_key, load_or_create_launcher_key
from enclaves.bundle import AlgorithmBundle, BundleInvalid
from enclaves.sandbox import InputFormat, Limits, RunOutcome, Sandbox, SealedInput, WarmPool, host_problems

logger = logging.getLogger(__name__)

ENGINE = "tee"
INPUT_NAME = "data"  # the dataset's table, as the algorithm sees it: tables["data"] / FROM data
MANIFEST_FORMAT = "redlake/tee-job-manifest/v1"
MAX_PROCESSES = 64

_lock = threading.Lock()
_launcher: Sandbox | None = None
_measurer: Sandbox | None = None
_pool: WarmPool | None = None


class TeeRefused(DomainError):
    """The tee engine will not run this job (the algorithm is no longer approved, the sandbox
    changed since the approval, ...); the job fails and is refunded."""


def launcher_key_path() -> Path:
    return Path(getattr(settings, "TEE_LAUNCHER_KEY_PATH", "") or settings.VAR_DIR / "tee" / "launcher.pem")


def launcher() -> Sandbox:
    """This worker process's sandbox launcher (one per process; its key signs the SIMULATED
    evidence). Built on first use, from the worker's main thread (bubblewrap follows it)."""
    global _launcher
    with _lock:
        if _launcher is None:
            path = launcher_key_path()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _launcher = Sandbox(load_or_create_launcher_key(path), bwrap=bwrap())
        return _launcher


def bwrap() -> str:
    return str(getattr(settings, "TEE_BWRAP", "") or "bwrap")


def sandbox_host_problems() -> list[str]:
    """What stops this host from running the sandbox backend (empty: nothing)."""
    return host_problems(bwrap())


# -- the warm pool (ISSUE-13: a job takes a sandbox started ahead instead of starting one) --------


def pool() -> WarmPool | None:
    return _pool


def pool_start() -> WarmPool | None:
    """Start this process's pool of warm sandboxes (TEE_POOL_SIZE per approved algorithm, the
    most recently approved TEE_POOL_MAX_ALGORITHMS; 0 turns it off). Called from the process that
    runs tee tasks, once it is up (``tee_worker``); the pool's own thread starts the sandboxes."""
    global _pool
    size = int(getattr(settings, "TEE_POOL_SIZE", 1))
    sandbox = launcher()
    with _lock:
        if _pool is None and size > 0:
            interval = float(getattr(settings, "TEE_POOL_REFRESH_SECONDS", 2.0))
            _pool = WarmPool(sandbox, size, refresh=_refresh, refresh_seconds=interval)
        return _pool


def pool_stop() -> None:
    """Tear down every warm sandbox of this process (worker shutdown)."""
    global _pool
    with _lock:
        current, _pool = _pool, None
    if current is not None:
        waiting = current.stats().waiting
        current.close()
        logger.info("the tee worker's warm sandboxes are torn down (%d)", waiting)


def pool_wanted(sandbox: Sandbox) -> list[tuple[AlgorithmBundle, Limits]]:
    """What the pool keeps warm: each approved algorithm whose measurement this host's sandbox
    still gives (a changed runtime needs a new approval; no job could use it), under its offer's
    limits, most recently approved first."""
    limit = int(getattr(settings, "TEE_POOL_MAX_ALGORITHMS", 8))
    approved = Algorithm.objects.filter(status=Algorithm.Status.APPROVED).select_related("offer")
    wanted = []
    for algorithm in approved.order_by("-decided_at")[:limit]:
        try:
            bundle = bundle_of(algorithm)
            if sandbox.measure(bundle).hex() == algorithm.measurement:
                wanted.append((bundle, limits_for_offer(algorithm.offer)))
        except (BundleInvalid, ValueError):
            continue
    return wanted


def _refresh(pool: WarmPool) -> None:
    # Runs in the pool's thread: revoked approvals are drained here, within one refresh interval.
    from django.db import connection

    try:
        pool.retain(pool_wanted(pool.sandbox))
    finally:
        connection.close()


def trusted_launcher_keys() -> frozenset[bytes]:
    """Launcher public keys whose SIMULATED evidence and result bindings the custodian accepts:
    TEE_SANDBOX_LAUNCHER_KEYS (hex) and, when this process launches sandboxes itself (the
    SIMULATED backend: the custodian serves the ``tee`` queue), its own."""
    keys = {bytes.fromhex(k) for k in getattr(settings, "TEE_SANDBOX_LAUNCHER_KEYS", []) if k}
    if launcher_key_path().exists():
        keys.add(launcher_public_key(load_or_create_launcher_key(launcher_key_path())))
    return frozenset(keys)


def measure(bundle: AlgorithmBundle) -> bytes:
    """The bundle's measurement under this host's sandbox profile (the runtime, the confinement,
    the seccomp filters). Needs no launcher key: a throwaway one is used, as the key is not part
    of the profile."""
    global _measurer
    with _lock:
        if _measurer is None:
            staging = Path(settings.VAR_DIR) / "tee" / "measure-staging"
            staging.mkdir(parents=True, exist_ok=True)
            _measurer = Sandbox(Ed25519PrivateKey.generate(), staging_dir=staging)
        return _measurer.measure(bundle)


def bundle_of(algorithm: Algorithm) -> AlgorithmBundle:
    return AlgorithmBundle.from_canonical(algorithm.bundle.encode())


def manifest_hash(job: Job) -> bytes:
    """What the evidence of this job's run must bind (in its report data): the job record."""
    assert job.algorithm is not None
    document = {
        "format": MANIFEST_FORMAT,
        "job_id": job.chain_job_id,
        "offer": job.agreement.offer.chain_offer_id,
        "dataset": str(job.dataset_id),
        "dataset_sha256": job.dataset.content_sha256,
        "measurement": job.algorithm.measurement,
        "params_hash": "0x" + encoding.params_hash(job.request_params).hex(),
    }
    return hashlib.sha256(canonical_json(document)).digest()


def limits_for(job: Job) -> Limits:
    return limits_for_offer(job.agreement.offer)


def limits_for_offer(offer: Offer) -> Limits:
    return Limits(
        memory_bytes=int(offer.memory_limit_bytes), max_processes=MAX_PROCESSES, wall_seconds=offer.wall_seconds
    )


def data_key_id(job: Job) -> str:
    return str(job.dataset.data_key_id)


def _sealed_copy(job: Job, directory: Path) -> SealedInput:
    """The dataset's vault blob, still sealed, copied where the launcher opens it (storage may be
    remote); the sandbox gets its descriptor after the key release."""
    path = directory / "input.sealed"
    with blobs.open_for_read(job.dataset.blob_name) as source, path.open("wb") as sink:
        shutil.copyfileobj(source, sink)
    return SealedInput(
        name=INPUT_NAME,
        path=path,
        blob_name=job.dataset.blob_name,
        key_id=data_key_id(job),
        format=InputFormat(job.dataset.file_format),
    )


@functools.cache
def _host_problems() -> tuple[str, ...]:
    return tuple(sandbox_host_problems())


def run(job: Job) -> RunOutcome:
    """Runs the job's algorithm in the sandbox with the custodian as key broker. Raises
    ``TeeRefused`` before anything starts, ``JobFailed`` (a fixed code) for what went wrong
    inside, ``KeyReleaseRefused`` when the custodian refused the key for a chain reason."""
    from dataspace.compute import key_broker

    algorithm = job.algorithm
    warm = pool()
    if algorithm is None or algorithm.status != Algorithm.Status.APPROVED:
        if algorithm is not None and warm is not None:
            warm.drain(bundle_of(algorithm))
        raise TeeRefused("The job's algorithm is not approved (any more).", code=ErrorCode.ALGORITHM_NOT_APPROVED)
    problems = _host_problems()
    if problems:
        logger.error("this worker cannot run sandbox jobs: %s", "; ".join(problems))
        raise TeeRefused(
            "This space's tee worker cannot run sandbox jobs (host not set up); nothing ran.",
            code=ErrorCode.TEE_JOB_FAILED,
        )
    bundle = bundle_of(algorithm)
    sandbox = launcher()
    if sandbox.measure(bundle).hex() != algorithm.measurement:
        raise TeeRefused(
            "The sandbox's measurement of this algorithm is not the approved one (the runtime or the sandbox "
            "changed): the provider must approve it again.",
            code=ErrorCode.ALGORITHM_NOT_APPROVED,
        )
    params = job.params.get("params", {})
    work = Path(tempfile.mkdtemp(prefix=f"tee-{job.id}-", dir=_work_root()))
    try:
        sealed = _sealed_copy(job, work)
        broker = key_broker.CustodianKeyBroker(job_id=job.id)
        limits = limits_for(job)
        # What the pool keeps is decided by its refresh (the most recently approved algorithms), not
        # here: keeping every algorithm a job names would start sandboxes the refresh then drops.
        started = warm.take(bundle, limits) if warm is not None else None
        # For the operator (and the tests): whether the job found a sandbox waiting.
        logger.info("tee job %s runs in a %s sandbox", job.id, "warm" if started is not None else "cold")
        return sandbox.run_job(bundle, [sealed], params, limits, broker, manifest_hash(job), started=started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _work_root() -> Path:
    root = Path(settings.VAR_DIR) / "tee" / "jobs"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def result_save(job: Job, outcome: RunOutcome) -> tuple[str, str, dict[str, Any]]:
    """Writes the signed result's canonical bytes; returns (blob, sha256, the run's record)."""
    name = f"jobs/{job.id}/result.json"
    if blobs.exists(name):
        blobs.delete(name)
    with blobs.open_for_write(name) as sink:
        sink.write(outcome.result_bytes)
    signature = outcome.result_signature
    record = {
        **outcome.verified.receipt(),
        "measurement": outcome.measurement.hex(),
        "metering": outcome.metering.as_dict(),
        "result_signature": {
            "enclave_key": signature.enclave_key.hex(),
            "enclave_signature": signature.enclave_signature.hex(),
            "binding": signature.binding.hex(),
            "binding_signature": signature.binding_signature.hex(),
        },
    }
    return name, hashlib.sha256(outcome.result_bytes).hexdigest(), record
