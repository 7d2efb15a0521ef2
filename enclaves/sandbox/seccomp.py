"""The sandbox's seccomp filters, built with libseccomp (``pyseccomp``) and exported as BPF.

Two filters, because one cannot do both jobs:

- ``confinement_filter`` is handed to bubblewrap (``--seccomp FD``), which loads it just before it
  executes the interpreter. It kills the process on sockets of any family but AF_UNIX, ptrace,
  mount and the other mount-API calls, bpf, the kernel keyring (keyctl, add_key, request_key),
  namespace changes (unshare, setns), io_uring (whose operations seccomp cannot see), userfaultfd,
  process_vm_readv/writev, perf_event_open, module and kexec loading, and a few more.
- ``exec_filter`` kills the process on execve and execveat. bubblewrap installs its filter
  *before* its own final execve of the interpreter, so an execve ban there would kill the sandbox
  at birth. The runner therefore loads this second filter itself (``prctl(PR_SET_SECCOMP)``) as the
  first thing it does, before it reads the job or imports the algorithm; no_new_privs is already
  set by bubblewrap, and seccomp filters only ever stack, so nothing run later can lift either.

Violations kill the whole process (SECCOMP_RET_KILL_PROCESS, SIGSYS): the launcher reports
``sandbox_violation``. Syscalls of other architectures (x32, i386) are killed by the filters'
bad-architecture action.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import tempfile

import pyseccomp

# Denied outright. Grouped by what they would let an algorithm do.
DENIED_SYSCALLS: tuple[str, ...] = (
    # inspect or modify other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # mounts and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    # kernel attack surface the algorithm has no use for
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "personality",
)
EXEC_SYSCALLS: tuple[str, ...] = ("execve", "execveat")


def _export(rules: pyseccomp.SyscallFilter) -> bytes:
    with tempfile.TemporaryFile() as handle:
        rules.export_bpf(handle)
        handle.seek(0)
        return handle.read()


@functools.cache
def confinement_filter() -> bytes:
    """BPF for bubblewrap's ``--seccomp``: the list above, and sockets only of family AF_UNIX."""
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        rules.add_rule(pyseccomp.KILL_PROCESS, name)
    for name in ("socket", "socketpair"):
        rules.add_rule(pyseccomp.KILL_PROCESS, name, pyseccomp.Arg(0, pyseccomp.NE, socket.AF_UNIX))
    return _export(rules)


@functools.cache
def exec_filter() -> bytes:
    """BPF the runner loads once the interpreter runs: no further program may be executed."""
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in EXEC_SYSCALLS:
        rules.add_rule(pyseccomp.KILL_PROCESS, name)
    return _export(rules)


def filter_hashes() -> dict[str, str]:
    """SHA-256 of each filter's BPF, for the sandbox profile (and so the measurement)."""
    return {
        "confinement": hashlib.sha256(confinement_filter()).hexdigest(),
        "exec": hashlib.sha256(exec_filter()).hexdigest(),
    }
