"""Algorithm bundles (canonical form, validation, output checks), the measurement's dependence on
the sandbox profile, the runtime image and seccomp filters, and the sealed-input format shared
with the vault. No sandbox is started here."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from dataspace.vault.stream import OpeningReader, SealingWriter
from enclaves.bundle import (
    AlgorithmBundle,
    BundleInvalid,
    OutputRejected,
    canonical_json,
    check_output,
    measurement,
    validate_lockfile,
)
from enclaves.sandbox import seccomp
from enclaves.sandbox.launcher import SandboxProfile
from enclaves.sandbox.runtime import RuntimeImage
from enclaves.sealed import SealedBlobError, open_sealed, seal

pytestmark = pytest.mark.smoke

SCHEMA = {
    "type": "object",
    "properties": {"mean": {"type": "number"}, "groups": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
    "required": ["mean"],
}


def _bundle(**changes: object) -> AlgorithmBundle:
    fields: dict[str, object] = {
        "kind": "python",
        "source": "def run(tables, params):\n    return {'mean': 1.0}\n",
        "output_schema": SCHEMA,
        "max_output_bytes": 200,
    }
    fields.update(changes)
    return AlgorithmBundle(**fields)  # type: ignore[arg-type]


def _profile(**changes: object) -> SandboxProfile:
    fields: dict[str, object] = {
        "runtime_image": bytes(32),
        "distributions": (("numpy", "2.4.6"),),
        "confinement": ("--unshare-all", "--cap-drop", "ALL"),
        "seccomp": {"confinement": "aa", "exec": "bb"},
    }
    fields.update(changes)
    return SandboxProfile(**fields)  # type: ignore[arg-type]


def test_a_bundle_round_trips_through_its_canonical_bytes() -> None:
    bundle = _bundle(lockfile={"Scikit_Learn": "1.9.1"})
    assert bundle.lockfile == {"scikit-learn": "1.9.1"}
    assert AlgorithmBundle.from_canonical(bundle.canonical_bytes()) == bundle


def test_another_encoding_of_the_same_bundle_is_refused() -> None:
    pretty = json.dumps(json.loads(_bundle().canonical_bytes()), indent=2).encode()
    with pytest.raises(BundleInvalid, match="canonical"):
        AlgorithmBundle.from_canonical(pretty)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"source": "def main():\n    pass\n"}, "source"),
        ({"source": "def run(:\n"}, "source"),
        ({"source": "def run(tables):\n    pass\n"}, "source"),
        ({"max_output_bytes": 0}, "max_output_bytes"),
        ({"output_schema": {"type": "dataframe"}}, "output_schema"),
        ({"output_schema": {"type": "object", "properties": {}, "required": ["x"]}}, "output_schema"),
        ({"lockfile": {"numpy": ">=2"}}, "lockfile"),
        ({"kind": "sql", "source": "SELECT 1", "lockfile": {"numpy": "2.4.6"}}, "lockfile"),
    ],
)
def test_an_invalid_bundle_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(BundleInvalid) as caught:
        _bundle(**changes)
    assert caught.value.field == field
    assert caught.value.code == "bundle_invalid"


def test_a_lockfile_must_match_the_runtime_exactly() -> None:
    validate_lockfile({"numpy": "2.4.6"}, {"numpy": "2.4.6"})
    with pytest.raises(BundleInvalid) as caught:
        validate_lockfile({"numpy": "2.4.5"}, {"numpy": "2.4.6"})
    assert caught.value.code == "lockfile_mismatch"
    with pytest.raises(BundleInvalid):
        validate_lockfile({"left-pad": "1.0"}, {"numpy": "2.4.6"})


def test_the_runtime_validates_a_lockfile_against_what_is_installed() -> None:
    runtime = RuntimeImage.current()
    names = [d.name for d in runtime.closure({"scikit-learn": runtime.versions()["scikit-learn"]})]
    assert {"scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl", "cryptography", "pyarrow"} <= set(names)
    assert "duckdb" not in names
    assert "django" not in names
    with pytest.raises(BundleInvalid):
        runtime.closure({"scikit-learn": "0.1"})


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (b'{"mean":1.5}', None),
        (b'{"groups":["a"],"mean":1}', None),
        (b'{"mean":"1.5"}', "output_schema_mismatch"),
        (b'{"mean":1.5,"rows":[1,2]}', "output_schema_mismatch"),
        (b'{"groups":["a","b","c","d"],"mean":1}', "output_schema_mismatch"),
        (b'{"groups":["a"]}', "output_schema_mismatch"),
        (b'{"mean":NaN}', "output_schema_mismatch"),
        (b'{ "mean": 1.5 }', "output_schema_mismatch"),
        (b'{"mean":1.5,"groups":["' + b"x" * 300 + b'"]}', "output_too_large"),
    ],
)
def test_output_checks(result: bytes, code: str | None) -> None:
    if code is None:
        check_output(result, _bundle())
        return
    with pytest.raises(OutputRejected) as caught:
        check_output(result, _bundle())
    assert caught.value.code == code
    assert "x" * 10 not in str(caught.value)


def test_the_measurement_changes_with_the_bundle_and_with_every_part_of_the_profile() -> None:
    base = measurement(_bundle(), _profile().canonical_bytes())
    assert base == measurement(_bundle(), _profile().canonical_bytes())
    others = [
        measurement(
            _bundle(source="def run(tables, params):\n    return {'mean': 2.0}\n"), _profile().canonical_bytes()
        ),
        measurement(_bundle(max_output_bytes=201), _profile().canonical_bytes()),
        measurement(_bundle(), _profile(runtime_image=b"\x01" * 32).canonical_bytes()),
        measurement(_bundle(), _profile(confinement=("--unshare-all",)).canonical_bytes()),
        measurement(_bundle(), _profile(seccomp={"confinement": "ab", "exec": "bb"}).canonical_bytes()),
        measurement(_bundle(), _profile(distributions=(("numpy", "2.4.7"),)).canonical_bytes()),
    ]
    assert len({base, *others}) == 1 + len(others)


def test_the_runtime_image_hash_covers_the_mounted_distributions() -> None:
    runtime = RuntimeImage.current()
    plain = runtime.closure({})
    with_sklearn = runtime.closure({"scikit-learn": runtime.versions()["scikit-learn"]})
    assert runtime.image_hash(plain) != runtime.image_hash(with_sklearn)
    changed = [replace(plain[0], record_sha256=bytes(32)), *plain[1:]]
    assert runtime.image_hash(plain) != runtime.image_hash(changed)


def test_the_seccomp_filters_are_bpf_and_distinct() -> None:
    confinement, exec_only = seccomp.confinement_filter(), seccomp.exec_filter()
    assert len(confinement) % 8 == 0
    assert len(exec_only) % 8 == 0
    assert confinement != exec_only
    hashes = seccomp.filter_hashes()
    assert set(hashes) == {"confinement", "exec"}


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# --- sealed inputs: the vault's format ----------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096])
def test_the_vault_opens_what_the_enclave_format_seals(size: int) -> None:
    key, plain = os.urandom(32), os.urandom(size)
    sealed = seal(plain, key=key, blob_name="datasets/1/part-0.parquet", chunk_size=4096)
    reader = OpeningReader(
        io.BytesIO(sealed), key=key, blob_name="datasets/1/part-0.parquet", sealed_length=len(sealed)
    )
    assert reader.read() == plain


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 4096 + 5])
def test_the_enclave_opens_what_the_vault_seals(size: int) -> None:
    key, plain = os.urandom(32), os.urandom(size)
    sink = io.BytesIO()
    writer = SealingWriter(sink, key=key, blob_name="b", chunk_size=4096)
    writer.write(plain)
    writer.close()
    assert open_sealed(sink.getvalue(), key=key, blob_name="b") == plain


def test_a_sealed_blob_cannot_be_truncated_renamed_or_opened_with_another_key(tmp_path: Path) -> None:
    key = os.urandom(32)
    sealed = seal(os.urandom(3 * 4096), key=key, blob_name="b", chunk_size=4096)
    for bad_blob, bad_key, bad_name in [
        (sealed[: -(4096 + 16)], key, "b"),
        (sealed, key, "c"),
        (sealed, os.urandom(32), "b"),
        (sealed[:40] + bytes([sealed[40] ^ 1]) + sealed[41:], key, "b"),
    ]:
        with pytest.raises(SealedBlobError):
            open_sealed(bad_blob, key=bad_key, blob_name=bad_name)


def test_canonical_json_is_the_projects_canonical_json() -> None:
    from dataspace.canonical import canonical_json as project_canonical_json

    document = {"b": [1, 2.5, None, True], "a": {"ü": "ö", "z": -0.0}, "é": "中"}
    assert canonical_json(document) == project_canonical_json(document)
