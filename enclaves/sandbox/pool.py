"""Sandboxes started ahead of their jobs, so that a job's path is attestation, key release, the
run and teardown, not bubblewrap and an interpreter starting.

A warm sandbox is an ordinary ``SandboxRun`` started to its ready (``Sandbox.start_run``): the
same confinement arguments, cgroup limits, seccomp filters and wall-clock limit as a cold one,
having seen no nonce, no key and no data. It is single-use: ``take`` removes it from the pool
for good and the job it runs tears it down; the pool only ever starts fresh ones.

Per key (the bundle and the limits: what the measurement and the cgroup depend on) the pool
keeps ``size`` sandboxes waiting while the key is wanted (``keep``, ``retain``); ``drain`` stops
keeping a key and tears its sandboxes down (an approval revoked); ``close`` tears down all.

One thread starts every warm sandbox and lives until ``close``: bubblewrap runs with
``--die-with-parent``, which the kernel ties to the *thread* that forked it, so a sandbox started
by a short-lived thread would die with that thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enclaves.bundle import AlgorithmBundle
from enclaves.sandbox.broker import KeyBroker
from enclaves.sandbox.outcome import Limits, RunOutcome
from enclaves.sealed import SealedInput

if TYPE_CHECKING:
    from enclaves.sandbox.launcher import Sandbox
    from enclaves.sandbox.run import SandboxRun

logger = logging.getLogger(__name__)

PoolKey = tuple[bytes, Limits]
RETRY_AFTER_FAILED_START = 5.0


def pool_key(bundle: AlgorithmBundle, limits: Limits) -> PoolKey:
    return (bundle.digest(), limits)


@dataclass(frozen=True)
class PoolStats:
    waiting: int
    keys: int
    taken: int
    missed: int
    started: int
    failed_starts: int


class WarmPool:
    """``size`` started sandboxes per wanted key of ``sandbox``. ``refresh`` (if given) is called
    from the pool's thread every ``refresh_seconds`` to reconcile what is wanted (``retain``)."""

    def __init__(
        self,
        sandbox: Sandbox,
        size: int = 1,
        *,
        refresh: Callable[[WarmPool], None] | None = None,
        refresh_seconds: float = 2.0,
    ) -> None:
        if size < 1:
            raise ValueError("a pool keeps at least one sandbox per key")
        self.sandbox = sandbox
        self.size = size
        self._refresh = refresh
        self._refresh_seconds = refresh_seconds
        self._wanted: dict[PoolKey, tuple[AlgorithmBundle, Limits]] = {}
        self._waiting: dict[PoolKey, list[SandboxRun]] = {}
        self._retry_at: dict[PoolKey, float] = {}
        self._starting: PoolKey | None = None
        self._closed = False
        self._taken = self._missed = self._started = self._failed = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="sandbox-pool", daemon=True)
        self._thread.start()

    # -- what is wanted ----------------------------------------------------------------------

    def keep(self, bundle: AlgorithmBundle, limits: Limits) -> None:
        """Keep ``size`` sandboxes for ``bundle`` under ``limits`` waiting from now on."""
        with self._cond:
            if self._closed:
                return
            self._wanted.setdefault(pool_key(bundle, limits), (bundle, limits))
            self._cond.notify_all()

    def retain(self, wanted: Sequence[tuple[AlgorithmBundle, Limits]]) -> None:
        """Keep exactly these keys: new ones are started, the others drained."""
        keys = {pool_key(bundle, limits): (bundle, limits) for bundle, limits in wanted}
        with self._cond:
            gone = [key for key in self._wanted if key not in keys]
        for key in gone:
            self._drain_key(key)
        with self._cond:
            if self._closed:
                return
            for key, value in keys.items():
                self._wanted.setdefault(key, value)
            self._cond.notify_all()

    def drain(self, bundle: AlgorithmBundle) -> int:
        """Stop keeping sandboxes for ``bundle`` (under any limits) and tear down those waiting;
        returns how many were torn down."""
        digest = bundle.digest()
        with self._cond:
            keys = [key for key in {*self._wanted, *self._waiting} if key[0] == digest]
        return sum(self._drain_key(key) for key in keys)

    def _drain_key(self, key: PoolKey) -> int:
        with self._cond:
            self._wanted.pop(key, None)
            self._retry_at.pop(key, None)
            runs = self._waiting.pop(key, [])
        for run in runs:
            run.teardown()
        return len(runs)

    # -- jobs --------------------------------------------------------------------------------

    def take(self, bundle: AlgorithmBundle, limits: Limits) -> SandboxRun | None:
        """A waiting sandbox for this key, now the caller's alone (it must ``finish`` or
        ``teardown`` it), or None; a replacement is started in the background."""
        key = pool_key(bundle, limits)
        dead = []
        with self._cond:
            waiting = self._waiting.get(key, [])
            run = None
            while waiting and run is None:
                candidate = waiting.pop(0)
                # One that died while it waited (killed from outside) would fail its job: skip it.
                if candidate.process is not None and candidate.process.poll() is None:
                    run = candidate
                else:
                    dead.append(candidate)
            if run is None:
                self._missed += 1
            else:
                self._taken += 1
            self._cond.notify_all()
        for candidate in dead:
            candidate.teardown()
        return run

    def run_job(
        self,
        bundle: AlgorithmBundle,
        sealed_inputs: Sequence[SealedInput],
        params: Mapping[str, Any],
        limits: Limits,
        broker: KeyBroker,
        manifest_hash: bytes,
    ) -> RunOutcome:
        """``Sandbox.run_job`` on a waiting sandbox if there is one (a cold start otherwise);
        the key is kept from now on."""
        self.keep(bundle, limits)
        started = self.take(bundle, limits)
        return self.sandbox.run_job(bundle, sealed_inputs, params, limits, broker, manifest_hash, started=started)

    # -- the pool's thread -------------------------------------------------------------------

    def _next_to_start(self) -> tuple[PoolKey, AlgorithmBundle, Limits] | None:
        now = time.monotonic()
        for key, (bundle, limits) in self._wanted.items():
            if len(self._waiting.get(key, [])) < self.size and self._retry_at.get(key, 0.0) <= now:
                return key, bundle, limits
        return None

    def _idle_timeout(self, next_refresh: float) -> float | None:
        now = time.monotonic()
        wake = [t for t in self._retry_at.values() if t > now]
        if self._refresh is not None:
            wake.append(next_refresh)
        return max(0.05, min(wake) - time.monotonic()) if wake else None

    def _loop(self) -> None:
        next_refresh = time.monotonic()
        while True:
            if self._refresh is not None and time.monotonic() >= next_refresh:
                try:
                    self._refresh(self)
                except Exception:
                    logger.exception("the sandbox pool could not refresh what it keeps")
                next_refresh = time.monotonic() + self._refresh_seconds
            with self._cond:
                if self._closed:
                    return
                todo = self._next_to_start()
                if todo is None:
                    self._cond.wait(timeout=self._idle_timeout(next_refresh))
                    continue
                key = todo[0]
                self._starting = key
            self._start_one(*todo)

    def _start_one(self, key: PoolKey, bundle: AlgorithmBundle, limits: Limits) -> None:
        try:
            run = self.sandbox.start_run(bundle, limits)
        except Exception:
            logger.exception("a warm sandbox could not be started")
            run = None
        failed = run is None or run.failure is not None
        with self._cond:
            self._starting = None
            keep = not self._closed and key in self._wanted and not failed
            if failed:
                self._failed += 1
                # Whatever broke a start (the host, the runtime) breaks the next one too: jobs
                # still start cold and report it; the pool tries again later.
                self._retry_at[key] = time.monotonic() + RETRY_AFTER_FAILED_START
            elif keep:
                assert run is not None
                self._retry_at.pop(key, None)
                self._started += 1
                self._waiting.setdefault(key, []).append(run)
            self._cond.notify_all()
        if run is not None and not keep:
            run.teardown()
        elif keep:
            logger.info("a warm sandbox waits for a job of bundle %s", key[0].hex()[:16])

    # -- state and shutdown ------------------------------------------------------------------

    def stats(self) -> PoolStats:
        with self._cond:
            return PoolStats(
                waiting=sum(len(runs) for runs in self._waiting.values()),
                keys=len(self._wanted),
                taken=self._taken,
                missed=self._missed,
                started=self._started,
                failed_starts=self._failed,
            )

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until every wanted key has ``size`` sandboxes waiting (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                full = all(len(self._waiting.get(key, [])) >= self.size for key in self._wanted)
                if full and self._starting is None:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=remaining)
        return False

    def close(self) -> None:
        """Tear down every waiting sandbox and stop the pool's thread (after a start under way
        has finished, so that nothing it started outlives the pool)."""
        with self._cond:
            self._closed = True
            self._wanted.clear()
            runs = [run for waiting in self._waiting.values() for run in waiting]
            self._waiting.clear()
            self._cond.notify_all()
        for run in runs:
            run.teardown()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * 60)
