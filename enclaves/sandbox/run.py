"""One sandbox from its start to its teardown, and the conversation with the enclave in it:
spawn (cgroup, private mount namespace, privileges dropped, bubblewrap), hello, attestation and
key release through the caller's broker while the enclave warms up, its ready, inputs as
descriptors, the result read, checked and signed off, every process of the job killed and
reaped.

The runtime's host paths (``/root/.pyenv/...`` is not traversable by uid 65534) are bound onto
a staging directory inside a private mount namespace the launcher's child creates as root just
before it drops privileges; the host's mount table is never changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from enclaves.attestation import AttestationRefused, Evidence, RefusalCode, VerifiedClaims, report_data_for
from enclaves.attestation.sandbox import evidence_from_statement, sign_statement
from enclaves.bundle import AlgorithmBundle, OutputRejected, check_output
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
from enclaves.sandbox.cgroups import CgroupLimits, CgroupUsage, JobCgroup
from enclaves.sandbox.outcome import BINDING_DOMAIN, JobFailed, Limits, Metering, ResultSignature, RunOutcome, _sha256
from enclaves.sandbox.profile import SANDBOX_UID
from enclaves.sealed import SealedInput

if TYPE_CHECKING:
    from enclaves.sandbox.launcher import Sandbox

logger = logging.getLogger(__name__)

_SIGSYS_EXIT = 128 + signal.SIGSYS


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


STARTUP_TIMEOUT = 60.0


class SandboxRun:
    """One sandbox, from its start to its teardown; runs exactly one job. ``start`` brings it to
    ready (keys made, runtime warmed up, nothing else), or only to hello, the enclave warming up
    while ``finish`` attests it; ``finish`` relays the key release and the inputs, reads and
    checks the result, and tears everything down whatever happens."""

    def __init__(self, sandbox: Sandbox, bundle: AlgorithmBundle, limits: Limits, template: list[str]) -> None:
        self.sandbox = sandbox
        self.bundle = bundle
        self.limits = limits
        self.template = template
        self.fds: list[int] = []
        self.timed_out = False
        self.timings: dict[str, float] = {}
        self.startup_cpu_ns = 0
        self.spawned_at = 0.0
        self.ready = False
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

    def start(self, *, until_ready: bool = True) -> None:
        """Spawn the sandbox and wait for its hello, and its ready (warm-up done) if
        ``until_ready``. On failure, tears down and records why (``finish`` then raises it)."""
        self.group = JobCgroup.create(
            f"job-{uuid.uuid4().hex}", CgroupLimits(self.limits.memory_bytes, self.limits.max_processes)
        )
        spawn_start = self.spawned_at = time.monotonic()
        try:
            self._spawn(self.group)
            hello = self._read_frame("hello")
            # bubblewrap's pid-namespace init, among others: if the sandbox dies on its own, that
            # init may be left to us (a subreaper) to reap, after it has left the cgroup.
            self.members.update(self.group.pids())
            kex, signing_key = hello.get("kex"), hello.get("sign")
            if hello["kind"] != "hello" or not isinstance(kex, bytes) or not isinstance(signing_key, bytes):
                raise JobFailed("protocol_error")
            if not 0 < len(kex) <= 1024 or len(signing_key) != 32:
                raise JobFailed("protocol_error")
            self.kex, self.signing_key = kex, signing_key
            if until_ready:
                if self._read_frame("ready")["kind"] != "ready":
                    raise JobFailed("protocol_error")
                self._mark_ready()
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
            if code == "sandbox_failed" and self.process is not None:
                # The runner writes nothing once job data exists, so its exit status is what an
                # operator has to go on.
                logger.warning("the sandbox ended without a result: exit status %s", self.process.returncode)
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

    def _mark_ready(self) -> None:
        """The enclave said ready: warm-up done, the release not yet read. What the sandbox
        spent until now is startup, which the job is not billed for."""
        self.ready = True
        if self.group is not None:
            self.startup_cpu_ns = self.group.usage().cpu_ns

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
        members |= group.kill_all()
        if self.process is not None:
            # bubblewrap is Popen's to reap: reaping it here would leave Popen a status of 0.
            members.discard(self.process.pid)
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
        args = [sandbox.bwrap, *(fill(arg, values) for arg in self.template)]
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
        if not self.ready:
            # A sandbox started for this job may still be warming up: that is startup, bounded by
            # the startup timeout as when it came before hello; the job's wall clock starts at ready.
            self.deadline = self.spawned_at + STARTUP_TIMEOUT
            answer = self._read_frame("ready")
            if answer["kind"] == "ready":
                self._mark_ready()
                self.deadline = time.monotonic() + self.limits.wall_seconds
        if self.ready:
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


def fill(argument: str, values: Mapping[str, str]) -> str:
    if "{" not in argument:
        return argument
    return argument.format_map(values)
