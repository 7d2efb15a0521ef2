"""Fixtures for the sandbox backend's tests: one real ``Sandbox`` per session (bubblewrap,
seccomp, cgroups; root needed), sealed inputs written the vault's way, and a key broker that
runs the real ``verify`` under a real ``Policy``."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from enclaves.attestation import InMemoryNonceStore, Policy, TeeType
from enclaves.attestation.sandbox import launcher_public_key, load_or_create_launcher_key
from enclaves.bundle import AlgorithmBundle
from enclaves.sandbox import InputFormat, Limits, LocalKeyBroker, RunOutcome, Sandbox, SealedInput
from enclaves.sandbox.cgroups import CgroupLimits, JobCgroup
from enclaves.sealed import seal

requires_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None or not Path("/sys/fs/cgroup").is_dir(),
    reason="the sandbox backend needs root, bubblewrap (apt-get install bubblewrap) and cgroups",
)

MANIFEST = hashlib.sha256(b"job manifest 1").digest()
TEST_LIMITS = Limits(memory_bytes=384 * 1024 * 1024, max_processes=32, wall_seconds=60.0)


@pytest.fixture
def created_cgroups(monkeypatch: pytest.MonkeyPatch) -> list[JobCgroup]:
    """Every job cgroup this test creates. Other pytest workers run sandboxes beside this one, in
    the same parent cgroup: a test asks about its own groups, never about whatever is there."""
    created: list[JobCgroup] = []
    original = JobCgroup.create

    def recording(name: str, limits: CgroupLimits) -> JobCgroup:
        group = original(name, limits)
        created.append(group)
        return group

    monkeypatch.setattr(JobCgroup, "create", staticmethod(recording))
    return created


def left_behind(groups: list[JobCgroup]) -> list[Path]:
    """Directories of ``groups`` that still exist."""
    return [directory for group in groups for directory in group.directories.values() if directory.exists()]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    key = load_or_create_launcher_key(tmp_path_factory.mktemp("launcher") / "launcher.pem")
    return Sandbox(key)


@dataclass
class Harness:
    sandbox: Sandbox
    directory: Path
    data_keys: dict[str, bytes] = field(default_factory=dict)

    def seal_table(self, name: str, table: pa.Table, *, key_id: str = "dataset-1", fmt: str = "parquet") -> SealedInput:
        buffer = io.BytesIO()
        if fmt == "csv":
            pyarrow.csv.write_csv(table, buffer)
        else:
            pq.write_table(table, buffer)
        key = self.data_keys.setdefault(key_id, os.urandom(32))
        blob_name = f"datasets/{key_id}/{name}.{fmt}"
        path = self.directory / f"{key_id}-{name}.sealed"
        path.write_bytes(seal(buffer.getvalue(), key=key, blob_name=blob_name, chunk_size=4096))
        return SealedInput(name=name, path=path, blob_name=blob_name, key_id=key_id, format=InputFormat(fmt))

    def policy(self, bundle: AlgorithmBundle, **overrides: Any) -> Policy:
        settings: dict[str, Any] = {
            "allowed_tee_types": frozenset(),
            "allowed_measurements": frozenset({(TeeType.SANDBOX, self.sandbox.measure(bundle))}),
            "allow_sandbox": True,
            "sandbox_launcher_keys": frozenset({launcher_public_key(self.sandbox.launcher_key)}),
        }
        settings.update(overrides)
        return Policy(**settings)

    def broker(self, bundle: AlgorithmBundle, **policy: Any) -> LocalKeyBroker:
        return LocalKeyBroker(
            policy=self.policy(bundle, **policy), nonces=InMemoryNonceStore(), data_keys=self.data_keys
        )

    def run(
        self,
        bundle: AlgorithmBundle,
        inputs: list[SealedInput],
        params: Mapping[str, Any] | None = None,
        *,
        limits: Limits = TEST_LIMITS,
        broker: LocalKeyBroker | None = None,
    ) -> RunOutcome:
        return self.sandbox.run_job(bundle, inputs, params or {}, limits, broker or self.broker(bundle), MANIFEST)


@pytest.fixture
def harness(sandbox: Sandbox, tmp_path: Path) -> Harness:
    return Harness(sandbox, tmp_path)


def python_bundle(
    source: str, schema: Mapping[str, Any], *, lockfile: Mapping[str, str] | None = None
) -> AlgorithmBundle:
    return AlgorithmBundle(
        kind="python", source=source, output_schema=schema, max_output_bytes=64 * 1024, lockfile=lockfile or {}
    )


NUMBER_RESULT: Mapping[str, Any] = {
    "type": "object",
    "properties": {"value": {"type": "number"}},
    "required": ["value"],
}
