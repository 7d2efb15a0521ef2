"""The encryption worker processes, and the one way to run them: ``EncryptionWorkers``.

Invariant: no worker outlives the build that started it. ``EncryptionWorkers`` is a context
manager whose exit closes the pool on every path (success, failure, KeyboardInterrupt, before or
after the workers were waited for); a worker whose parent is killed (SIGKILL leaves no path to
close anything) is ended by the kernel (Linux ``PR_SET_PDEATHSIG``). Without that a stdlib worker
would wait on its call queue forever: it holds the queue's write end itself, so it never reads
end-of-file.

Children are spawned, not forked: a fork of a Celery worker would inherit its broker connections
and threads. Inside a Celery prefork child (a daemonic process, where the stdlib refuses children)
the pool is Celery's billiard; where no child may start at all, encryption runs in this process,
slower but correct.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np
import tenseal as ts

from dataspace.compute.he.keys import context_param_set, load_secret_context
from dataspace.compute.he.params import Level
from dataspace.compute.he.seeded import SeededEncryptor, seeded_encryptor

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 300
_PR_SET_PDEATHSIG = 1

# --------------------------------------------------------------------------- in each worker

_contexts: dict[Level, Any] = {}
_seeded: dict[Level, SeededEncryptor] = {}  # where the platform allows (``seeded``): half-size ciphertexts


def _load_contexts(secret_contexts: dict[Level, bytes], seeded: bool) -> None:
    _clear_contexts()
    for level, data in secret_contexts.items():
        _contexts[level] = load_secret_context(data)
        encryptor = seeded_encryptor(_contexts[level], context_param_set(_contexts[level], level)) if seeded else None
        if encryptor is not None:
            _seeded[level] = encryptor


def _clear_contexts() -> None:
    for encryptor in _seeded.values():
        encryptor.close()
    _seeded.clear()
    _contexts.clear()


def _die_with_parent(parent_pid: int) -> None:
    """Asks the kernel to end this process when its parent does (Linux; elsewhere nothing)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent ended before the request was in place
        os._exit(1)


def _worker_init(parent_pid: int, secret_contexts: dict[Level, bytes], seeded: bool) -> None:
    _die_with_parent(parent_pid)
    _load_contexts(secret_contexts, seeded)


def _worker_ready() -> bool:
    return bool(_contexts)


def _encrypt(level: Level, values: list[float]) -> bytes:
    """One vector of ``values``: seeded where this process has a seeded encryptor (about half the
    bytes, loaded the same way), else TenSEAL's full ciphertext."""
    encryptor = _seeded.get(level)
    if encryptor is not None:
        return encryptor.encrypt(values)
    # TenSEAL's own CKKSVector constructor goes array -> np.array -> flatten -> list ->
    # PlainTensor -> list again (~0.25 ms of a ~3 ms chunk, measured); its C++ constructor takes
    # the list directly and yields the same ciphertext.
    data: bytes = ts._ts_cpp.CKKSVector(_contexts[level].data, values).serialize()
    return data


def encrypt_block(level: Level, values: np.ndarray, slots: int) -> list[bytes]:
    """One ciphertext per ``slots`` values, the last chunk padded with zeros."""
    out = []
    for start in range(0, len(values), slots):
        chunk = values[start : start + slots]
        if len(chunk) < slots:  # every vector the same size, so any two chunks can be added
            chunk = np.concatenate([chunk, np.zeros(slots - len(chunk))])
        out.append(_encrypt(level, chunk.tolist()))
    return out


def encrypt_total(level: Level, total: float) -> bytes:
    """A series' total as a one-value vector."""
    return _encrypt(level, [total])


# --------------------------------------------------------------------------- in the building process


class _InlineExecutor(Executor):
    """Runs each task on submit, in this process: the fallback where no child may be started."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class _BilliardExecutor(Executor):
    """Celery's billiard pool behind the Executor interface. A Celery prefork child is a daemonic
    process, and the stdlib refuses to start children from one; billiard does not."""

    def __init__(self, workers: int, secret_contexts: dict[Level, bytes], seeded: bool) -> None:
        import billiard  # Celery's own dependency, needed only here

        self._pool = billiard.get_context("spawn").Pool(
            workers, initializer=_worker_init, initargs=(os.getpid(), secret_contexts, seeded)
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._pool.apply_async(fn, args, kwargs, callback=future.set_result, error_callback=future.set_exception)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._pool.terminate()
        else:
            self._pool.close()
        if wait:
            self._pool.join()


def start_pool(workers: int, secret_contexts: dict[Level, bytes], seeded: bool = True) -> Executor:
    if multiprocessing.current_process().daemon:
        return _BilliardExecutor(workers, secret_contexts, seeded)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(), secret_contexts, seeded),
    )


class EncryptionWorkers:
    """``workers`` encryption processes holding the secret contexts, started on entering (so their
    start-up overlaps whatever runs before ``ready``) and closed on leaving, on every path.
    ``seeded``: they write seeded ciphertexts (``seeded``) where the platform allows."""

    def __init__(self, workers: int, secret_contexts: dict[Level, bytes], *, seeded: bool = True) -> None:
        self._workers = workers
        self._secret_contexts = secret_contexts
        self._seeded = seeded
        self._pool: Executor | None = None
        self._probes: list[Future[bool]] = []
        self._failure: BaseException | None = None
        self._executor: Executor | None = None

    def __enter__(self) -> EncryptionWorkers:
        if self._workers > 1:
            try:
                self._pool = start_pool(self._workers, self._secret_contexts, self._seeded)
                self._probes = [self._pool.submit(_worker_ready) for _ in range(self._workers)]
            except Exception as exc:  # any refusal means the same fallback
                self._failure = exc
        return self

    def ready(self) -> Executor:
        """The executor to submit ``encrypt_block`` and ``encrypt_total`` to, once every worker has
        started and loaded its contexts (a refusal surfaces here); this process if none could."""
        if self._executor is not None:
            return self._executor
        if self._pool is not None and self._failure is None:
            try:
                if not all(probe.result(timeout=READY_TIMEOUT_SECONDS) for probe in self._probes):
                    raise RuntimeError("a worker started without its contexts")
                self._executor = self._pool
                return self._executor
            except Exception as exc:
                self._failure = exc
        if self._failure is not None:
            self._close_pool(failed=True)
            failure = self._failure
            logger.warning(
                "encrypting in one process: worker processes could not start (%s: %s)", type(failure).__name__, failure
            )
        _load_contexts(self._secret_contexts, self._seeded)
        self._executor = _InlineExecutor()
        return self._executor

    def _close_pool(self, *, failed: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # On failure nothing more is wanted from the workers: queued blocks are dropped, and
            # only the blocks being encrypted are waited for (billiard: terminated).
            pool.shutdown(wait=True, cancel_futures=failed)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self._close_pool(failed=exc_type is not None)
        finally:
            _clear_contexts()  # the inline fallback's secret contexts, in this process
            self._executor = None
