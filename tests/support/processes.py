"""The test run's own child processes, read from /proc: what a session would leave behind.

A worker pool whose parent forgets to close it, or whose parent is killed, leaves processes that
outlive the run (a ``ProcessPoolExecutor`` worker waits on its call queue forever: it holds that
queue's write end itself, so it never sees end-of-file). The session marks itself a child
subreaper, so such orphans of its descendants (the pool of a Celery worker a test killed) are
re-parented to it instead of to init, and the check at its end sees them as its children.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
# The stdlib's and billiard's semaphore trackers: one per process that used a pool, living as long
# as that process and ending when it does (they read a pipe it holds), so never a leftover.
_TRACKERS = ("from multiprocessing.resource_tracker import main", "from billiard.semaphore_tracker import main")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Child:
    pid: int
    state: str
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.state}): {self.command}"

    @property
    def is_tracker(self) -> bool:
        return any(marker in self.command for marker in _TRACKERS)


def become_subreaper() -> bool:
    """Orphaned descendants of this process are re-parented to it (Linux); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of a process; None if there is none."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, the rest does not.
    state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
    return state, int(parent)


def state(pid: int) -> str | None:
    """The process's state letter ("R", "S", "Z" for exited but not reaped...); None if it is gone."""
    found = _stat(pid)
    return None if found is None else found[0]


def children(pid: int) -> list[Child]:
    """The running children of ``pid`` (zombies excluded: they have exited already)."""
    found = []
    for entry in _PROC.iterdir():
        stat = _stat(entry.name) if entry.name.isdigit() else None
        if stat is None or stat[1] != pid or stat[0] in ("Z", "X"):
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # it exited while being read
        found.append(Child(int(entry.name), stat[0], command or (entry / "comm").read_text().strip()))
    return found


def children_alive_after(pid: int, *, grace: float) -> list[Child]:
    """The children of ``pid`` but its semaphore trackers still running after up to ``grace``
    seconds: the time a pool that was closed without waiting needs for its workers to exit."""
    deadline = time.monotonic() + grace
    alive = [child for child in children(pid) if not child.is_tracker]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [child for child in children(pid) if not child.is_tracker]
    return alive


def kill(leftovers: list[Child]) -> None:
    for child in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
