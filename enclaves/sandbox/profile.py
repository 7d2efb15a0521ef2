"""The sandbox profile: bubblewrap's confinement arguments and what of them is measured.

Confinement (every job):
- bubblewrap with every namespace unshared (user, mount, pid, ipc, uts, cgroup, network: only a
  loopback interface exists), nested user namespaces disabled, all capabilities dropped, uid and
  gid 65534 *also on the host*: the launcher (root) drops to 65534 before it executes bubblewrap,
  which then builds its user namespace unprivileged, so even an escape from the namespaces lands
  as ``nobody``;
- the root is an empty tmpfs remounted read-only: the runtime (interpreter, the mounted
  distributions, this package) is bound read-only; /usr/lib and nothing else of the host; no
  /etc, /home, /root, /var, /tmp, /work; the job's inputs are *file descriptors* the sandbox
  inherits, not paths; the private writable directory is a size-limited tmpfs at /job/work that
  disappears with the sandbox's mount namespace;
- seccomp: the confinement filter through ``--seccomp``, the exec filter loaded by the runner
  (see ``seccomp``);
- a cgroup per job (memory limit, process limit, CPU accounting) and a wall-clock deadline, after
  which every process of the job is killed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from enclaves.bundle import canonical_json
from enclaves.sandbox.runtime import Distribution, RuntimeImage

SANDBOX_UID = 65534
PROFILE_FORMAT = "redlake/sandbox-profile/v1"
HOST_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")
BOOT = (
    "import sys; sys.path[:0] = ['/opt/enclaves', '/opt/site']; "
    "import enclaves.runner as r; sys.exit(r.main(sys.argv[1:]))"
)


@dataclass(frozen=True)
class SandboxProfile:
    """The sandbox's part of the measurement: runtime image hash, the confinement arguments
    (host paths, descriptors and limits as placeholders: they vary per host and per job, the
    confinement does not) and the seccomp filters' hashes."""

    runtime_image: bytes
    distributions: tuple[tuple[str, str], ...]
    confinement: tuple[str, ...]
    seccomp: Mapping[str, str]

    def canonical_bytes(self) -> bytes:
        return canonical_json(
            {
                "format": PROFILE_FORMAT,
                "runtime_image": self.runtime_image.hex(),
                "distributions": [list(pair) for pair in self.distributions],
                "confinement": list(self.confinement),
                "seccomp": dict(self.seccomp),
            }
        )


def confinement_template(runtime: RuntimeImage, distributions: Sequence[Distribution]) -> list[str]:
    """bubblewrap's arguments with ``{placeholders}``; ``run.fill`` fills them in."""
    args = [
        "--unshare-all", "--unshare-user", "--unshare-cgroup", "--disable-userns",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
        "--die-with-parent", "--new-session", "--hostname", "enclave", "--clearenv",
    ]  # fmt: skip
    for directory in HOST_LIBRARY_DIRS:
        if Path(directory).is_dir():
            args += ["--ro-bind", directory, directory]
    args += ["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
    args += ["--ro-bind", "{stage}/python", "/opt/python"]
    # The base interpreter's own site-packages is hidden: only the mounted distributions exist.
    args += ["--tmpfs", f"/opt/python/lib/{runtime.executable_name}/site-packages"]
    for dist in distributions:
        for entry in dist.top_level:
            args += ["--ro-bind", f"{{stage}}/site/{entry}", f"/opt/site/{entry}"]
    args += ["--ro-bind", "{stage}/enclaves", "/opt/enclaves/enclaves"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "0700", "--size", "{work_dir_bytes}", "--tmpfs", "/job/work"]
    args += ["--ro-bind-data", "{bundle_fd}", "/job/bundle.json", "--ro-bind-data", "{exec_filter_fd}", "/job/exec.bpf"]
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    env = {
        "LD_LIBRARY_PATH": "/opt/python/lib",
        "HOME": "/job/work",
        "TMPDIR": "/job/work",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }
    for name, value in env.items():
        args += ["--setenv", name, value]
    args += ["--chdir", "/job/work", "--seccomp", "{seccomp_fd}", "--"]
    args += [f"/opt/python/bin/{runtime.executable_name}", "-I", "-S", "-B", "-c", BOOT]
    args += ["{channel_fd}", "{memory_bytes}"]
    return args
