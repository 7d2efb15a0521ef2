"""The key hierarchy's costs, side by side in one run (issue 12).

- Upload sealing: the web tier now wraps each upload's data key to the data keyring's public
  half (RSA-OAEP) instead of under a symmetric KEK it held. Both paths hash and seal the same
  64 MiB with the vault's streaming sealer, interleaved, median of 7 each.
- Data-key unwrap through SoftHSM2 (PKCS#11, RSA-3072 inside the token): p50 and p99 of 300
  unwraps, next to the file keyring's; and its share of a job, against the recorded end-to-end
  p50 of a mean at 100k rows (bench/results/e2e.json). The custodian unwraps a dataset's CKKS
  secret once and keeps it (custody._secret_context), so this share is an upper bound per job.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, metric, write_result

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD_MB = 64
CHUNK = 64 * 1024  # what an HTTP upload hands the sealing handler at a time
REPEATS = 7
UNWRAPS = 300


def _setup(var: Path) -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "softhsm.sh"), str(var)], check=True, capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            os.environ[name] = value.strip("'")
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "VAULT_KEK"):
        os.environ.pop(name, None)
    os.environ.update(REDLAKE_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="dataspace.settings", REDLAKE_ROLE="dev")
    import django

    django.setup()


def _seal(payload: list[bytes], new_key: object) -> None:
    from dataspace.vault import services as vault

    digest = hashlib.sha256()
    with vault.BlobSealer(key=new_key.plaintext, blob_name=f"uploads/{uuid.uuid4()}.sealed") as sealer:  # type: ignore[attr-defined]
        for chunk in payload:
            digest.update(chunk)
            sealer.write(chunk)
    vault.blob_delete(sealer.blob_name)


def upload_metrics() -> list[dict[str, object]]:
    from dataspace.vault import kek
    from dataspace.vault import services as vault

    payload = [os.urandom(CHUNK) for _ in range(PAYLOAD_MB * 1024 * 1024 // CHUNK)]
    symmetric_kek = os.urandom(32)

    def symmetric() -> float:  # before issue 12: AES-GCM wrap under a KEK the web tier held
        start = time.perf_counter()
        key_id, plaintext = uuid.uuid4(), os.urandom(32)
        wrapped = kek.wrap_legacy(symmetric_kek, plaintext, vault._context(key_id))
        _seal(payload, vault.NewDataKey(id=key_id, plaintext=plaintext, kek_id="legacy", wrapped=wrapped))
        return time.perf_counter() - start

    def public() -> float:  # now: wrap to the data keyring's public half
        start = time.perf_counter()
        _seal(payload, vault.data_key_generate())
        return time.perf_counter() - start

    vault.data_key_generate()  # the keyring's files exist before timing
    times: dict[str, list[float]] = {"symmetric": [], "public": []}
    for _ in range(REPEATS):
        times["symmetric"].append(symmetric())
        times["public"].append(public())
    sym, pub = (PAYLOAD_MB / statistics.median(times[k]) for k in ("symmetric", "public"))
    wraps = []
    for _ in range(200):
        start = time.perf_counter()
        vault.data_key_generate()
        wraps.append(time.perf_counter() - start)
    return [
        metric(
            "upload sealing throughput, public-key wrap (RSA-OAEP to the data keyring)",
            pub,
            "MB/s",
            target=None,
            better="higher",
            baseline=("symmetric KEK wrap (before)", sym),
        ),
        metric("upload sealing throughput: public-key / symmetric", pub / sym, "ratio", target=0.9, better="higher"),
        metric(
            "data key generate + public-key wrap, p50",
            statistics.median(wraps) * 1e3,
            "ms",
            target=None,
            better="lower",
        ),
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def unwrap_metrics() -> list[dict[str, object]]:
    from dataspace.vault import keyrings

    hsm = keyrings.keyring_from_spec(f"pkcs11:token=redlake;label=bench-{uuid.uuid4().hex[:8]}", create=True)
    files = keyrings.FileKeyring(Path(os.environ["REDLAKE_VAR_DIR"]) / "bench-file-keyring")
    results = {}
    for name, ring in (("softhsm2", hsm), ("file", files)):
        samples = []
        for _ in range(UNWRAPS):
            context, key = os.urandom(16), os.urandom(32)
            kek_id, wrapped = ring.wrap(key, context=context)
            start = time.perf_counter()
            assert ring.unwrap(kek_id, wrapped, context=context) == key
            samples.append(time.perf_counter() - start)
        results[name] = (_percentile(samples, 0.5) * 1e3, _percentile(samples, 0.99) * 1e3)
    job_p50_ms = 0.0
    e2e = RESULTS / "e2e.json"
    if e2e.exists():
        for entry in json.loads(e2e.read_text())["metrics"]:
            if entry["name"].startswith("end-to-end mean, 100,000 rows, p50"):
                job_p50_ms = entry["value"] * 1e3
    metrics = [
        metric(
            "data key unwrap through SoftHSM2 (RSA-3072 in the token), p50",
            results["softhsm2"][0],
            "ms",
            target=None,
            better="lower",
            baseline=("file keyring p50", results["file"][0]),
        ),
        metric(
            "data key unwrap through SoftHSM2, p99",
            results["softhsm2"][1],
            "ms",
            target=None,
            better="lower",
            baseline=("file keyring p99", results["file"][1]),
        ),
    ]
    if job_p50_ms:
        metrics.append(
            metric(
                "SoftHSM2 unwrap p50 as a share of a job (mean, 100k rows, e2e p50)",
                100 * results["softhsm2"][0] / job_p50_ms,
                "%",
                target=None,
                better="lower",
                baseline=("job p50 ms (bench/results/e2e.json)", job_p50_ms),
            )
        )
    return metrics


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="redlake-bench-keys-") as var:
        _setup(Path(var))
        metrics = upload_metrics() + unwrap_metrics()
    path = write_result(
        "keys",
        metrics,
        notes=f"{PAYLOAD_MB} MiB sealed per upload in {CHUNK // 1024} KiB pieces, {REPEATS} interleaved runs each; "
        f"{UNWRAPS} unwraps per keyring. The machine is shared: ratios are side by side in one run.",
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
