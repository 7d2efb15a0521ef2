"""Can this host run the sandbox backend? The checks a worker makes before it takes ``tee`` jobs.

On this project's machines (Debian 12, kernel 6.x, root) every namespace bubblewrap offers was
tried and works: user (unprivileged, as uid 65534, once the launcher has dropped to it), mount,
pid, ipc, uts, cgroup and network (a fresh namespace with only ``lo``), with nested user
namespaces disabled. What does not work, and how the launcher goes around it, is in
``launcher`` (bind sources under a directory uid 65534 cannot traverse).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from enclaves.sandbox.cgroups import CGROUP_ROOT, V1_CONTROLLERS, cgroup_version


def host_problems(bwrap: str = "bwrap") -> list[str]:
    """What stops this host from running sandbox jobs, in words an operator can act on; empty
    when nothing does."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the launcher must run as root (job cgroups, staging mounts); the sandbox itself runs as 65534")
    if shutil.which(bwrap) is None:
        problems.append(f"{bwrap} not found: apt-get install bubblewrap")
    if cgroup_version() == 2:
        controllers = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        missing = [c for c in ("memory", "pids", "cpu") if c not in controllers]
        if missing:
            problems.append(f"cgroup v2 controllers missing: {', '.join(missing)}")
    else:
        missing = [c for c in V1_CONTROLLERS if not (CGROUP_ROOT / c / "cgroup.procs").exists()]
        if missing:
            problems.append(f"cgroup v1 controllers not mounted under {CGROUP_ROOT}: {', '.join(missing)}")
    max_user_namespaces = Path("/proc/sys/user/max_user_namespaces")
    if max_user_namespaces.exists() and max_user_namespaces.read_text().strip() == "0":
        problems.append("user namespaces are disabled (sysctl user.max_user_namespaces=0)")
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if clone.exists() and clone.read_text().strip() == "0":
        problems.append("unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0)")
    return problems
