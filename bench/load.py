"""Load on the production-shaped stack: `scripts/run.sh` on PostgreSQL + Redis on loopback
(gunicorn: 2 gthread workers of 4 threads, keep-alive; one Celery worker; anvil), as in bench/latency_default.py's tuned column.

1. Catalogue reads: locust (headless, in its own venv, .venv-tools) with USERS concurrent
   readers and no think time for READ_SECONDS; requests per second and p50/p99 latency.
2. Jobs: JOB_THREADS consumers submitting the demo mean back to back for JOB_SECONDS (or until
   JOB_CAP jobs, the demo agreement's calls); submissions and settled jobs per minute.

locust shares the machine's 2 cores with the platform it loads: the figures are what this one
machine serves while also generating the load.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import metric, write_result  # noqa: E402
from bench.stack import (  # noqa: E402
    Api,
    demo_mean,
    fresh_postgres_database,
    fresh_redis,
    port_open,
    running_platform,
    wait_job,
)

TOOLS = ROOT / ".venv-tools"
LOCUST_VERSION = "2.47.0"
USERS = int(os.environ.get("BENCH_LOAD_USERS", "20"))
READ_SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "30"))
JOB_THREADS = int(os.environ.get("BENCH_JOB_THREADS", "4"))
JOB_SECONDS = int(os.environ.get("BENCH_JOB_SECONDS", "60"))
JOB_CAP = 90  # the demo agreement buys 100 calls
# Consumers wait as the SDK does (``Client.wait_job``: a GET every 0.3 s); polling every 20 ms, as
# the single-job latency benches do, made four consumers' polls cost the web tier more CPU than
# the workers spent on the jobs. Latency is then read from the job's own timestamps.
SDK_POLL_SECONDS = 0.3
POSTGRES_DB = "redlake_bench_load"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def locust() -> Path:
    binary = TOOLS / "bin" / "locust"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
    if (
        not binary.exists()
        or LOCUST_VERSION not in subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    ):
        subprocess.run([str(TOOLS / "bin" / "pip"), "install", "-q", f"locust=={LOCUST_VERSION}"], check=True)
    return binary


def _cpu_seconds(pattern: str) -> float:
    """User + system CPU of every live process whose command line matches ``pattern``."""
    pids = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def catalogue_reads(base: str, consumer: Api, work: Path) -> dict[str, float]:
    # CPU per read, next to the rates: rates move with whatever else runs on the machine, the CPU a
    # read costs the web tier and the database much less.
    web = f"gunicorn.*{base.rsplit(':', 1)[1]}"
    database = f"postgres: .*{POSTGRES_DB}"
    # scripts/run.sh's process manager relays every log line (one per request); a deployment
    # without it (compose, systemd) does not pay this, so it is reported on its own line.
    manager = "honcho start"
    web_before, database_before, manager_before = _cpu_seconds(web), _cpu_seconds(database), _cpu_seconds(manager)
    page = consumer.get("/api/datasets/")
    items = page["results"] if isinstance(page, dict) else page
    prefix = work / "locust"
    subprocess.run(
        [
            str(locust()),
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--only-summary",
            "-u",
            str(USERS),
            "-r",
            str(USERS),
            "-t",
            f"{READ_SECONDS}s",
            "--host",
            base,
            "--csv",
            str(prefix),
        ],
        env={**os.environ, "LOAD_TOKEN": consumer.token, "LOAD_DATASETS": ",".join(i["id"] for i in items)},
        check=True,
        capture_output=True,
    )
    with open(f"{prefix}_stats.csv") as stats:
        total = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    requests = float(total["Request Count"]) or 1.0
    return {
        "web_cpu_ms": 1000 * (_cpu_seconds(web) - web_before) / requests,
        "database_cpu_ms": 1000 * (_cpu_seconds(database) - database_before) / requests,
        "manager_cpu_ms": 1000 * (_cpu_seconds(manager) - manager_before) / requests,
        "rps": float(total["Requests/s"]),
        "p50": float(total["50%"]),
        "p99": float(total["99%"]),
        "requests": float(total["Request Count"]),
        "failures": float(total["Failure Count"]),
    }


def sustained_jobs(consumer: Api) -> dict[str, float]:
    agreements = consumer.get("/api/agreements/")
    items = agreements["results"] if isinstance(agreements, dict) else agreements
    agreement = next(a for a in items if a["status"] == "active")
    lock, submitted, settled, latencies = threading.Lock(), [0], [0], []
    deadline = time.monotonic() + JOB_SECONDS

    def consumer_loop(index: int) -> None:
        api = Api(consumer.base, "consumer", "redlake-consumer")
        run = 0
        while time.monotonic() < deadline:
            with lock:
                if submitted[0] >= JOB_CAP:
                    return
                submitted[0] += 1
            run += 1
            body = demo_mean(agreement["id"], 0.005 + index * 1e-4 + run * 1e-6)  # each a new query: no cached answer
            done = wait_job(api, api.post("/api/jobs/", json=body)["url"], timeout=300, interval=SDK_POLL_SECONDS)
            with lock:
                if done["status"] == "settled":
                    settled[0] += 1
                    stamps = done["timestamps"]
                    latencies.append(
                        (
                            datetime.fromisoformat(stamps["settled"]) - datetime.fromisoformat(stamps["requested"])
                        ).total_seconds()
                    )

    began = time.monotonic()
    threads = [threading.Thread(target=consumer_loop, args=(i,)) for i in range(JOB_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    minutes = (time.monotonic() - began) / 60
    return {
        "submitted_per_min": submitted[0] / minutes,
        "settled_per_min": settled[0] / minutes,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "settled": settled[0],
    }


def main() -> None:
    if not (port_open(5432) and port_open(6379)):
        print("load benchmark skipped: needs PostgreSQL and Redis on localhost")
        return
    env = {"DATABASE_URL": fresh_postgres_database(POSTGRES_DB), "CELERY_BROKER_URL": fresh_redis(REDIS_URL)}
    with running_platform(env) as platform:
        consumer = Api(platform.base, "consumer", "redlake-consumer")
        reads = catalogue_reads(platform.base, consumer, platform.work)
        jobs = sustained_jobs(consumer)
    workers, threads = os.environ.get("WEB_WORKERS", "2"), os.environ.get("WEB_THREADS", "4")
    stack = f"scripts/run.sh on PostgreSQL + Redis (gunicorn {workers} gthread workers x {threads} threads)"
    print(f"catalogue reads: {reads}\njobs: {jobs}")
    metrics = [
        metric(f"catalogue reads, {USERS} users, {stack}", reads["rps"], "req/s", target=500, better="higher"),
        metric(f"catalogue reads p99, {USERS} users", reads["p99"], "ms", target=100, better="lower"),
        metric(f"catalogue reads p50, {USERS} users", reads["p50"], "ms", target=None, better="lower"),
        metric("catalogue read failures", reads["failures"], "requests", target=0, better="lower"),
        metric("catalogue read: gunicorn CPU per read", reads["web_cpu_ms"], "ms", target=None, better="lower"),
        metric("catalogue read: PostgreSQL CPU per read", reads["database_cpu_ms"], "ms", target=None, better="lower"),
        metric(
            "catalogue read: process manager (honcho) CPU per read, relaying its log line",
            reads["manager_cpu_ms"],
            "ms",
            target=None,
            better="lower",
        ),
        metric(
            f"job submissions sustained, {JOB_THREADS} consumers back to back",
            jobs["submitted_per_min"],
            "jobs/min",
            target=None,
            better="higher",
        ),
        metric(
            f"settled jobs, {JOB_THREADS} consumers", jobs["settled_per_min"], "jobs/min", target=None, better="higher"
        ),
        metric(
            "job latency under that load, p50 (requested to settled, the job's timestamps)",
            jobs["p50"],
            "s",
            target=None,
            better="lower",
        ),
    ]
    write_result(
        "load",
        metrics,
        notes=(
            f"{stack}; locust {LOCUST_VERSION} on the same 2 cores, {USERS} users without think time for "
            f"{READ_SECONDS} s ({reads['requests']:.0f} requests); jobs: the demo mean on the seeded "
            f"100,000-row dataset, {JOB_THREADS} threads for up to {JOB_SECONDS} s; 1-min load average at the "
            f"end {os.getloadavg()[0]:.1f}."
        ),
    )


if __name__ == "__main__":
    main()
