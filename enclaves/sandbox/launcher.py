"""The launcher: runs one approved bundle in a bubblewrap sandbox, attests it, relays the key
release, checks and signs off the result, and meters what ran.

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

The runtime's host paths (``/root/.pyenv/...`` is not traversable by uid 65534) are bound onto
a staging directory inside a private mount namespace the launcher's child creates as root just
before it drops privileges; the host's mount table is never changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hmac
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from enclaves.attestation import AttestationRefused, Evidence, RefusalCode, TeeType, VerifiedClaims, report_data_for
from enclaves.attestation.sandbox import evidence_from_statement, launcher_public_key, sign_statement
from enclaves.bundle import AlgorithmBundle, BundleKind, OutputRejected, canonical_json, check_output, measurement
from enclaves.protocol import (
    ENCLAVE_ERROR_CODES,
    MAX_FRAME,
    ProtocolError,
    decode_frame,
    result_signing_payload,
    send_frame,
)
from enclaves.sandbox import seccomp
from enclaves.sandbox.broker import KeyBroker
from enclaves.sandbox.cgroups import CgroupLimits, CgroupUsage, JobCgroup, remove_stale_groups
from enclaves.sandbox.runtime import Distribution, RuntimeImage
from enclaves.sealed import SealedInput

logger = logging.getLogger(__name__)

SANDBOX_UID = 65534
PROFILE_FORMAT = "redlake/sandbox-profile/v1"
BINDING_DOMAIN = b"redlake/sandbox/result-binding/v1"
DEFAULT_STAGING = Path("/run/redlake-sandbox")
HOST_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")
BOOT = (
    "import sys; sys.path[:0] = ['/opt/enclaves', '/opt/site']; "
    "import enclaves.runner as r; sys.exit(r.main(sys.argv[1:]))"
)
_SIGSYS_EXIT = 128 + signal.SIGSYS

# Stable failure codes and their fixed messages: nothing in them comes from the job's data.
FAILURE_MESSAGES: Mapping[str, str] = {
    "attestation_refused": "The key broker refused the enclave's evidence; no key was released.",
    "sandbox_violation": "The algorithm made a system call the sandbox forbids and was killed.",
    "memory_limit": "The algorithm exceeded its memory limit and was killed.",
    "process_limit": "The algorithm exceeded its process limit.",
    "wall_clock_limit": "The algorithm exceeded its wall-clock limit and was killed.",
    "algorithm_error": "The algorithm raised an error.",
    "result_not_json": "The algorithm's result is not JSON.",
    "output_schema_mismatch": "The result does not match the bundle's output schema.",
    "output_too_large": "The result is larger than the bundle's maximum output size.",
    "key_unwrap_failed": "The enclave could not unwrap a data key.",
    "input_tampered": "A sealed input failed authentication.",
    "input_unreadable": "A decrypted input is not a readable table.",
    "protocol_error": "The enclave broke the launcher protocol.",
    "sandbox_failed": "The sandbox ended without a result.",
}


class JobFailed(Exception):
    """A sandbox job that produced no releasable result. ``code`` is one of
    ``FAILURE_MESSAGES``; ``refusal`` the attestation refusal code when the broker refused;
    ``metering`` what ran before it stopped (None if nothing started)."""

    def __init__(self, code: str, *, refusal: RefusalCode | None = None, metering: Metering | None = None) -> None:
        self.code = code
        self.message = FAILURE_MESSAGES[code]
        self.refusal = refusal
        self.metering = metering
        super().__init__(f"{code}: {self.message}" + (f" ({refusal})" if refusal else ""))


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 64
    wall_seconds: float = 60.0
    work_dir_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.memory_bytes < 64 * 1024 * 1024:
            raise ValueError("a sandbox needs at least 64 MiB")
        if not 1 <= self.max_processes <= 4096 or self.wall_seconds <= 0 or self.work_dir_bytes < 1 << 20:
            raise ValueError("limits out of range")


@dataclass(frozen=True)
class Metering:
    """What the job's cgroup measured. ``cpu_ms`` is every CPU-millisecond of the sandbox;
    ``startup_cpu_ms`` the part spent before the enclave said hello (bubblewrap, interpreter,
    runtime imports, key generation: the same for every job, before any job data exists);
    ``billable_cpu_ms`` the rest (decryption, the algorithm, the result)."""

    cpu_ms: int
    startup_cpu_ms: int
    peak_memory_bytes: int
    bytes_read: int
    wall_ms: int

    @property
    def billable_cpu_ms(self) -> int:
        return max(0, self.cpu_ms - self.startup_cpu_ms)

    def as_dict(self) -> dict[str, int]:
        return {
            "cpu_ms": self.cpu_ms,
            "startup_cpu_ms": self.startup_cpu_ms,
            "billable_cpu_ms": self.billable_cpu_ms,
            "peak_memory_bytes": self.peak_memory_bytes,
            "bytes_read": self.bytes_read,
            "wall_ms": self.wall_ms,
        }


@dataclass(frozen=True)
class ResultSignature:
    """The enclave's Ed25519 signature over the result (``protocol.result_signing_payload``) and
    the launcher's binding of that enclave key to the attested run: a CBOR map of the attestation
    hash, the enclave key, the result's SHA-256 and the measurement, signed by the launcher key
    that signed the evidence."""

    enclave_key: bytes
    enclave_signature: bytes
    binding: bytes
    binding_signature: bytes


class ResultSignatureInvalid(Exception):
    pass


def verify_result_signature(
    result: bytes, signature: ResultSignature, *, attestation_hash: bytes, launcher_keys: Sequence[bytes]
) -> None:
    """Raise ``ResultSignatureInvalid`` unless ``result`` was signed by the enclave that the
    evidence with ``attestation_hash`` attested, as bound by a trusted launcher key."""
    try:
        binding = cbor2.loads(signature.binding)
        if not isinstance(binding, dict):
            raise ResultSignatureInvalid("binding is not a map")
        launcher = binding["launcher_key"]
        if not any(hmac.compare_digest(launcher, key) for key in launcher_keys):
            raise ResultSignatureInvalid("unknown launcher key")
        launcher_public = Ed25519PublicKey.from_public_bytes(launcher)
        launcher_public.verify(signature.binding_signature, BINDING_DOMAIN + signature.binding)
        if binding["attestation_hash"] != attestation_hash or binding["enclave_key"] != signature.enclave_key:
            raise ResultSignatureInvalid("binding is for another run")
        context = attestation_hash.hex()
        Ed25519PublicKey.from_public_bytes(signature.enclave_key).verify(
            signature.enclave_signature, result_signing_payload(result, context)
        )
        if binding["result_sha256"] != _sha256(result):
            raise ResultSignatureInvalid("binding is for another result")
    except (InvalidSignature, KeyError, TypeError, ValueError, cbor2.CBORDecodeError) as exc:
        raise ResultSignatureInvalid("signature does not verify") from exc


def _sha256(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class RunOutcome:
    result: Any
    result_bytes: bytes
    result_signature: ResultSignature
    evidence: Evidence
    verified: VerifiedClaims
    measurement: bytes
    metering: Metering
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def tee_type(self) -> TeeType:
        return self.verified.tee_type

    @property
    def label(self) -> str:
        return self.verified.label

    def receipt(self) -> dict[str, Any]:
        """What a receipt records: the verified TEE type, label (SIMULATED), measurement and
        attestation hash; the result's hash; the meters."""
        return {
            **self.verified.receipt(),
            "result_sha256": _sha256(self.result_bytes).hex(),
            "metering": self.metering.as_dict(),
        }


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


def _confinement_template(runtime: RuntimeImage, distributions: Sequence[Distribution]) -> list[str]:
    """bubblewrap's arguments with ``{placeholders}``; ``_arguments`` fills them in."""
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


class _Libc:
    """libc entry points the child uses between fork and exec (resolved before forking)."""

    CLONE_NEWNS = 0x00020000
    MS_BIND = 4096
    MS_REC = 16384
    MS_PRIVATE = 1 << 18
    PR_SET_DUMPABLE = 4

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.unshare = libc.unshare
        self.mount = libc.mount
        self.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        self.prctl = libc.prctl

    def check(self, result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), what)


class Sandbox:
    """The local sandbox backend: one per worker process (it caches the runtime image hash and
    the seccomp filters). ``launcher_key`` signs the SIMULATED evidence and the result bindings."""

    def __init__(
        self,
        launcher_key: Ed25519PrivateKey,
        *,
        runtime: RuntimeImage | None = None,
        bwrap: str = "bwrap",
        staging_dir: Path = DEFAULT_STAGING,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.launcher_key = launcher_key
        self.launcher_public_key = launcher_public_key(launcher_key)
        self.runtime = runtime or RuntimeImage.current()
        self.bwrap = bwrap
        self.staging = staging_dir
        self.clock = clock
        self._libc = _Libc()
        for name in ("python", "site", "enclaves"):
            (self.staging / name).mkdir(mode=0o755, parents=True, exist_ok=True)
        self._profiles: dict[bytes, tuple[SandboxProfile, list[Distribution], list[str]]] = {}
        self._pool: dict[tuple[bytes, Limits], list[_Job]] = {}
        remove_stale_groups()
        self._lock = threading.Lock()

    # -- measurement -------------------------------------------------------------------------

    def _profile(self, bundle: AlgorithmBundle) -> tuple[SandboxProfile, list[Distribution], list[str]]:
        key = bundle.digest()
        if key not in self._profiles:
            distributions = self.runtime.closure(bundle.lockfile, sql=bundle.kind is BundleKind.SQL)
            template = _confinement_template(self.runtime, distributions)
            profile = SandboxProfile(
                runtime_image=self.runtime.image_hash(distributions),
                distributions=tuple((d.name, d.version) for d in distributions),
                confinement=tuple(template),
                seccomp=seccomp.filter_hashes(),
            )
            self._profiles[key] = (profile, distributions, template)
        return self._profiles[key]

    def profile(self, bundle: AlgorithmBundle) -> SandboxProfile:
        """The sandbox profile this bundle runs under (raises ``BundleInvalid`` if its lockfile
        does not match the runtime)."""
        return self._profile(bundle)[0]

    def measure(self, bundle: AlgorithmBundle) -> bytes:
        """The measurement a provider approves: SHA-256 over the bundle and this profile."""
        return measurement(bundle, self.profile(bundle).canonical_bytes())

    # -- one job -----------------------------------------------------------------------------

    def prestart(self, bundle: AlgorithmBundle, limits: Limits, count: int = 1) -> None:
        """Start ``count`` sandboxes for ``bundle`` ahead of their jobs. Each waits, having made
        its keys and said hello, for the one job it will run; none has seen a nonce, a key or
        any data. ``run_job`` takes one if it can and starts a sandbox itself otherwise."""
        self._profile(bundle)
        for _ in range(count):
            job = _Job(self, bundle, limits, self._profile(bundle)[2])
            job.start()
            with self._lock:
                self._pool.setdefault((bundle.digest(), limits), []).append(job)

    def close(self) -> None:
        """Tear down every pre-started sandbox."""
        with self._lock:
            jobs = [job for queue in self._pool.values() for job in queue]
            self._pool.clear()
        for job in jobs:
            job.teardown()

    def run_job(
        self,
        bundle: AlgorithmBundle,
        sealed_inputs: Sequence[SealedInput],
        params: Mapping[str, Any],
        limits: Limits,
        broker: KeyBroker,
        manifest_hash: bytes,
    ) -> RunOutcome:
        """Run ``bundle`` on ``sealed_inputs`` under ``limits``: the enclave is attested to
        ``broker`` for the job ``manifest_hash`` names before any data key reaches it. Returns
        the checked, signed result or raises ``JobFailed``."""
        profile, _, template = self._profile(bundle)
        job_measurement = measurement(bundle, profile.canonical_bytes())
        names = [item.name for item in sealed_inputs]
        if len(set(names)) != len(names):
            raise ValueError("input table names must be unique")
        params_bytes = canonical_json(dict(params))
        with self._lock:
            queue = self._pool.get((bundle.digest(), limits))
            job = queue.pop() if queue else None
        if job is None:
            job = _Job(self, bundle, limits, template)
            job.start()
        return job.finish(
            list(sealed_inputs),
            broker=broker,
            manifest_hash=manifest_hash,
            job_measurement=job_measurement,
            params_bytes=params_bytes,
        )


STARTUP_TIMEOUT = 60.0


class _Job:
    """One sandbox, from its start to its teardown; runs exactly one job. ``start`` brings it to
    hello (keys made, nothing else); ``finish`` attests it, relays the key release and the
    inputs, reads and checks the result, and tears everything down whatever happens."""

    def __init__(self, sandbox: Sandbox, bundle: AlgorithmBundle, limits: Limits, template: list[str]) -> None:
        self.sandbox = sandbox
        self.bundle = bundle
        self.limits = limits
        self.template = template
        self.fds: list[int] = []
        self.timed_out = False
        self.timings: dict[str, float] = {}
        self.startup_cpu_ns = 0
        self.bytes_read = 0
        self.buffer = bytearray()
        self.members: set[int] = set()
        self.process: subprocess.Popen[bytes] | None = None
        self.group: JobCgroup | None = None
        self.channel = -1
        self.kex = b""
        self.signing_key = b""
        self.deadline = time.monotonic() + STARTUP_TIMEOUT
        self.usage = CgroupUsage(0, 0, 0, 0)
        self.failure: JobFailed | None = None

    def _fd(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def _memfd(self, name: str, data: bytes) -> int:
        fd = self._fd(os.memfd_create(name, os.MFD_CLOEXEC))
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def start(self) -> None:
        """Spawn the sandbox and wait for its hello. On failure, tears down and records why
        (``finish`` then raises it)."""
        self.group = JobCgroup.create(
            f"job-{uuid.uuid4().hex}", CgroupLimits(self.limits.memory_bytes, self.limits.max_processes)
        )
        spawn_start = time.monotonic()
        try:
            self._spawn(self.group)
            hello = self._read_frame("hello")
            self.startup_cpu_ns = self.group.usage().cpu_ns
            # bubblewrap's pid-namespace init, among others: if the sandbox dies on its own, that
            # init may be left to us (a subreaper) to reap, after it has left the cgroup.
            self.members.update(self.group.pids())
            kex, signing_key = hello.get("kex"), hello.get("sign")
            if hello["kind"] != "hello" or not isinstance(kex, bytes) or not isinstance(signing_key, bytes):
                raise JobFailed("protocol_error")
            if not 0 < len(kex) <= 1024 or len(signing_key) != 32:
                raise JobFailed("protocol_error")
            self.kex, self.signing_key = kex, signing_key
        except JobFailed as exc:
            self.failure = exc
        except ProtocolError:
            self.failure = JobFailed("sandbox_failed")
            self._let_it_die()
        finally:
            self.timings["start"] = (time.monotonic() - spawn_start) * 1000
        if self.failure is not None:
            self.teardown()

    def finish(
        self,
        inputs: list[SealedInput],
        *,
        broker: KeyBroker,
        manifest_hash: bytes,
        job_measurement: bytes,
        params_bytes: bytes,
    ) -> RunOutcome:
        started = time.monotonic()
        self.deadline = started + self.limits.wall_seconds
        outcome: tuple[bytes, ResultSignature, Evidence, VerifiedClaims] | None = None
        if self.failure is None:
            try:
                outcome = self._converse(
                    inputs, broker=broker, manifest_hash=manifest_hash,
                    job_measurement=job_measurement, params_bytes=params_bytes,
                )  # fmt: skip
            except JobFailed as exc:
                self.failure = exc
            except ProtocolError:
                self.failure = JobFailed("sandbox_failed")
                self._let_it_die()
            finally:
                self.teardown()
        metering = Metering(
            cpu_ms=self.usage.cpu_ns // 1_000_000,
            startup_cpu_ms=self.startup_cpu_ns // 1_000_000,
            peak_memory_bytes=self.usage.peak_memory_bytes,
            bytes_read=self.bytes_read,
            wall_ms=int((time.monotonic() - started) * 1000),
        )
        if self.failure is not None or outcome is None:
            code = self._classify(self.failure)
            refusal = self.failure.refusal if self.failure else None
            raise JobFailed(code, refusal=refusal, metering=metering) from None
        result_bytes, signature, evidence, verified = outcome
        try:
            result = check_output(result_bytes, self.bundle)
        except OutputRejected as exc:
            raise JobFailed(exc.code, metering=metering) from None
        return RunOutcome(
            result=result,
            result_bytes=result_bytes,
            result_signature=signature,
            evidence=evidence,
            verified=verified,
            measurement=job_measurement,
            metering=metering,
            timings_ms=dict(self.timings),
        )

    def _let_it_die(self) -> None:
        """The enclave closed its channel: let the sandbox finish dying so that its exit status
        (SIGSYS from a seccomp kill) is what we classify."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=max(0.0, min(2.0, self.deadline - time.monotonic())))

    def teardown(self) -> None:
        if self.group is None:
            return
        teardown_start = time.monotonic()
        group, self.group = self.group, None
        members = self.members | set(group.pids())
        if self.process is not None:
            _stop(self.process)
        group.kill_all()
        _reap_our_children(members)
        if self.process is not None and self.process.stderr is not None:
            # bubblewrap's own complaints (the runner silences itself before any job data
            # exists): for the operator's log, never for the job's failure reason.
            tail = self.process.stderr.read(4096)
            self.process.stderr.close()
            if tail:
                logger.info("sandbox stderr: %s", tail.decode(errors="replace"))
        self.usage = group.usage()
        group.remove()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        self.timings["teardown"] = (time.monotonic() - teardown_start) * 1000

    def _classify(self, failure: JobFailed | None) -> str:
        """One code for a failed run: an attestation refusal as such; then what the launcher saw
        (a limit hit explains an error the enclave reported), then what the enclave said."""
        if failure is not None and failure.code == "attestation_refused":
            return failure.code
        if self.usage.oom_kills:
            return "memory_limit"
        returncode = self.process.returncode if self.process is not None else None
        if returncode in (_SIGSYS_EXIT, -signal.SIGSYS):
            return "sandbox_violation"
        if self.usage.process_limit_hits:
            return "process_limit"
        if self.timed_out:
            return "wall_clock_limit"
        return failure.code if failure is not None else "sandbox_failed"

    # -- process -----------------------------------------------------------------------------

    def _spawn(self, group: JobCgroup) -> None:
        sandbox = self.sandbox
        # One AF_UNIX stream socket each way: frames, and the inputs' file descriptors
        # (SCM_RIGHTS) once the keys are released.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.channel = self._fd(ours.detach())
        enclave_end = self._fd(theirs.detach())
        values = {
            "stage": str(sandbox.staging),
            "work_dir_bytes": str(self.limits.work_dir_bytes),
            "bundle_fd": str(self._memfd("bundle", self.bundle.canonical_bytes())),
            "exec_filter_fd": str(self._memfd("exec-filter", seccomp.exec_filter())),
            "seccomp_fd": str(self._memfd("confinement-filter", seccomp.confinement_filter())),
            "channel_fd": str(enclave_end),
            "memory_bytes": str(self.limits.memory_bytes),
        }
        args = [sandbox.bwrap, *(_fill(arg, values) for arg in self.template)]
        pass_fds = [int(values[k]) for k in ("bundle_fd", "exec_filter_fd", "seccomp_fd", "channel_fd")]
        procs_files = group.procs_files
        libc = sandbox._libc
        binds = [
            (str(sandbox.runtime.prefix).encode(), str(sandbox.staging / "python").encode()),
            (str(sandbox.runtime.site_packages).encode(), str(sandbox.staging / "site").encode()),
            (str(sandbox.runtime.package_dir).encode(), str(sandbox.staging / "enclaves").encode()),
        ]

        def enter_cgroup_and_drop_privileges() -> None:
            # Runs in the child between fork and exec, as root: join the job's cgroups, make a
            # private mount namespace holding the runtime at the staging paths, become nobody.
            pid = str(os.getpid())
            for procs in procs_files:
                with open(procs, "w") as handle:
                    handle.write(pid)
            libc.check(libc.unshare(libc.CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            libc.check(libc.mount(b"none", b"/", None, libc.MS_REC | libc.MS_PRIVATE, None), "mount private")
            for source, target in binds:
                libc.check(libc.mount(source, target, None, libc.MS_BIND | libc.MS_REC, None), "bind runtime")
            os.setgroups([])
            os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
            os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
            # Dropping from root clears "dumpable", which makes /proc/self unreadable to the
            # process itself; bubblewrap needs it to write its user namespace's maps.
            libc.prctl(libc.PR_SET_DUMPABLE, 1, 0, 0, 0)

        self.process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            preexec_fn=enter_cgroup_and_drop_privileges,  # before exec, on purpose
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
        for fd in pass_fds:
            os.close(fd)
            self.fds.remove(fd)

    def _read_frame(self, kind: str) -> dict[str, Any]:
        """One frame, waiting no later than the deadline."""
        while True:
            if len(self.buffer) >= 4:
                length = int.from_bytes(self.buffer[:4], "big")
                if length > MAX_FRAME:
                    raise JobFailed("protocol_error")
                if len(self.buffer) >= 4 + length:
                    body = bytes(self.buffer[4 : 4 + length])
                    del self.buffer[: 4 + length]
                    try:
                        return decode_frame(body, kind)
                    except ProtocolError:
                        raise JobFailed("protocol_error") from None
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                raise JobFailed("wall_clock_limit")
            ready, _, _ = select.select([self.channel], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self.channel, 1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ProtocolError("the enclave closed its channel")
            self.buffer += chunk

    def _converse(
        self,
        inputs: list[SealedInput],
        *,
        broker: KeyBroker,
        manifest_hash: bytes,
        job_measurement: bytes,
        params_bytes: bytes,
    ) -> tuple[bytes, ResultSignature, Evidence, VerifiedClaims]:
        sandbox = self.sandbox
        attest_start = time.monotonic()
        nonce = broker.issue_nonce()
        statement = sign_statement(
            sandbox.launcher_key,
            measurement=job_measurement,
            report_data=report_data_for(nonce, self.kex, manifest_hash),
            ephemeral_public_key=self.kex,
            issued_at=sandbox.clock(),
        )
        evidence = evidence_from_statement(statement)
        key_ids = sorted({item.key_id for item in inputs})
        try:
            release = broker.release(evidence, nonce=nonce, manifest_hash=manifest_hash, key_ids=key_ids)
        except AttestationRefused as exc:
            raise JobFailed("attestation_refused", refusal=exc.code) from None
        verified = release.verified
        # The broker's answer must be about this evidence: never relay keys wrapped to anything else.
        if verified.ephemeral_public_key != self.kex or verified.claims.measurement != job_measurement:
            raise JobFailed("attestation_refused", refusal=RefusalCode.REPORT_DATA_MISMATCH)
        if release.context != verified.attestation_hash().hex():
            raise JobFailed("attestation_refused", refusal=RefusalCode.SIGNATURE_INVALID)
        released_at = time.monotonic()
        self.timings["attest"] = (released_at - attest_start) * 1000

        input_fds = []
        for item in inputs:
            fd = self._fd(os.open(item.path, os.O_RDONLY | os.O_CLOEXEC))
            self.bytes_read += os.fstat(fd).st_size
            input_fds.append(fd)
        descriptors = [
            {"name": i.name, "fd": index, "blob_name": i.blob_name, "key_id": i.key_id, "format": str(i.format)}
            for index, i in enumerate(inputs)
        ]
        message = {
            "kind": "release",
            "tokens": dict(release.tokens),
            "context": release.context,
            "inputs": descriptors,
            "params": params_bytes,
        }
        try:
            send_frame(self.channel, message, fds=input_fds)
        except OSError:
            raise ProtocolError("the enclave is gone") from None
        for fd in input_fds:  # the enclave holds its own copies now
            os.close(fd)
            self.fds.remove(fd)
        answer = self._read_frame("result")
        self.timings["run"] = (time.monotonic() - released_at) * 1000
        if answer["kind"] == "error":
            code = answer.get("code")
            raise JobFailed(code if code in ENCLAVE_ERROR_CODES else "protocol_error")
        result, enclave_signature = answer.get("result"), answer.get("signature")
        if not isinstance(result, bytes) or not isinstance(enclave_signature, bytes):
            raise JobFailed("protocol_error")
        try:
            Ed25519PublicKey.from_public_bytes(self.signing_key).verify(
                enclave_signature, result_signing_payload(result, release.context)
            )
        except (InvalidSignature, ValueError):
            raise JobFailed("protocol_error") from None
        binding = cbor2.dumps(
            {
                "launcher_key": sandbox.launcher_public_key,
                "attestation_hash": verified.attestation_hash(),
                "enclave_key": self.signing_key,
                "result_sha256": _sha256(result),
                "measurement": job_measurement,
                "tee_type": str(verified.tee_type),
                "label": verified.label,
            }
        )
        signature = ResultSignature(
            enclave_key=self.signing_key,
            enclave_signature=enclave_signature,
            binding=binding,
            binding_signature=sandbox.launcher_key.sign(BINDING_DOMAIN + binding),
        )
        return result, signature, evidence, verified


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the sandbox from the inside out: first the pid namespace's init (bubblewrap's child),
    whose death makes the kernel kill everything in the namespace, then bubblewrap itself, which
    reaps that init. Killing bubblewrap first would orphan the init to the nearest subreaper."""
    if process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            for child in children:
                os.kill(int(child), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
    process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _reap_our_children(pids: set[int], timeout: float = 2.0) -> None:
    """Reap any of the job's processes that were reparented to this process (a subreaper, as
    the test runner is), so that none lingers as a zombie."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    me = os.getpid()
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                pending.discard(pid)  # gone: reaped by whoever was its parent
                continue
            # A process still dying in the sandbox's chain is left to its parent; one that was
            # reparented to us is ours to reap.
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        pending.discard(pid)
        if pending:
            time.sleep(0.002)


def _fill(argument: str, values: Mapping[str, str]) -> str:
    if "{" not in argument:
        return argument
    return argument.format_map(values)


def run_job(
    bundle: AlgorithmBundle,
    sealed_inputs: Sequence[SealedInput],
    params: Mapping[str, Any],
    limits: Limits,
    broker: KeyBroker,
    manifest_hash: bytes,
    *,
    sandbox: Sandbox,
) -> RunOutcome:
    """``sandbox.run_job(...)``: see ``Sandbox.run_job``."""
    return sandbox.run_job(bundle, sealed_inputs, params, limits, broker, manifest_hash)
