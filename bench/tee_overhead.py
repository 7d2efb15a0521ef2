"""TEE job overhead through the real Django path, side by side with the same algorithm run
in-process, in one run; then sustained TEE jobs per minute with both cores busy.

Set-up (not timed): a fresh PostgreSQL database, Redis, a real anvil with the contracts, one Celery
worker for the default, ingest, chain, he and custody queues (no worker serves ``tee``: the
bench is the tee worker). Through REST (in-process DRF client): a provider's dataset (the
synthetic registry, ROWS rows, non-personal), an offer allowing ``algorithm`` on the sandbox, an
agreement, each algorithm submitted and approved on chain, one job per algorithm authorised on
chain (its use recorded).

Timed, per algorithm, on the authorised job:
- in-process: what the algorithm costs without a TEE, in this warm process: the dataset's vault
  blob read, its data key unwrapped by the vault, the blob opened, the CSV read, ``run``, the
  result encoded;
- TEE: ``dataspace.compute.tee.run(job)``, the tee worker's compute step itself: approval and
  measurement checks, the sealed blob copied, a sandbox (taken from the warm pool, or started
  cold with the pool off), SIMULATED evidence, key release by the custodian's broker (nonce row
  in PostgreSQL, the offer's allow-list read from the chain, the use checked on chain, the data
  key unwrapped and wrapped to the enclave as a JWE), inputs, the run, the result checks and
  signatures, teardown. The job is not settled, so the same job can be run again: each run
  draws its own nonce and its own sandbox.

Each in-process run is made right before a TEE run, so both sides see the same load.
TEE overhead p50 = TEE p50 - in-process p50, target <= 250 ms (the issue); overhead p99 = TEE p99
- in-process p50.
Sustained: 2 threads (the machine's 2 cores) each running tee.run back to back for
SUSTAIN_SECONDS, with the warm pool (TEE_POOL_SIZE=2) and with it off.
Needs root, bubblewrap, cgroups, PostgreSQL and Redis on localhost; skipped with a message
otherwise.
"""

from __future__ import annotations

import functools
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, metric, write_result  # noqa: E402
from bench.e2e import free_port, services_up  # noqa: E402

DATABASE = "redlake_bench_tee"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
BROKER_URL = "redis://127.0.0.1:6379/12"
ROWS = 2000
RUNS = 41
SUSTAIN_SECONDS = 30.0
THREADS = 2
POOL_SIZE = 2

MEAN = """
def run(tables, params):
    ages = tables["data"].column("age").to_pylist()
    return {"value": sum(ages) / len(ages)}
"""
MEAN_SCHEMA = {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]}
LOGISTIC = """
import numpy as np
from sklearn.linear_model import LogisticRegression

def run(tables, params):
    t = tables["data"]
    x = np.column_stack([t.column(c).to_numpy() for c in ("age", "bmi", "systolic_bp")])
    y = np.array([d == "hypertension" for d in t.column("diagnosis").to_pylist()], dtype=np.int64)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return {"coefficients": model.coef_[0], "intercept": float(model.intercept_[0])}
"""
LOGISTIC_SCHEMA = {
    "type": "object",
    "properties": {
        "coefficients": {"type": "array", "items": {"type": "number"}, "maxItems": 8},
        "intercept": {"type": "number"},
    },
    "required": ["coefficients", "intercept"],
}


def can_sandbox() -> bool:
    from enclaves.sandbox import host_problems

    problems = host_problems()
    if problems:
        print("bench/tee_overhead.py skipped: " + "; ".join(problems))
    return not problems


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def main() -> None:
    if not services_up():
        print("bench/tee_overhead.py skipped: needs PostgreSQL and Redis on localhost")
        return
    if not can_sandbox():
        return
    from tests.support.anvil import AnvilNode

    for sql in (f"DROP DATABASE IF EXISTS {DATABASE}", f"CREATE DATABASE {DATABASE}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", sql], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="redlake-bench-tee-"))
    node = AnvilNode(work / "anvil.json").start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dataspace.settings",
        "REDLAKE_VAR_DIR": str(work),
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        "CHAIN_RPC_URL": node.url,
        "CHAIN_POLL_SECONDS": "0.05",
        "DEBUG": "true",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "TEE_POOL_SIZE": str(POOL_SIZE),
    }
    os.environ.update(env)
    worker: subprocess.Popen[bytes] | None = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from dataspace.celery import app

        call_command("migrate", verbosity=0)
        call_command("chain", "deploy")
        with app.connection_for_write() as connection:
            redis_channel: Any = connection.default_channel  # kombu's Redis channel holds the client
            redis_channel.client.flushdb()
        log = (work / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dataspace", "worker", "--pool=solo", "--loglevel=WARNING",
             "--queues=default,ingest,chain,he,custody", "--without-heartbeat", "--without-mingle",
             "--without-gossip", f"--hostname=bench-tee-{free_port()}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        measure(work)
    finally:
        from dataspace.compute import tee

        tee.pool_stop()
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        node.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def authorised_jobs() -> dict[str, Any]:
    """Per algorithm: (the authorised Job, its bundle source)."""
    import numpy as np
    import sklearn

    from dataspace.accounts.models import Role
    from dataspace.compute.models import Algorithm, Job
    from tests.integration.test_jobs import DECLARED, registry_csv
    from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, publish_offer, run_job
    from tests.support.waiting import wait_for

    _, provider_api = funded_user("provider", Role.PROVIDER)
    _, consumer_api = funded_user("consumer", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(provider_api, registry_csv(ROWS), non_personal="true", **DECLARED)
    offer = publish_offer(
        provider_api, dataset, operations=["algorithm"], allow_sandbox=True, memory_limit_bytes=768 * 2**20
    )
    agreement = accept_offer(consumer_api, offer, calls=10)
    cases = {
        f"mean of one column ({ROWS} rows)": ({"source": MEAN, "output_schema": MEAN_SCHEMA}, MEAN),
        f"logistic regression, scikit-learn ({ROWS} rows)": (
            {
                "source": LOGISTIC,
                "output_schema": LOGISTIC_SCHEMA,
                "lockfile": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
            },
            LOGISTIC,
        ),
    }
    jobs: dict[str, Any] = {}
    for label, (fields, source) in cases.items():
        body = {"offer": str(offer.id), "kind": "python", "max_output_bytes": 8192, **fields}
        submitted = consumer_api.post("/api/algorithms/", body, format="json")
        assert submitted.status_code == 201, submitted.json()
        algorithm_id = submitted.json()["id"]
        assert provider_api.post(f"/api/algorithms/{algorithm_id}/approve/", {}, format="json").status_code == 202
        wait_for(lambda: Algorithm.objects.get(pk=algorithm_id).status == Algorithm.Status.APPROVED, timeout=120)  # noqa: B023
        response = run_job(consumer_api, agreement, "algorithm", {"algorithm": algorithm_id, "params": {}})
        assert response.status_code == 202, response.json()
        job_id = response.json()["id"]
        wait_for(lambda: Job.objects.get(pk=job_id).status == Job.Status.AUTHORISED, timeout=120)  # noqa: B023
        jobs[label] = (Job.objects.get(pk=job_id), source)
    return jobs


def in_process_runner(job: Any, source: str) -> Callable[[], bytes]:
    import pyarrow.csv

    from dataspace.canonical import canonical_json
    from dataspace.vault import blobs
    from dataspace.vault import services as vault
    from enclaves.sealed import open_sealed

    module = types.ModuleType("algorithm")
    exec(compile(source, "<algorithm>", "exec"), module.__dict__)

    def run() -> bytes:
        with blobs.open_for_read(job.dataset.blob_name) as handle:
            sealed = handle.read()
        key = vault.data_key_unwrap(job.dataset.data_key)
        plain = open_sealed(sealed, key=key, blob_name=job.dataset.blob_name)
        tables = {"data": pyarrow.csv.read_csv(io.BytesIO(plain))}
        result = module.run(tables, {})
        if "coefficients" in result:
            result["coefficients"] = [float(c) for c in result["coefficients"]]
        return canonical_json(result)

    return run


def timed(
    call: Callable[[], Any],
    runs: int,
    *,
    beside: Callable[[], Any],
    local: list[float],
    before: Callable[[], Any] = lambda: None,
) -> tuple[list[float], list[Any]]:
    """``runs`` timings of ``call``, each right after one of ``beside`` (the in-process run, its
    time appended to ``local``): the two sides see the same load, which drifts on a shared host."""
    seconds, outcomes = [], []
    for _ in range(runs):
        before()  # first: a warm pool's replacement start must not run beside the in-process run
        started = time.perf_counter()
        beside()
        local.append(time.perf_counter() - started)
        started = time.perf_counter()
        outcomes.append(call())
        seconds.append(time.perf_counter() - started)
    return seconds, outcomes


def sustained(call: Callable[[], Any], threads: int, duration: float) -> tuple[float, int]:
    """Jobs per minute from ``threads`` running ``call`` back to back for ``duration`` s."""
    done, failures = [0], [0]
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def loop() -> None:
        from django.db import connection

        try:
            while time.monotonic() < stop:
                try:
                    call()
                except Exception:
                    with lock:
                        failures[0] += 1
                    continue
                with lock:
                    done[0] += 1
        finally:
            connection.close()

    started = time.monotonic()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return done[0] * 60.0 / (time.monotonic() - started), failures[0]


def measure(work: Path) -> None:
    import logging

    from dataspace.compute import tee
    from dataspace.compute.models import Job

    for name in ("dataspace.compute.tee", "enclaves.sandbox.pool"):  # a line per job: not for a bench
        logging.getLogger(name).setLevel(logging.WARNING)

    jobs = authorised_jobs()
    metrics: list[dict[str, Any]] = []
    notes: list[str] = []
    for label, (job, source) in jobs.items():
        job = Job.objects.select_related("agreement__offer", "dataset__data_key", "algorithm").get(pk=job.pk)
        local_run = in_process_runner(job, source)
        local_run()  # imports and caches warm, as in a worker
        local: list[float] = []
        tee.run(job)  # the page cache and this process's launcher warm
        cold, cold_outcomes = timed(lambda: tee.run(job), RUNS, beside=local_run, local=local)  # noqa: B023
        pool = tee.pool_start()
        assert pool is not None
        assert job.algorithm is not None
        bundle, limits = tee.bundle_of(job.algorithm), tee.limits_for(job)
        pool.keep(bundle, limits)
        warm, warm_outcomes = timed(
            lambda: tee.run(job),  # noqa: B023 - used at once
            RUNS,
            beside=local_run,
            local=local,
            before=functools.partial(pool.wait_ready, timeout=120),
        )
        stats = pool.stats()
        assert stats.missed == 0, stats
        assert stats.taken == RUNS, stats
        tee.pool_stop()
        base = p50(local) * 1000
        base99 = p99(local) * 1000  # printed; the p99 overhead is against the in-process p50
        for flavour, samples in (("warm pool", warm), ("cold start", cold)):
            metrics += [
                metric(
                    f"TEE job overhead p50, {flavour}: {label}",
                    p50(samples) * 1000 - base,
                    "ms",
                    target=250,
                    better="lower",
                    baseline=("in-process p50 ms", base),
                ),
                metric(
                    f"TEE job overhead p99, {flavour}: {label}",
                    p99(samples) * 1000 - base,
                    "ms",
                    target=None,
                    better="lower",
                    baseline=("in-process p50 ms", base),
                ),
                metric(f"TEE job p50, {flavour}: {label}", p50(samples) * 1000, "ms", target=None, better="lower"),
            ]
        for flavour, outcomes in (("warm", warm_outcomes), ("cold", cold_outcomes)):
            phases = {
                name: p50([o.timings_ms.get(name, 0.0) for o in outcomes])
                for name in ("start", "attest", "run", "teardown")
            }
            if flavour == "warm":
                phases["start"] = 0.0  # done ahead, off the job's path
            notes.append(f"{label}, {flavour}: phases p50 ms " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
        print(
            f"{label}: in-process p50 {base:.1f} ms p99 {base99:.1f} ms; tee warm p50 {p50(warm) * 1000:.0f} "
            f"p99 {p99(warm) * 1000:.0f} ms; tee cold p50 {p50(cold) * 1000:.0f} p99 {p99(cold) * 1000:.0f} ms"
        )
        print("   " + notes[-2] + "\n   " + notes[-1])

    label, (job, _) = next(iter(jobs.items()))
    job = Job.objects.select_related("agreement__offer", "dataset__data_key", "algorithm").get(pk=job.pk)
    pool = tee.pool_start()
    assert pool is not None
    assert job.algorithm is not None
    pool.keep(tee.bundle_of(job.algorithm), tee.limits_for(job))
    pool.wait_ready(timeout=120)
    warm_rate, warm_failed = sustained(lambda: tee.run(job), THREADS, SUSTAIN_SECONDS)
    stats = pool.stats()
    tee.pool_stop()
    cold_rate, cold_failed = sustained(lambda: tee.run(job), THREADS, SUSTAIN_SECONDS)
    taken_share = stats.taken / max(1, stats.taken + stats.missed)
    print(
        f"sustained, {THREADS} threads: warm pool {warm_rate:.0f} jobs/min ({taken_share:.0%} warm), "
        f"cold {cold_rate:.0f} jobs/min; failures {warm_failed}/{cold_failed}"
    )
    metrics += [
        metric(
            f"sustained TEE jobs per minute, {THREADS} concurrent (both cores busy), warm pool of {POOL_SIZE}: {label}",
            warm_rate,
            "jobs/min",
            target=None,
            better="higher",
            baseline=("cold start jobs/min", cold_rate),
        ),
        metric(
            f"sustained TEE jobs per minute, {THREADS} concurrent, cold start: {label}",
            cold_rate,
            "jobs/min",
            target=None,
            better="higher",
        ),
    ]
    notes.append(
        f"sustained with the pool: {taken_share:.0%} of jobs took a warm sandbox ({stats.taken} warm, {stats.missed} "
        f"cold); failures: {warm_failed} with the pool, {cold_failed} cold"
    )
    load = os.getloadavg()[0]
    configuration = {
        "path": "dataspace.compute.tee.run(job): the tee worker's compute step, in the bench process (role dev: "
        "launcher and custodian key broker in one process, as the custodian's tee worker)",
        "tee_backend": "sandbox (bubblewrap + seccomp + cgroups; attestation SIMULATED)",
        "database": "PostgreSQL on localhost",
        "chain": "anvil (automine), contracts deployed; approvals and the job's use recorded on chain",
        "broker": "Redis on localhost (one Celery worker for default,ingest,chain,he,custody; none for tee)",
        "dataset": f"synthetic registry, {ROWS} rows CSV, non-personal, sealed in the vault (RLV1)",
        "runs_per_flavour": RUNS,
        "warm_pool_size": POOL_SIZE,
        "sustained_threads": THREADS,
        "sustained_seconds": SUSTAIN_SECONDS,
        "sandbox_limits": "768 MiB memory, 64 processes, the offer's wall clock",
        "load_average_at_end": round(load, 1),
    }
    path = write_result(
        "tee",
        metrics,
        notes="; ".join(notes)
        + f". Load average at the end: {load:.1f} on 2 cores (other sessions share the machine). The in-process "
        "baseline runs in a warm process (imports done), each of its runs right before a TEE run (same load). "
        "Overhead p50 = TEE p50 - in-process p50; overhead p99 = TEE p99 - in-process p50 (an in-process "
        "tail on a shared host is load, not the algorithm).",
    )
    body = json.loads(path.read_text())
    body["configuration"] = configuration
    path.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
