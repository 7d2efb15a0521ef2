"""The local TEE backend: bubblewrap + seccomp + a cgroup per job, SIMULATED attestation.

Public interface (see ``enclaves/README.md``)::

    sandbox = Sandbox(load_or_create_launcher_key(path))
    sandbox.measure(bundle)                  # what a provider approves
    outcome = sandbox.run_job(bundle, sealed_inputs, params, limits, broker, manifest_hash)
    outcome.result, outcome.result_signature, outcome.verified.receipt(), outcome.metering

    pool = WarmPool(sandbox, size=1)         # sandboxes started ahead of their jobs, single-use
    outcome = pool.run_job(bundle, sealed_inputs, params, limits, broker, manifest_hash)
    pool.drain(bundle); pool.close()

``broker`` is the caller's ``KeyBroker`` (the custodian); ``LocalKeyBroker`` implements its steps
over an in-memory nonce store. Failures raise ``JobFailed`` with a stable ``code``.
"""

from enclaves.sandbox.broker import KeyBroker, KeyRelease, LocalKeyBroker
from enclaves.sandbox.host import host_problems
from enclaves.sandbox.launcher import (
    FAILURE_MESSAGES,
    JobFailed,
    Limits,
    Metering,
    ResultSignature,
    ResultSignatureInvalid,
    RunOutcome,
    Sandbox,
    SandboxProfile,
    run_job,
    verify_result_signature,
)
from enclaves.sandbox.pool import PoolStats, WarmPool
from enclaves.sealed import InputFormat, SealedInput

__all__ = [
    "FAILURE_MESSAGES",
    "InputFormat",
    "JobFailed",
    "KeyBroker",
    "KeyRelease",
    "Limits",
    "LocalKeyBroker",
    "Metering",
    "PoolStats",
    "ResultSignature",
    "ResultSignatureInvalid",
    "RunOutcome",
    "Sandbox",
    "SandboxProfile",
    "SealedInput",
    "WarmPool",
    "host_problems",
    "run_job",
    "verify_result_signature",
]
