"""The launcher: runs one approved bundle in a bubblewrap sandbox, attests it, relays the key
release, checks and signs off the result, and meters what ran.

The parts: ``profile`` (the confinement arguments and the measured profile), ``run`` (one
sandbox from start to teardown and its conversation with the enclave), ``outcome`` (limits,
failure codes, meters, the signed result), ``pool`` (sandboxes started ahead of their jobs).
This module holds the per-process ``Sandbox``: the runtime, the launcher key, the measurement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from enclaves.attestation.sandbox import launcher_public_key
from enclaves.bundle import AlgorithmBundle, BundleKind, canonical_json, measurement
from enclaves.sandbox import seccomp
from enclaves.sandbox.broker import KeyBroker
from enclaves.sandbox.cgroups import remove_stale_groups
from enclaves.sandbox.outcome import (
    BINDING_DOMAIN,
    FAILURE_MESSAGES,
    JobFailed,
    Limits,
    Metering,
    ResultSignature,
    ResultSignatureInvalid,
    RunOutcome,
    verify_result_signature,
)
from enclaves.sandbox.profile import SANDBOX_UID, SandboxProfile, confinement_template
from enclaves.sandbox.run import STARTUP_TIMEOUT, SandboxRun, _Libc
from enclaves.sandbox.runtime import Distribution, RuntimeImage
from enclaves.sealed import SealedInput

__all__ = [
    "BINDING_DOMAIN",
    "DEFAULT_STAGING",
    "FAILURE_MESSAGES",
    "SANDBOX_UID",
    "STARTUP_TIMEOUT",
    "JobFailed",
    "Limits",
    "Metering",
    "ResultSignature",
    "ResultSignatureInvalid",
    "RunOutcome",
    "Sandbox",
    "SandboxProfile",
    "run_job",
    "verify_result_signature",
]

DEFAULT_STAGING = Path("/run/redlake-sandbox")


class Sandbox:
    """The local sandbox backend: one per worker process (it caches the runtime image hash and
    the seccomp filters). ``launcher_key`` signs the SIMULATED evidence and the result bindings."""

    def __init__(
        self,
        launcher_key: Ed25519PrivateKey,
        *,
        runtime: RuntimeImage | None = None,
        bwrap: str = "bwrap",
        staging_dir: Path = DEFAULT_STAGING,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.launcher_key = launcher_key
        self.launcher_public_key = launcher_public_key(launcher_key)
        self.runtime = runtime or RuntimeImage.current()
        self.bwrap = bwrap
        self.staging = staging_dir
        self.clock = clock
        self._libc = _Libc()
        for name in ("python", "site", "enclaves"):
            (self.staging / name).mkdir(mode=0o755, parents=True, exist_ok=True)
        self._profiles: dict[bytes, tuple[SandboxProfile, list[Distribution], list[str]]] = {}
        remove_stale_groups()
        self._lock = threading.Lock()

    # -- measurement -------------------------------------------------------------------------

    def _profile(self, bundle: AlgorithmBundle) -> tuple[SandboxProfile, list[Distribution], list[str]]:
        key = bundle.digest()
        with self._lock:
            known = self._profiles.get(key)
        if known is None:
            distributions = self.runtime.closure(bundle.lockfile, sql=bundle.kind is BundleKind.SQL)
            template = confinement_template(self.runtime, distributions)
            profile = SandboxProfile(
                runtime_image=self.runtime.image_hash(distributions),
                distributions=tuple((d.name, d.version) for d in distributions),
                confinement=tuple(template),
                seccomp=seccomp.filter_hashes(),
            )
            known = (profile, distributions, template)
            with self._lock:
                self._profiles[key] = known
        return known

    def profile(self, bundle: AlgorithmBundle) -> SandboxProfile:
        """The sandbox profile this bundle runs under (raises ``BundleInvalid`` if its lockfile
        does not match the runtime)."""
        return self._profile(bundle)[0]

    def measure(self, bundle: AlgorithmBundle) -> bytes:
        """The measurement a provider approves: SHA-256 over the bundle and this profile."""
        return measurement(bundle, self.profile(bundle).canonical_bytes())

    # -- one job -----------------------------------------------------------------------------

    def start_run(self, bundle: AlgorithmBundle, limits: Limits, *, warmed: bool = True) -> SandboxRun:
        """A sandbox for one job of ``bundle`` under ``limits``, started up to its ready (keys
        made, runtime warmed up, nothing else), or only to its hello unless ``warmed`` (it warms up
        on its own meanwhile); it has seen no nonce, no key and no data. A failed start is
        recorded in the run (``finish`` raises it), never raised here."""
        run = SandboxRun(self, bundle, limits, self._profile(bundle)[2])
        run.start(until_ready=warmed)
        return run

    def run_job(
        self,
        bundle: AlgorithmBundle,
        sealed_inputs: Sequence[SealedInput],
        params: Mapping[str, Any],
        limits: Limits,
        broker: KeyBroker,
        manifest_hash: bytes,
        *,
        started: SandboxRun | None = None,
    ) -> RunOutcome:
        """Run ``bundle`` on ``sealed_inputs`` under ``limits``: the enclave is attested to
        ``broker`` for the job ``manifest_hash`` names before any data key reaches it. Returns
        the checked, signed result or raises ``JobFailed``. ``started`` is a sandbox started
        ahead (``start_run``, for this bundle and these limits); it is used up either way."""
        profile, _, _ = self._profile(bundle)
        job_measurement = measurement(bundle, profile.canonical_bytes())
        names = [item.name for item in sealed_inputs]
        if started is not None and (started.bundle.digest() != bundle.digest() or started.limits != limits):
            started.teardown()
            raise ValueError("a sandbox started for another bundle or other limits")
        if len(set(names)) != len(names):
            if started is not None:
                started.teardown()
            raise ValueError("input table names must be unique")
        params_bytes = canonical_json(dict(params))
        # Started for this job, it warms up while the launcher attests it and the broker releases.
        run = started if started is not None else self.start_run(bundle, limits, warmed=False)
        return run.finish(
            list(sealed_inputs),
            broker=broker,
            manifest_hash=manifest_hash,
            job_measurement=job_measurement,
            params_bytes=params_bytes,
        )


def run_job(
    bundle: AlgorithmBundle,
    sealed_inputs: Sequence[SealedInput],
    params: Mapping[str, Any],
    limits: Limits,
    broker: KeyBroker,
    manifest_hash: bytes,
    *,
    sandbox: Sandbox,
) -> RunOutcome:
    """``sandbox.run_job(...)``: see ``Sandbox.run_job``."""
    return sandbox.run_job(bundle, sealed_inputs, params, limits, broker, manifest_hash)
