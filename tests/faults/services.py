"""The fault suite's private PostgreSQL and Redis (started by scripts/test-faults.sh): stopped and
started again by a test. Each runs under a supervisor loop in that script, which starts it again
whenever it exits unless a "hold" file is there; so a restart here is a signal and a wait, and the
servers never become children of the test run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.waiting import wait_for


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class PrivateService:
    name: str  # the supervisor's folder under REDLAKE_FAULTS_DIR: "pg" or "redis"
    port: int
    pid_file: Path
    stop_signal: signal.Signals

    @property
    def _hold(self) -> Path:
        return Path(os.environ["REDLAKE_FAULTS_DIR"]) / self.name / "hold"

    def pid(self) -> int:
        return int(self.pid_file.read_text().split()[0])

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Stops the server (the way its operator's restart would) and keeps it down for the body
        of the ``with``; then lets the supervisor start it again and waits until it listens."""
        self._hold.touch()
        try:
            pid = wait_for(lambda: self.pid_file.exists() and self.pid(), timeout=30)
            os.kill(pid, self.stop_signal)
            wait_for(lambda: not _alive(pid) and not _listening(self.port), timeout=60, interval=0.05)
            yield
        finally:
            self._hold.unlink(missing_ok=True)
        wait_for(lambda: _listening(self.port), timeout=60, interval=0.05)

    def restart(self) -> None:
        with self.down():
            pass


def postgres() -> PrivateService:
    # SIGINT: PostgreSQL's fast shutdown, what `pg_ctl restart -m fast` sends.
    data = Path(os.environ["REDLAKE_FAULTS_PGDATA"])
    return PrivateService("pg", int(os.environ["REDLAKE_FAULTS_PG_PORT"]), data / "postmaster.pid", signal.SIGINT)


def redis() -> PrivateService:
    # SIGTERM: redis-server's shutdown; with --save "" it keeps nothing, so every queued message is lost.
    folder = Path(os.environ["REDLAKE_FAULTS_DIR"]) / "redis"
    return PrivateService("redis", int(os.environ["REDLAKE_FAULTS_REDIS_PORT"]), folder / "redis.pid", signal.SIGTERM)
