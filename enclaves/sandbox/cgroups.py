"""A cgroup per sandbox job: memory and process limits, CPU and peak-memory metering.

This machine mounts cgroup v1 (separate ``memory``, ``pids`` and ``cpuacct`` hierarchies under
``/sys/fs/cgroup``; the unified v2 mount beside them has no controllers), so v1 is what runs and
what the tests exercise here; v2 (``cgroup.controllers`` at the root) is supported by the same
interface for hosts that use it.

Each job's group is created *under the launcher's own group* in every hierarchy (read from
``/proc/self/cgroup``), so whatever limits the launcher lives under keep applying to its jobs.
The launcher moves the sandbox's first process in before it executes bubblewrap; every process
the sandbox starts stays inside (an unprivileged process cannot leave its cgroup, and the
sandbox's cgroup namespace hides the hierarchy anyway).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "redlake-sandbox"
V1_CONTROLLERS = ("memory", "pids", "cpuacct")


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    max_processes: int


@dataclass(frozen=True)
class CgroupUsage:
    cpu_ns: int
    peak_memory_bytes: int
    oom_kills: int
    process_limit_hits: int


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _read_keyed(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) → the launcher's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def cgroup_version() -> int:
    return 2 if (CGROUP_ROOT / "cgroup.controllers").exists() else 1


class JobCgroup:
    """One job's groups. ``procs_files`` are what the sandbox's first process writes its pid
    into; ``usage`` reads the meters; ``kill_all`` and ``remove`` tear down."""

    def __init__(self, directories: dict[str, Path], version: int) -> None:
        self.directories = directories
        self.version = version

    @classmethod
    def create(cls, name: str, limits: CgroupLimits) -> JobCgroup:
        own = _own_paths()
        version = cgroup_version()
        if version == 2:
            base = CGROUP_ROOT / own.get("", "/").lstrip("/") / GROUP_PREFIX
            base.mkdir(exist_ok=True)
            # Controllers must be enabled in the parent for the child to have them.
            with contextlib.suppress(OSError):
                (base / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            directory = base / name
            directory.mkdir()
            group = cls({"": directory}, 2)
            (directory / "memory.max").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                (directory / "memory.swap.max").write_text("0")
            (directory / "pids.max").write_text(str(limits.max_processes))
            return group
        directories: dict[str, Path] = {}
        group = cls(directories, 1)
        try:
            for controller in V1_CONTROLLERS:
                mount = CGROUP_ROOT / controller
                if not (mount / "cgroup.procs").exists():
                    raise RuntimeError(f"cgroup v1 controller {controller} is not mounted at {mount}")
                directory = mount / own.get(controller, "/").lstrip("/") / GROUP_PREFIX / name
                directory.mkdir(parents=True)
                directories[controller] = directory
            memory = directories["memory"]
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            # Without swap accounting the limit above is the whole limit; with it, forbid swap too.
            if (memory / "memory.memsw.limit_in_bytes").exists():
                (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                (memory / "memory.swappiness").write_text("0")
            (directories["pids"] / "pids.max").write_text(str(limits.max_processes))
        except BaseException:
            group.remove()
            raise
        return group

    @property
    def procs_files(self) -> list[str]:
        return [str(directory / "cgroup.procs") for directory in self.directories.values()]

    def _directory(self, controller: str) -> Path:
        return self.directories["" if self.version == 2 else controller]

    def usage(self) -> CgroupUsage:
        if self.version == 2:
            directory = self.directories[""]
            return CgroupUsage(
                cpu_ns=_read_keyed(directory / "cpu.stat", "usage_usec") * 1000,
                peak_memory_bytes=_read_int(directory / "memory.peak"),
                oom_kills=_read_keyed(directory / "memory.events", "oom_kill"),
                process_limit_hits=_read_keyed(directory / "pids.events", "max"),
            )
        memory = self.directories["memory"]
        return CgroupUsage(
            cpu_ns=_read_int(self.directories["cpuacct"] / "cpuacct.usage"),
            peak_memory_bytes=_read_int(memory / "memory.max_usage_in_bytes"),
            oom_kills=_read_keyed(memory / "memory.oom_control", "oom_kill"),
            process_limit_hits=_read_keyed(self.directories["pids"] / "pids.events", "max"),
        )

    def pids(self) -> list[int]:
        directory = self._directory("pids")
        try:
            return [int(line) for line in (directory / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self, timeout: float = 5.0) -> set[int]:
        """SIGKILL every process in the group until none is left; returns the pids it killed
        (the caller reaps those that became its children: only it knows which are)."""
        if self.version == 2 and (self.directories[""] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.directories[""] / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout
        killed: set[int] = set()
        while True:
            alive = self.pids()
            if not alive:
                return killed
            killed.update(alive)
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox processes survived SIGKILL")
            time.sleep(0.005)

    def remove(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for directory in self.directories.values():
            while directory.exists():
                try:
                    directory.rmdir()
                except OSError:
                    # A killed process leaves its group a moment after it is reaped.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)


def remove_stale_groups(max_age_seconds: float = 3600.0) -> int:
    """Remove job groups a crashed launcher left behind: empty ones (their processes died with
    their launcher, ``--die-with-parent``) older than ``max_age_seconds``, so that a group a
    sibling launcher has just created and not yet filled is never touched. Returns how many."""
    own = _own_paths()
    if cgroup_version() == 2:
        bases = [CGROUP_ROOT / own.get("", "/").lstrip("/") / GROUP_PREFIX]
    else:
        bases = [CGROUP_ROOT / c / own.get(c, "/").lstrip("/") / GROUP_PREFIX for c in V1_CONTROLLERS]
    removed = 0
    now = time.time()
    for base in bases:
        if not base.is_dir():
            continue
        for directory in base.iterdir():
            if not directory.name.startswith("job-") or now - directory.stat().st_mtime < max_age_seconds:
                continue
            with contextlib.suppress(OSError):  # not empty, or gone already
                directory.rmdir()
                removed += 1
    return removed
