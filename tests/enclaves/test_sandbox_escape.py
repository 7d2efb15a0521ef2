"""The escape suite: algorithms that try to leave the sandbox, run for real under bubblewrap,
seccomp and a cgroup. Each is stopped, and the failure says why with a fixed message that
carries nothing of the data."""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest
from django.conf import settings

from enclaves.bundle import AlgorithmBundle
from enclaves.sandbox import FAILURE_MESSAGES, JobFailed, Limits
from enclaves.sandbox.cgroups import JobCgroup
from tests.enclaves.conftest import NUMBER_RESULT, Harness, left_behind, python_bundle, requires_sandbox

pytestmark = requires_sandbox

SECRET_VALUE = 987654.321  # in the sealed table; must never appear in a failure


def _table() -> pa.Table:
    return pa.table({"salary": [SECRET_VALUE, 1.0, 2.0]})


def _fails(harness: Harness, source: str, *, limits: Limits | None = None) -> JobFailed:
    bundle = python_bundle(source, NUMBER_RESULT)
    inputs = [harness.seal_table("people", _table())]
    kwargs = {"limits": limits} if limits is not None else {}
    with pytest.raises(JobFailed) as caught:
        harness.run(bundle, inputs, **kwargs)
    failure = caught.value
    assert failure.message == FAILURE_MESSAGES[failure.code]
    assert str(SECRET_VALUE) not in str(failure)
    assert "987654" not in repr(failure.__dict__)
    return failure


# Each algorithm reads the sealed table first, so the data was decrypted when it misbehaved.
PRELUDE = "def run(tables, params):\n    secret = tables['people'].column('salary')[0].as_py()\n"


def test_an_af_inet_socket_kills_the_algorithm(harness: Harness) -> None:
    failure = _fails(harness, PRELUDE + "    import socket\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n")
    assert failure.code == "sandbox_violation"


def test_connecting_to_postgresql_on_loopback_kills_the_algorithm(harness: Harness) -> None:
    source = PRELUDE + (
        "    import socket\n"
        "    s = socket.create_connection(('127.0.0.1', 5432), timeout=1)\n"
        "    s.sendall(str(secret).encode())\n"
        "    return {'value': 1}\n"
    )
    assert _fails(harness, source).code == "sandbox_violation"


def test_an_ipv6_or_netlink_socket_kills_the_algorithm(harness: Harness) -> None:
    source = PRELUDE + "    import socket\n    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
    assert _fails(harness, source).code == "sandbox_violation"


def test_the_postgresql_unix_socket_is_not_there(harness: Harness) -> None:
    # AF_UNIX sockets are allowed (libraries use socketpairs); no host socket path is mounted.
    source = PRELUDE + (
        "    import socket\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect('/var/run/postgresql/.s.PGSQL.5432')\n"
        "    return {'value': 1}\n"
    )
    assert _fails(harness, source).code == "algorithm_error"


@pytest.mark.parametrize("target", ["vault", "kek", "launcher_key", "root", "shadow", "worktree"])
def test_host_secrets_are_not_readable(harness: Harness, tmp_path: Path, target: str) -> None:
    kek = tmp_path / "keys" / "kek"
    kek.parent.mkdir()
    kek.write_text("kek-secret")
    kek.chmod(0o644)  # world-readable on the host: only the sandbox's mount table keeps it out
    paths = {
        "vault": Path(settings.VAR_DIR),
        "kek": kek,
        "launcher_key": harness.directory,
        "root": Path("/root"),
        "shadow": Path("/etc/shadow"),
        "worktree": Path(__file__).resolve().parents[2] / "dataspace" / "settings.py",
    }
    path = paths[target]
    path.mkdir(parents=True, exist_ok=True) if target == "vault" else None
    assert path.exists()
    reader = "os.listdir(path)" if path.is_dir() else "open(path, 'rb').read()"
    source = PRELUDE + f"    import os\n    path = {str(path)!r}\n    {reader}\n    return {{'value': 1}}\n"
    assert _fails(harness, source).code == "algorithm_error"


def test_the_sandbox_sees_only_its_runtime_and_its_work_dir(harness: Harness) -> None:
    source = (
        "import os\n"
        "def run(tables, params):\n"
        "    status = open('/proc/self/status').read()\n"
        "    caps = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0]\n"
        "    interfaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
        "    return {'root': sorted(os.listdir('/')), 'job': sorted(os.listdir('/job')),\n"
        "            'uid': os.getuid(),\n"
        "            'caps': caps, 'interfaces': interfaces, 'hostname': os.uname().nodename}\n"
    )
    strings = {"type": "array", "items": {"type": "string"}}
    schema = {
        "type": "object",
        "properties": {
            "root": strings, "job": strings, "uid": {"type": "integer"},
            "caps": {"type": "string"}, "interfaces": strings, "hostname": {"type": "string"},
        },
    }  # fmt: skip
    outcome = harness.run(python_bundle(source, schema), [harness.seal_table("t", _table())])
    seen = outcome.result
    assert seen["root"] == ["dev", "job", "lib", "lib64", "opt", "proc", "usr"]
    assert seen["job"] == ["bundle.json", "exec.bpf", "work"]
    assert seen["uid"] == 65534
    assert seen["caps"] == "0000000000000000"
    assert seen["interfaces"] == ["lo"]
    assert seen["hostname"] == "enclave"


def test_the_algorithm_runs_as_nobody_on_the_host(harness: Harness) -> None:
    source = "import time\ndef run(tables, params):\n    time.sleep(2)\n    return {'value': 1}\n"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(harness.run, python_bundle(source, NUMBER_RESULT), [harness.seal_table("t", _table())])
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while not seen and not running.done() and time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                with contextlib.suppress(OSError):
                    if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"/opt/python/bin/"):
                        status = (proc / "status").read_text().splitlines()
                        fields = [line.split(":", 1) for line in status]
                        seen = {name: value.split()[0] for name, value in fields if value.split()}
            if not seen:
                time.sleep(0.005)  # polling for the condition; the loop ends at its deadline
        assert running.result().result == {"value": 1}
    assert seen["Uid"] == "65534"  # the real uid, as the host sees it
    assert seen["Gid"] == "65534"
    assert seen["NoNewPrivs"] == "1"
    assert seen["Seccomp"] == "2"  # filter mode
    assert seen["CapEff"] == seen["CapPrm"] == seen["CapBnd"] == "0000000000000000"


@pytest.mark.parametrize("target", ["/escape", "/opt/site/escape", "/job/escape", "/usr/lib/escape", "/dev/shm/x"])
def test_writing_outside_the_work_dir_fails(harness: Harness, target: str) -> None:
    source = PRELUDE + f"    open({target!r}, 'w').write(str(secret))\n    return {{'value': 1}}\n"
    assert _fails(harness, source).code == "algorithm_error"


def test_the_work_dir_is_private_to_one_job(harness: Harness) -> None:
    write = "def run(tables, params):\n    open('/job/work/left-behind', 'w').write('x')\n    return {'value': 1}\n"
    harness.run(python_bundle(write, NUMBER_RESULT), [harness.seal_table("t", _table())])
    look = "import os\ndef run(tables, params):\n    return {'value': float(os.path.exists('/job/work/left-behind'))}\n"
    outcome = harness.run(python_bundle(look, NUMBER_RESULT), [harness.seal_table("t", _table())])
    assert outcome.result == {"value": 0.0}


def test_a_fork_bomb_hits_the_process_limit(harness: Harness) -> None:
    source = PRELUDE + "    import os\n    while True:\n        os.fork()\n"
    assert _fails(harness, source).code == "process_limit"


def test_allocating_past_the_memory_limit_is_killed(harness: Harness) -> None:
    source = PRELUDE + "    hog = bytearray(b'\\x01') * (1024 * 1024 * 1024)\n    return {'value': len(hog)}\n"
    limits = Limits(memory_bytes=256 * 1024 * 1024, max_processes=32, wall_seconds=60.0)
    assert _fails(harness, source, limits=limits).code == "memory_limit"


def test_a_loop_forever_hits_the_wall_clock_limit(harness: Harness) -> None:
    source = PRELUDE + "    while True:\n        pass\n"
    limits = Limits(memory_bytes=256 * 1024 * 1024, max_processes=32, wall_seconds=3.0)
    assert _fails(harness, source, limits=limits).code == "wall_clock_limit"


def test_executing_a_shell_kills_the_algorithm(harness: Harness) -> None:
    source = PRELUDE + "    import os\n    os.execv('/bin/sh', ['sh', '-c', 'echo ' + str(secret)])\n"
    assert _fails(harness, source).code == "sandbox_violation"


def test_executing_the_interpreter_again_kills_the_algorithm(harness: Harness) -> None:
    source = PRELUDE + "    import os, sys\n    os.execv(sys.executable, [sys.executable, '-c', 'pass'])\n"
    assert _fails(harness, source).code == "sandbox_violation"


def test_a_subprocess_dies_at_its_execve(harness: Harness) -> None:
    # The exec filter is inherited: a forked child is killed by SIGSYS at its execve, so the
    # program never starts (the algorithm itself lives on and sees the signal).
    source = (
        "import subprocess, sys\n"
        "def run(tables, params):\n"
        "    done = subprocess.run([sys.executable, '-c', 'print(1)'], capture_output=True)\n"
        "    return {'value': done.returncode, 'out': done.stdout.decode()}\n"
    )
    schema = {"type": "object", "properties": {"value": {"type": "number"}, "out": {"type": "string"}}}
    outcome = harness.run(python_bundle(source, schema), [harness.seal_table("t", _table())])
    assert outcome.result == {"value": -31, "out": ""}  # -SIGSYS


def test_returning_the_raw_table_is_refused_by_the_output_schema(harness: Harness) -> None:
    source = "def run(tables, params):\n    return {'value': tables['people'].to_pylist()}\n"
    assert _fails(harness, source).code == "output_schema_mismatch"


def test_a_result_larger_than_declared_is_refused(harness: Harness) -> None:
    source = "def run(tables, params):\n    return {'value': 1.0, 'padding': 'x' * 100000}\n"
    schema = {"type": "object", "properties": {"value": {"type": "number"}, "padding": {"type": "string"}}}
    bundle = python_bundle(source, schema)
    with pytest.raises(JobFailed) as caught:
        harness.run(bundle, [harness.seal_table("people", _table())])
    assert caught.value.code == "output_too_large"


def test_an_algorithm_error_says_nothing_of_its_message(harness: Harness) -> None:
    failure = _fails(harness, PRELUDE + "    raise ValueError(f'the secret is {secret}')\n")
    assert failure.code == "algorithm_error"


def test_nothing_of_a_job_is_left_running_or_mounted(harness: Harness, created_cgroups: list[JobCgroup]) -> None:
    source = (
        PRELUDE
        + "    import os\n    if os.fork() == 0:\n        import time\n        time.sleep(3600)\n    return {'value': 1}\n"
    )
    # Other sandboxes (other tests running beside this one, daemons running as nobody) may live on
    # this host: only this process's descendants count (it is a subreaper: orphans come back to it),
    # and only the job cgroup this job created.
    outcome = harness.run(python_bundle(source, NUMBER_RESULT), [harness.seal_table("people", _table())])
    assert outcome.result == {"value": 1}
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_sandboxed(p) and _is_ours(p)]
    assert leftovers == []
    assert len(created_cgroups) == 1
    assert left_behind(created_cgroups) == []


def _is_ours(proc: Path) -> bool:
    """Whether ``proc`` descends from this test process."""
    me, pid = os.getpid(), proc.name
    while pid not in ("0", "1"):
        try:
            # The parent pid is the second field after the parenthesised command name.
            pid = (Path("/proc", pid) / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            return False
        if pid == str(me):
            return True
    return False


def _is_sandboxed(proc: Path) -> bool:
    try:
        status = (proc / "status").read_text()
    except OSError:
        return False
    return any(line.split()[1:2] == ["65534"] for line in status.splitlines() if line.startswith("Uid:"))


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) AS n FROM read_csv('/etc/passwd')",
        "SELECT count(*) AS n FROM read_text('/proc/self/environ')",
        "SELECT count(*) AS n FROM read_parquet('https://example.org/data.parquet')",
        "INSTALL httpfs",
        "COPY people TO '/job/work/people.csv'",
        "ATTACH '/job/work/copy.duckdb' AS copy",
        "SET enable_external_access = true",
    ],
)
def test_a_sql_bundle_sees_only_its_tables(harness: Harness, query: str) -> None:
    schema = {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object"}}}}
    bundle = AlgorithmBundle(kind="sql", source=query, output_schema=schema, max_output_bytes=4096)
    with pytest.raises(JobFailed) as caught:
        harness.run(bundle, [harness.seal_table("people", _table())])
    assert caught.value.code == "algorithm_error"


# x86-64 syscall numbers: each is denied by the confinement filter and kills the algorithm.
DENIED = {"ptrace": 101, "mount": 165, "keyctl": 250, "unshare": 272, "bpf": 321, "io_uring_setup": 425}


@pytest.mark.parametrize("name", sorted(DENIED))
def test_a_denied_system_call_kills_the_algorithm(harness: Harness, name: str) -> None:
    source = (
        PRELUDE
        + f"    import ctypes\n    ctypes.CDLL(None).syscall({DENIED[name]}, 0, 0, 0, 0, 0)\n    return {{'value': 1}}\n"
    )
    assert _fails(harness, source).code == "sandbox_violation"


def test_an_allowed_system_call_through_the_same_path_works(harness: Harness) -> None:
    source = "import ctypes\ndef run(tables, params):\n    return {'value': ctypes.CDLL(None).syscall(39)}\n"  # getpid
    outcome = harness.run(python_bundle(source, NUMBER_RESULT), [harness.seal_table("people", _table())])
    assert outcome.result["value"] > 1  # pid 1 is the namespace's init; the runner is its child
