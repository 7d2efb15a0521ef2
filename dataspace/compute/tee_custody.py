"""The custodian's release of a ``tee`` job's result: the same checks as an HE result.

1. The chain holds the job's use as recorded, with the signed parameters and privacy loss
   (``custody._check_chain``, shared with HE jobs).
2. The result's bytes are those the tee worker reported, signed by the enclave the custodian
   attested (``enclaves.sandbox.verify_result_signature``: the enclave's key bound to the
   attestation hash by a trusted launcher key).
3. The output schema and maximum size of the approved bundle (``enclaves.bundle.check_output``).
4. Cohort: the dataset's row count (every row is an input of the algorithm) must reach the
   offer's minimum, else the answer is withheld (and costs what an answer costs).
5. Differential privacy on a personal dataset, a deliberately conservative mechanism: an
   algorithm is arbitrary code, so nothing is assumed about how one row moves its output. Its
   output schema must be a fixed structure (objects whose properties are all required) of
   numbers, each declaring ``minimum`` and ``maximum``. Every number is clamped to its bounds,
   so one row can move each of the d numbers by at most (hi - lo) and the whole vector by at most
   sqrt(d) * (hi - lo) in L2; each number gets Gaussian noise for that L2 sensitivity at the job's
   rho (``dataspace.privacy.mechanisms.gaussian``, rho split evenly over the d numbers, which
   gives the same scale). The answer is only as useful as its bounds are tight.

The receipt names the engine (``tee``), the TEE type, its label (SIMULATED for the sandbox:
never mistaken for hardware), the measurement, the meters and the attestation hash, which is
also what the settlement pins on chain.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings

from dataspace.compute import custody, receipts, tee
from dataspace.compute.models import Job
from dataspace.errors import ErrorCode
from dataspace.privacy import mechanisms
from dataspace.vault import blobs
from enclaves.bundle import OutputRejected, check_output
from enclaves.sandbox import ResultSignature, ResultSignatureInvalid, verify_result_signature

Bounds = tuple[float, float]


def numeric_leaves(schema: Any, path: str = "$") -> Iterator[tuple[str, Bounds | None]]:
    """Every number of an output schema, with its declared bounds (None when it has none or is
    not a fixed-structure number); a non-number leaf or an array is reported with None too."""
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        for name, sub in properties.items():
            if name not in required:
                yield f"{path}.{name} (not required)", None
            else:
                yield from numeric_leaves(sub, f"{path}.{name}")
        return
    if kind in ("number", "integer"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and math.isfinite(lo) and lo < hi < math.inf:
            yield path, (float(lo), float(hi))
            return
    yield path, None


def _values(result: Any, schema: Any, path: str = "$") -> Iterator[tuple[str, float]]:
    kind = schema.get("type")
    if kind == "object":
        for name, sub in schema.get("properties", {}).items():
            yield from _values(result[name], sub, f"{path}.{name}")
    else:
        yield path, float(result)


def _replace(result: Any, schema: Any, values: dict[str, float], path: str = "$") -> Any:
    kind = schema.get("type")
    if kind == "object":
        return {
            name: _replace(result[name], sub, values, f"{path}.{name}") for name, sub in schema["properties"].items()
        }
    return values[path]


def _noised(job: Job, result: Any, schema: Any) -> tuple[Any, dict[str, Any]]:
    CustodyRefused = custody.CustodyRefused

    leaves = dict(numeric_leaves(schema))
    if not leaves or any(bounds is None for bounds in leaves.values()):
        raise CustodyRefused(
            "On a personal dataset an algorithm's output must be numbers with declared bounds.",
            code=ErrorCode.ALGORITHM_INVALID,
        )
    if job.rho <= 0:
        raise CustodyRefused(
            "The job has no privacy loss to spend on a personal dataset.", code=ErrorCode.EPSILON_INVALID
        )
    d = len(leaves)
    clamped = {}
    sensitivities = {}
    for name, value in _values(result, schema):
        lo, hi = leaves[name]  # type: ignore[misc]
        clamped[name] = min(max(value, lo), hi)
        sensitivities[name] = hi - lo  # rho split over d numbers: scale = sqrt(d) * (hi - lo) / sqrt(2 rho)
    noisy = mechanisms.gaussian(clamped, sensitivities, job.rho)
    released = _replace(result, schema, {k: min(max(v, leaves[k][0]), leaves[k][1]) for k, v in noisy.values.items()})  # type: ignore[index]
    noise = {
        "mechanism": "gaussian (OpenDP, zCDP), every output number clamped to its declared bounds; "
        f"L2 sensitivity sqrt(d)*(hi-lo), d={d}",
        "epsilon": job.epsilon,
        "delta": settings.PRIVACY_DELTA,
        "scales": {k: round(v, 6) for k, v in noisy.scales.items()},
    }
    return released, noise


def release(job: Job) -> custody.Release:
    """Checks and releases a computed tee job's result (``custody.Release``); raises
    ``custody.CustodyRefused`` when nothing may be released."""
    custody._check_chain(job)
    record = job.tee_run or {}
    with blobs.open_for_read(job.result_blob) as source:
        data = source.read()
    if hashlib.sha256(data).hexdigest() != job.ciphertext_sha256:
        raise custody.CustodyRefused(
            "The result is not the one the tee worker reported.", code=ErrorCode.RESULT_TAMPERED
        )
    signature = record.get("result_signature", {})
    attestation_hash = bytes.fromhex(record.get("attestation_hash", ""))
    try:
        verify_result_signature(
            data,
            ResultSignature(**{k: bytes.fromhex(v) for k, v in signature.items()}),
            attestation_hash=attestation_hash,
            launcher_keys=sorted(tee.trusted_launcher_keys()),
        )
    except (ResultSignatureInvalid, TypeError, ValueError):
        raise custody.CustodyRefused(
            "The result is not signed by the attested enclave.", code=ErrorCode.RESULT_SIGNATURE_INVALID
        ) from None
    assert job.algorithm is not None
    if record.get("measurement") != job.algorithm.measurement:
        raise custody.CustodyRefused(
            "The result was computed by another measurement.", code=ErrorCode.ALGORITHM_NOT_APPROVED
        )
    bundle = tee.bundle_of(job.algorithm)
    try:
        result = check_output(data, bundle)
    except OutputRejected as exc:
        raise custody.CustodyRefused(
            f"The result does not fit its declared output ({exc.code}).", code=ErrorCode.RESULT_SHAPE_MISMATCH
        ) from None
    offer = job.agreement.offer
    withheld: dict[str, str] | None = None
    if job.dataset.row_count < offer.min_cohort:
        withheld = {
            "code": str(ErrorCode.COHORT_TOO_SMALL),
            "message": "Withheld: the algorithm's input has fewer rows than the policy's minimum of "
            f"{offer.min_cohort}.",
        }
        answer, noise = None, {"mechanism": "none (withheld)"}
    elif job.dataset.non_personal:
        answer, noise = result, {"mechanism": "none (the dataset is declared non-personal)"}
    else:
        answer, noise = _noised(job, result, bundle.output_schema)
    salt = secrets.token_bytes(32)
    released = answer if withheld is None else {"withheld": withheld}
    result_hash = receipts.result_commitment(released, salt)
    tee_receipt = {
        "tee_type": record["tee_type"],
        "label": record["label"],
        "measurement": record["measurement"],
        "tcb_status": record.get("tcb_status", ""),
        "attestation_hash": record["attestation_hash"],
        "verified_at": record.get("verified_at", ""),
    }
    metering = record.get("metering", {})
    signed = receipts.receipt_sign(
        {
            "job_id": job.chain_job_id,
            "operation": job.operation,
            "parameters": job.request_params,
            "dataset_sha256": job.dataset.content_sha256,
            "result_sha256": "0x" + result_hash.hex(),
            "result_salt": "0x" + salt.hex(),
            "enclave_result_sha256": job.ciphertext_sha256,
            "noise": noise,
            "withheld": withheld,
            "engine": tee.ENGINE,
            "tee": tee_receipt,
            "metering": {
                "cpu_millis": int(metering.get("billable_cpu_ms", 0)),
                "peak_memory_bytes": int(metering.get("peak_memory_bytes", 0)),
                "bytes_read": int(metering.get("bytes_read", 0)),
            },
            "custodian": receipts.custodian().address,
        }
    )
    return custody.Release(
        result=answer,
        result_hash=result_hash,
        receipt=signed,
        attestation_hash=attestation_hash,
        withheld=custody.Withheld(ErrorCode.COHORT_TOO_SMALL, withheld["message"]) if withheld else None,
    )
