"""`scripts/run.sh` started for a benchmark: the platform exactly as `make run` starts it, in a
scratch var dir on free ports, with extra environment (e.g. PostgreSQL and Redis), and stopped
with everything it started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def fresh_postgres_database(name: str) -> str:
    for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", sql], check=True, capture_output=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def fresh_redis(url: str) -> str:
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


FINISHED = ("settled", "withheld", "refunded", "rejected")  # a job's final statuses


def demo_mean(agreement_id: str, epsilon: float) -> dict[str, Any]:
    """The body of a job asking the demo's mean of cost; a new epsilon makes it a new query (no
    answer served again from an earlier one)."""
    return {
        "agreement": agreement_id,
        "operation": "mean",
        "params": {"column": "cost"},
        "purpose": "research",
        "epsilon": epsilon,
    }


class Api:
    """A REST client logged in as one of the demo users."""

    def __init__(self, base: str, username: str, password: str):
        import requests

        self.base, self.session = base, requests.Session()
        self.token = self.post("/api/auth/token/", json={"username": username, "password": password})["token"]
        self.session.headers["Authorization"] = f"Token {self.token}"

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.session.post(self.base + path, **kwargs)
        assert response.status_code in (200, 201, 202), (path, response.status_code, response.text[:500])
        return response.json()

    def get(self, path: str) -> Any:
        response = self.session.get(self.base + path)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        return response.json()


@dataclass
class Platform:
    base: str
    env: dict[str, str]
    work: Path


@contextmanager
def running_platform(extra_env: dict[str, str]) -> Iterator[Platform]:
    work = Path(tempfile.mkdtemp(prefix="redlake-bench-"))
    port, chain_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DEBUG")}
    env.update(REDLAKE_VAR_DIR=str(work), REDLAKE_PORT=str(port), CHAIN_PORT=str(chain_port))
    env.update(extra_env)
    log_path = work / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_web(base, process, log_path)
        yield Platform(base=base, env=env, work=work)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        time.sleep(1)  # beat writes its schedule file as it exits
        shutil.rmtree(work, ignore_errors=True)


def _wait_for_web(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import requests

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"scripts/run.sh exited:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the platform did not start:\n{log_path.read_text()[-3000:]}")


def wait_job(api: Api, url: str, timeout: float = 120, interval: float = 0.02) -> Any:
    """Polls the job until it ends; every ``interval`` s (20 ms by default: the latency benches
    time the settled result as the caller sees it)."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        body = api.get(url)
        if body["status"] in FINISHED:
            return body
        time.sleep(interval)
    raise AssertionError(f"{url} did not finish: {body}")
