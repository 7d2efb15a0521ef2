"""Job latency on what `make run` runs, side by side with the tuned stack, in one run.

Both columns start `scripts/run.sh` itself (anvil, migrate, deploy, demo seed, then honcho with
the Procfile: gunicorn, one Celery worker for every queue, beat) in a scratch var dir on free
ports, so nothing differs from a newcomer's `make run` but where its state lives:

- embedded default: no DATABASE_URL, no CELERY_BROKER_URL (SQLite, kombu's SQLAlchemy broker);
- tuned stack: the same script with PostgreSQL and Redis (as on CI).

Each job is the demo consumer's mean of ``cost`` on the demo dataset (personal data: noised,
a small epsilon each run, each run a new query so none is answered from the answer cache),
timed from POST /api/jobs/ to the GET that first shows it settled. Gas per job as the flow
pays it (recordUsage plus its share of the settlement) comes from the outbox's receipts.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import (  # noqa: E402
    Api,
    demo_mean,
    fresh_postgres_database,
    fresh_redis,
    port_open,
    running_platform,
    wait_job,
)

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
POSTGRES_DB = "redlake_bench_latency"
FIRST_JOB_AFTER_READY_SECONDS = 3
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def ready_agreement(base: str, consumer: Api) -> dict[str, Any]:
    """The demo consumer's active agreement, once /readyz answers ready; then a few seconds more,
    so that the first job meets processes done with their start (as a newcomer's would, who reads
    the printed URL first)."""
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if requests.get(base + "/readyz", timeout=5).status_code == 200:
            agreements = consumer.get("/api/agreements/")
            items = agreements["results"] if isinstance(agreements, dict) else agreements
            active: list[dict[str, Any]] = [a for a in items if a["status"] == "active"]
            if active:
                time.sleep(FIRST_JOB_AFTER_READY_SECONDS)
                return active[0]
        time.sleep(0.5)
    raise AssertionError("the demo agreement did not become active")


def run_platform(label: str, extra_env: dict[str, str]) -> dict[str, Any]:
    """Starts scripts/run.sh with ``extra_env``, times RUNS demo means, stops it."""
    with running_platform(extra_env) as platform:
        consumer = Api(platform.base, "consumer", "redlake-consumer")
        agreement = ready_agreement(platform.base, consumer)
        latencies = []
        job_ids = []
        first = 0.0
        # The first job is a newcomer's first impression: reported on its own, not in the p50.
        for run in range(RUNS + 1):
            body = demo_mean(agreement["id"], 0.01 + run * 1e-4)
            start = time.perf_counter()
            job = consumer.post("/api/jobs/", json=body)
            done = wait_job(consumer, job["url"])
            elapsed = time.perf_counter() - start
            assert done["status"] == "settled", done
            if run:
                latencies.append(elapsed)
                job_ids.append(done["id"])
            else:
                first = elapsed
        gas = gas_per_job(platform.env, job_ids)
    latencies.sort()
    print(
        f"{label}: first job {first:.3f} s, p50 {statistics.median(latencies):.3f} s, gas per job {gas:,.0f}",
        flush=True,
    )
    return {
        "label": label,
        "first": first,
        "p50": statistics.median(latencies),
        "p90": latencies[int(0.9 * (len(latencies) - 1))],
        "gas": gas,
    }


def gas_per_job(env: dict[str, str], job_ids: list[str]) -> float:
    """Mean gas the flow paid per job: its recordUsage plus its settlement's share (a batch
    settlement's gas split over the jobs it settled)."""
    code = (
        "import json, sys, django; django.setup()\n"
        "from dataspace.compute.models import Job\n"
        "ids = json.loads(sys.argv[1])\n"
        "jobs = list(Job.objects.filter(pk__in=ids).select_related('record_tx', 'settle_tx'))\n"
        "settles = {}\n"
        "for job in jobs: settles.setdefault(job.settle_tx_id, []).append(job)\n"
        "total = sum(j.record_tx.gas_used or 0 for j in jobs)\n"
        "total += sum(group[0].settle_tx.gas_used or 0 for group in settles.values())\n"
        "print(total / len(jobs))\n"
    )
    import json

    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code, json.dumps(job_ids)],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "dataspace.settings"},
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from bench.common import metric, write_result

    runs = [run_platform("embedded default (make run: SQLite, SQLAlchemy broker, anvil)", {})]
    if port_open(5432) and port_open(6379):
        runs.append(
            run_platform(
                "tuned stack (scripts/run.sh on PostgreSQL + Redis)",
                {"DATABASE_URL": fresh_postgres_database(POSTGRES_DB), "CELERY_BROKER_URL": fresh_redis(REDIS_URL)},
            )
        )
    else:
        print("tuned stack skipped: needs PostgreSQL and Redis on localhost")
    embedded = runs[0]
    metrics = []
    for result in runs:
        is_default = result is embedded
        metrics.append(
            metric(
                f"demo mean, {result['label']}, p50 (POST to settled GET)",
                round(result["p50"], 4),
                "s",
                target=1.0 if is_default else None,
                better="lower",
                baseline=None if is_default else ("embedded default p50, s", round(embedded["p50"], 4)),
            )
        )
        metrics.append(
            metric(f"demo mean, {result['label']}, p90", round(result["p90"], 4), "s", target=None, better="lower")
        )
        metrics.append(
            metric(
                f"first demo mean after start, {result['label']} (POST to settled GET)",
                round(result["first"], 4),
                "s",
                target=None,
                better="lower",
                baseline=("p50 of the jobs after it, s", round(result["p50"], 4)),
            )
        )
        metrics.append(
            metric(
                f"gas per job as the flow pays it, {result['label']}",
                round(result["gas"]),
                "gas",
                target=None,
                better="lower",
            )
        )
    for m in metrics:
        print(f"{m['name']}: {m['value']} {m['unit']}")
    write_result(
        "latency_default",
        metrics,
        notes=(
            f"Both columns run scripts/run.sh (gunicorn, one Celery worker for all queues, beat, anvil "
            f"automining); demo dataset as seeded (100,000 rows); {RUNS} jobs each after the first, "
            f"which is reported on its own (sent {FIRST_JOB_AFTER_READY_SECONDS} s after /readyz answered ready and the "
            "demo agreement was active); "
            f"CHAIN_POLL_SECONDS and CHAIN_RECEIPT_* at their defaults; 1-min load average at the end "
            f"{os.getloadavg()[0]:.1f}."
        ),
    )


if __name__ == "__main__":
    main()
