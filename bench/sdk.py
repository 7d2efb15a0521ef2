"""The consumer SDK's cost, on the embedded default exactly as ``make run`` runs it
(``scripts/run.sh`` through ``bench.stack.running_platform``: SQLite, the SQLAlchemy broker,
gunicorn with DEBUG off, one Celery worker and beat, an anvil chain, the demo seed):

- overhead of the SDK over raw HTTP (httpx) for a job round trip, side by side in one run: a job
  submission answered from its Idempotency-Key (the platform's stored first job, no compute)
  plus the job's GET, through ``Client.submit_job`` + ``Client.job`` and through bare
  ``httpx.Client`` calls with the same headers and body, interleaved; the overhead is the
  difference of the medians. Whole jobs (submit, poll until settled) are timed both ways too;
  their spread is the platform's, far above the SDK's, and is reported for context only;
- ``redlake job run`` wall time for the demo mean (the demo consumer, its custodial wallet, the
  CLI started as a process, as a script would), against the same job run through the SDK in
  this process (the CLI's start-up is the difference).

Needs nothing but the repo (anvil from node_modules); leaves nothing running.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk" / "src"))

REPLAYS = 300  # submit-by-key + GET pairs, each way
WHOLE_JOBS = 4  # full job round trips, each way
CLI_RUNS = 5


def main() -> None:
    from bench.stack import running_platform

    # No DATABASE_URL or CELERY_BROKER_URL: the embedded default, as a newcomer's make run.
    with running_platform({}) as platform:
        measure(platform.base, {**platform.env, "PYTHONPATH": str(ROOT / "sdk" / "src")}, platform.work)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def measure(base: str, env: dict[str, str], work: Path) -> None:
    import httpx
    from redlake_client import Client

    from bench.common import metric, write_result

    sdk = Client.login(base, "consumer", "redlake-consumer", retries=0)
    token = sdk.token
    assert token
    agreement = next(a for a in sdk.agreements() if a.status == "active")
    raw = httpx.Client(
        base_url=base + "/api/",
        timeout=30,
        headers={"Accept": "application/json", "Authorization": f"Token {token}", "User-Agent": "bench/raw"},
    )
    epsilon = iter(0.01 + i * 0.0001 for i in range(1000))  # apart, so no job is answered from the cache

    def raw_body() -> dict[str, Any]:
        return {
            "agreement": str(agreement.id),
            "operation": "mean",
            "params": {"column": "cost"},
            "purpose": "research",
            "epsilon": next(epsilon),
        }

    # Whole jobs, each way: submit, poll every 50 ms until settled.
    def raw_whole() -> None:
        submitted = raw.post("jobs/", json=raw_body(), headers={"Idempotency-Key": f"raw-{time.time_ns()}"})
        assert submitted.status_code in (200, 201, 202), submitted.text
        job_id = submitted.json()["id"]
        while (body := raw.get(f"jobs/{job_id}/").json())["status"] not in ("settled", "withheld", "failed"):
            time.sleep(0.05)
        assert body["status"] == "settled", body

    def sdk_whole(key: str | None = None) -> Any:
        body = raw_body()
        job = sdk.run(
            body["agreement"], "mean", body["params"], epsilon=body["epsilon"], poll=0.05, idempotency_key=key
        )
        assert job.status == "settled"
        return job

    # The first job warms the worker's caches (contexts, stores); its key is replayed below.
    key = "bench-replay"
    first = sdk_whole(key)
    whole_raw, whole_sdk = [], []
    for _ in range(WHOLE_JOBS):
        whole_raw.append(timed(raw_whole))
        whole_sdk.append(timed(sdk_whole))

    # The replayed round trip: one stored job, submitted again by its key, then read.
    replay_body = {
        "agreement": str(agreement.id),
        "operation": "mean",
        "params": {"column": "cost"},
        "purpose": "research",
        "epsilon": first.epsilon,
    }

    def raw_replay() -> None:
        response = raw.post("jobs/", json=replay_body, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text
        assert raw.get(f"jobs/{response.json()['id']}/").json()["status"] == "settled"

    def sdk_replay() -> None:
        job = sdk.submit_job(agreement.id, "mean", {"column": "cost"}, epsilon=first.epsilon, idempotency_key=key)
        assert sdk.job(job.id).status == "settled"

    for _ in range(20):  # warm both paths (connections, the server's code paths)
        raw_replay()
        sdk_replay()
    replay_raw, replay_sdk = [], []
    for i in range(REPLAYS):
        if i % 2:
            replay_raw.append(timed(raw_replay))
            replay_sdk.append(timed(sdk_replay))
        else:
            replay_sdk.append(timed(sdk_replay))
            replay_raw.append(timed(raw_replay))
    overhead = statistics.median(replay_sdk) - statistics.median(replay_raw)

    # `redlake job run` for the demo mean, as a process, against the same job through the SDK here.
    cli_env = {
        **env,
        "REDLAKE_URL": base,
        "REDLAKE_TOKEN": token,
        "REDLAKE_CONFIG_DIR": str(work / "redlake-config"),
    }
    cli_runs = []
    for _ in range(CLI_RUNS):
        args = [sys.executable, "-m", "redlake_client.cli", "--json", "job", "run", str(agreement.id), "mean"]
        args += ["-p", "column=cost", "--epsilon", str(next(epsilon))]
        started = time.perf_counter()
        done = subprocess.run(args, env=cli_env, capture_output=True, text=True, check=False)
        cli_runs.append((time.perf_counter() - started) * 1000)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["status"] == "settled"
    in_process = [timed(sdk_whole) for _ in range(CLI_RUNS)]
    startup = timed(
        lambda: subprocess.run(
            [sys.executable, "-c", "import redlake_client.cli"], env=cli_env, check=True, capture_output=True
        )
    )

    metrics = [
        metric(
            "SDK overhead over raw HTTP per job round trip (submit by Idempotency-Key + GET, median difference)",
            overhead,
            "ms",
            target=5.0,
            better="lower",
            baseline=("raw httpx round trip (median)", statistics.median(replay_raw)),
        ),
        metric(
            "SDK job round trip, submit by Idempotency-Key + GET (median)",
            statistics.median(replay_sdk),
            "ms",
            target=None,
            better="lower",
            baseline=("raw httpx", statistics.median(replay_raw)),
        ),
        metric(
            "whole demo mean job through the SDK, submit to settled (median)",
            statistics.median(whole_sdk),
            "ms",
            target=None,
            better="lower",
            baseline=("raw httpx, same polling", statistics.median(whole_raw)),
        ),
        metric(
            "`redlake job run` demo mean, wall time (median, process start to result)",
            statistics.median(cli_runs),
            "ms",
            target=None,
            better="lower",
            baseline=("the same job through the SDK in process", statistics.median(in_process)),
        ),
        metric("`redlake` CLI import time", startup, "ms", target=None, better="lower"),
    ]
    notes = (
        "Embedded default exactly as make run (scripts/run.sh: SQLite, SQLAlchemy broker, gunicorn with DEBUG "
        "off, 1 Celery worker with concurrency 2, beat, anvil), its demo seed, the demo consumer (custodial "
        "wallet: the platform signs "
        f"its usage). Overhead: {REPLAYS} interleaved pairs on one stored job; spread (p90-p10) SDK "
        f"{spread(replay_sdk):.2f} ms, raw {spread(replay_raw):.2f} ms. Whole jobs: {WHOLE_JOBS} each way, "
        f"interleaved, polling every 50 ms: their spread (SDK {spread(whole_sdk):.0f} ms, raw "
        f"{spread(whole_raw):.0f} ms) is the platform's; CLI: {CLI_RUNS} runs, ε about 0.01 each."
    )
    path = write_result("sdk", metrics, notes)
    print(path.read_text())


def spread(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.9) - 1] - ordered[int(len(ordered) * 0.1)]


if __name__ == "__main__":
    main()
