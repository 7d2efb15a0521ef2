"""Gas per job as the flow pays it, and what batching costs in latency: `settle` per job against
`settleBatch` of up to 10 and up to 100 jobs, in one run (ISSUE-14).

Each configuration starts `scripts/run.sh` itself (as `bench/latency_default.py` does) on
PostgreSQL and Redis, with ``SETTLE_BATCH_SIZE`` and ``SETTLE_BATCH_WAIT_SECONDS`` set, accepts a
fresh agreement on the demo offer and submits JOBS demo means at once (each a new query, so none
is answered from the cache). Then, from the platform's own records:

- gas per job: the gasUsed of the job's recordUsage plus its share of its settlement (its own
  settle, or its batch's settleBatch divided by the jobs in it); receipt gas, so the 21,000
  intrinsic gas and calldata of every transaction are included;
- latency: the API's timestamps, from released to settled (the settlement's wait, which is what
  batching changes) and from requested to settled (the whole job under this burst);
- and the latency a lone job sees: SEQUENTIAL more jobs, one at a time, each timed from POST to the
  GET that first shows it settled (skipped where the wait is long: a lone job then waits exactly
  SETTLE_BATCH_WAIT_SECONDS for its batch, by construction).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import FINISHED, Api, demo_mean, fresh_postgres_database, fresh_redis, running_platform, wait_job  # noqa: E402

JOBS = int(os.environ.get("BENCH_SETTLE_JOBS", "100"))
SEQUENTIAL = int(os.environ.get("BENCH_SETTLE_SEQUENTIAL", "5"))
SEQUENTIAL_MAX_WAIT = 10.0
POSTGRES_DB = "redlake_bench_settle_batch"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# (label, SETTLE_BATCH_SIZE, SETTLE_BATCH_WAIT_SECONDS)
CONFIGURATIONS = [
    ("settle per job (SETTLE_BATCH_SIZE=1, the default)", 1, 2.0),
    ("settleBatch of up to 10 (SETTLE_BATCH_SIZE=10, SETTLE_BATCH_WAIT_SECONDS=2)", 10, 2.0),
    ("settleBatch of up to 100 (SETTLE_BATCH_SIZE=100, SETTLE_BATCH_WAIT_SECONDS=120)", 100, 120.0),
]

GAS_QUERY = """
import json, sys, django
django.setup()
from dataspace.compute.models import Job, SettlementBatchEntry
ids = json.loads(sys.argv[1])
out = []
for job in Job.objects.filter(pk__in=ids).select_related("record_tx", "settle_tx"):
    entry = SettlementBatchEntry.objects.select_related("batch__settle_tx").filter(job=job).first()
    if job.settle_tx is not None:
        settle, size, tx = job.settle_tx.gas_used, 1, job.settle_tx.tx_hash
    else:
        settle, size, tx = entry.batch.settle_tx.gas_used, entry.batch.size, entry.batch.settle_tx.tx_hash
    out.append({"record": job.record_tx.gas_used, "settle": settle / size, "batch": size, "tx": tx})
print(json.dumps(out))
"""


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_configuration(label: str, size: int, wait: float) -> dict[str, Any]:
    env = {
        "DATABASE_URL": fresh_postgres_database(POSTGRES_DB),
        "CELERY_BROKER_URL": fresh_redis(REDIS_URL),
        "SETTLE_BATCH_SIZE": str(size),
        "SETTLE_BATCH_WAIT_SECONDS": str(wait),
    }
    with running_platform(env) as platform:
        consumer = Api(platform.base, "consumer", "redlake-consumer")
        agreements = consumer.get("/api/agreements/")
        items = agreements["results"] if isinstance(agreements, dict) else agreements
        demo = next(a for a in items if a["status"] == "active")
        fresh = consumer.post("/api/agreements/", json={"offer": demo["offer"], "calls": JOBS + SEQUENTIAL})
        deadline = time.monotonic() + 120
        while consumer.get(f"/api/agreements/{fresh['id']}/")["status"] != "active":
            assert time.monotonic() < deadline, "the agreement did not become active"
            time.sleep(0.2)
        urls = []
        for run in range(JOBS):
            body = demo_mean(fresh["id"], 0.01 + run * 1e-5)
            urls.append(consumer.post("/api/jobs/", json=body)["url"])
        done: dict[str, Any] = {}
        deadline = time.monotonic() + 60 + 10 * JOBS + wait
        while len(done) < len(urls):
            assert time.monotonic() < deadline, f"{len(urls) - len(done)} jobs did not settle"
            for url in urls:
                if url not in done:
                    body = consumer.get(url)
                    if body["status"] in FINISHED:
                        done[url] = body
            time.sleep(0.2)
        jobs = list(done.values())
        assert all(job["status"] == "settled" for job in jobs), [j["status"] for j in jobs]
        lone: list[float] = []
        for run in range(SEQUENTIAL if wait <= SEQUENTIAL_MAX_WAIT else 0):
            body = demo_mean(fresh["id"], 0.02 + run * 1e-5)
            start = time.perf_counter()
            finished = wait_job(consumer, consumer.post("/api/jobs/", json=body)["url"], timeout=60 + wait)
            lone.append(time.perf_counter() - start)
            assert finished["status"] == "settled", finished
        out = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "-c", GAS_QUERY, json.dumps([j["id"] for j in jobs])],
            cwd=ROOT,
            env={**platform.env, "DJANGO_SETTINGS_MODULE": "dataspace.settings"},
            check=True,
            capture_output=True,
            text=True,
        )
        gas = json.loads(out.stdout.strip().splitlines()[-1])
    settle_wait = sorted(_seconds(j["timestamps"]["released"], j["timestamps"]["settled"]) for j in jobs)
    whole = sorted(_seconds(j["timestamps"]["requested"], j["timestamps"]["settled"]) for j in jobs)
    result = {
        "label": label,
        "size": size,
        "wait": wait,
        "gas_per_job": statistics.fmean(g["record"] + g["settle"] for g in gas),
        "settle_gas_per_job": statistics.fmean(g["settle"] for g in gas),
        "record_gas_per_job": statistics.fmean(g["record"] for g in gas),
        "settlement_txs": len({g["tx"] for g in gas}),
        "mean_batch": statistics.fmean(g["batch"] for g in gas),
        "settle_wait_p50": statistics.median(settle_wait),
        "settle_wait_p90": settle_wait[int(0.9 * (len(settle_wait) - 1))],
        "job_p50": statistics.median(whole),
        "job_p90": whole[int(0.9 * (len(whole) - 1))],
        "lone_p50": statistics.median(lone) if lone else None,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    from bench.common import metric, write_result

    runs = [run_configuration(*configuration) for configuration in CONFIGURATIONS]
    alone = runs[0]
    metrics = []
    for result in runs:
        base = None if result is alone else ("settle per job", round(alone["gas_per_job"]))
        metrics += [
            metric(
                f"gas per job as the flow pays it (recordUsage + settlement share), {result['label']}",
                round(result["gas_per_job"]),
                "gas",
                target=None,
                better="lower",
                baseline=base,
            ),
            metric(
                f"settlement gas per job, {result['label']}",
                round(result["settle_gas_per_job"]),
                "gas",
                target=None,
                better="lower",
            ),
            metric(
                f"jobs per settlement transaction (mean over jobs), {result['label']}",
                round(result["mean_batch"], 2),
                "jobs",
                target=None,
                better="higher",
            ),
            metric(
                f"released to settled, p50 (p90 {result['settle_wait_p90']:.3f} s), {result['label']}",
                round(result["settle_wait_p50"], 4),
                "s",
                target=None,
                better="lower",
                baseline=None if result is alone else ("settle per job, p50 s", round(alone["settle_wait_p50"], 4)),
            ),
            metric(
                f"requested to settled, p50 (p90 {result['job_p90']:.3f} s), {result['label']}",
                round(result["job_p50"], 4),
                "s",
                target=None,
                better="lower",
            ),
        ]
        if result["lone_p50"] is not None:
            metrics.append(
                metric(
                    f"a lone job, POST to settled GET, p50 of {SEQUENTIAL}, {result['label']}",
                    round(result["lone_p50"], 4),
                    "s",
                    target=None,
                    better="lower",
                    baseline=None if result is alone else ("settle per job, p50 s", round(alone["lone_p50"], 4)),
                )
            )
    for m in metrics:
        print(f"{m['name']}: {m['value']} {m['unit']}")
    write_result(
        "settle_batch",
        metrics,
        notes=(
            f"Each configuration runs scripts/run.sh on PostgreSQL + Redis (gunicorn, one Celery worker for all "
            f"queues with concurrency 2, beat, anvil automining, CHAIN_CONFIRMATIONS=0); a fresh agreement on the "
            f"demo offer, then {JOBS} demo means (mean of cost, epsilon ~0.01) submitted at once, then {SEQUENTIAL} more "
            f"one at a time (not for a wait above {SEQUENTIAL_MAX_WAIT:.0f} s). Gas is receipt "
            f"gas (intrinsic and calldata included): the job's recordUsage plus its settle, or its batch's "
            f"settleBatch divided by the batch's jobs. Latency from the API's timestamps. 1-min load average at "
            f"the end {os.getloadavg()[0]:.1f}."
        ),
    )


if __name__ == "__main__":
    main()
