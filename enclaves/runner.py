"""The enclave process: what runs inside the sandbox, from key generation to the signed result.

Started by the launcher as ``python -I -S -B -c <boot> <channel_fd> <memory_bytes>`` inside
bubblewrap. In order, and before it reads anything from the job:

1. loads the exec filter (``/job/exec.bpf``): from here on no program can be executed;
2. points stdout and stderr at /dev/null (what an algorithm prints goes nowhere: it could be data);
3. generates its ephemeral X25519 key (data keys are wrapped to it) and Ed25519 key (it signs the
   result) and sends both public halves (``hello``);
4. warms up (imports, one JWE unwrap, the readers) and says ``ready``;

then reads ``release``: unwraps each data key (JWE, bound to the attestation context),
decrypts the sealed inputs whose descriptors came with it, runs the algorithm, and sends the
canonical JSON result with its signature, or an error code. Data keys and plaintext live only in
this process's memory; nothing is written outside the private work directory.
"""

from __future__ import annotations

import ctypes
import datetime
import decimal
import io
import json
import os
import resource
import sys
import types
from pathlib import Path
from typing import Any

EXEC_FILTER = Path("/job/exec.bpf")
BUNDLE = Path("/job/bundle.json")
PR_SET_SECCOMP = 22
MAX_INPUTS = 64
SECCOMP_MODE_FILTER = 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class EnclaveError(Exception):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


def install_exec_filter(bpf: bytes) -> None:
    """Load the launcher's exec filter (see ``enclaves.sandbox.seccomp``) into this process."""
    count = len(bpf) // ctypes.sizeof(_SockFilter)
    if count == 0 or len(bpf) % ctypes.sizeof(_SockFilter):
        raise RuntimeError("malformed seccomp program")
    instructions = (_SockFilter * count).from_buffer_copy(bpf)
    program = _SockFprog(count, ctypes.cast(instructions, ctypes.POINTER(_SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def _silence_output() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _import_keywrap() -> types.ModuleType:
    # ``enclaves.attestation``'s __init__ imports every hardware verifier (dcap-qvl, omne-attest),
    # which this runtime does not mount. The key unwrap needs none of them: register the package
    # as a bare namespace so that importing ``keywrap`` does not run the package's __init__.
    import importlib

    package = types.ModuleType("enclaves.attestation")
    package.__path__ = [str(Path(__file__).resolve().parent / "attestation")]
    sys.modules.setdefault("enclaves.attestation", package)
    return importlib.import_module("enclaves.attestation.keywrap")


def _plain(value: Any) -> Any:
    """A result as plain JSON types: numpy scalars and arrays through ``tolist``, Decimals as
    floats, dates as ISO strings, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date | datetime.datetime | datetime.time):
        return value.isoformat()
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _plain(value.tolist())
    return value


def _read_fd(fd: int) -> bytes:
    with os.fdopen(fd, "rb", closefd=True) as handle:
        return handle.read()


def _load_tables(inputs: list[dict[str, Any]], fds: list[int], keys: dict[str, bytes]) -> dict[str, Any]:
    import pyarrow
    import pyarrow.csv
    import pyarrow.parquet

    from enclaves.sealed import InputFormat, SealedBlobError, open_sealed

    tables: dict[str, Any] = {}
    for spec in inputs:
        sealed = _read_fd(fds[int(spec["fd"])])
        try:
            plain = open_sealed(sealed, key=keys[spec["key_id"]], blob_name=str(spec["blob_name"]))
        except (SealedBlobError, KeyError):
            raise EnclaveError("input_tampered") from None
        try:
            if spec["format"] == InputFormat.CSV:
                tables[spec["name"]] = pyarrow.csv.read_csv(io.BytesIO(plain))
            else:
                tables[spec["name"]] = pyarrow.parquet.read_table(pyarrow.BufferReader(plain))
        except (pyarrow.ArrowException, OSError, ValueError):
            raise EnclaveError("input_unreadable") from None
        del plain
    return tables


def _run_python(source: str, tables: dict[str, Any], params: Any) -> Any:
    module = types.ModuleType("algorithm")
    exec(compile(source, "<algorithm>", "exec"), module.__dict__)  # noqa: S102 - the approved bundle
    return module.run(tables, params)


def _run_sql(source: str, tables: dict[str, Any], params: Any, memory_bytes: int) -> Any:
    import duckdb

    config: dict[str, str | bool | int | float | list[str]] = {
        # No files, no network, no extensions: the query sees the registered tables and nothing else.
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": f"{max(memory_bytes * 3 // 5, 64 << 20)}B",
        "temp_directory": "/job/work/duckdb",
    }
    connection = duckdb.connect(":memory:", config=config)
    try:
        for name, table in tables.items():
            connection.register(name, table)
        cursor = connection.execute(source, params if params else None)
        columns = [description[0] for description in cursor.description or []]
        rows = cursor.fetchall()
    finally:
        connection.close()
    return {"rows": [dict(zip(columns, row, strict=True)) for row in rows]}


def _execute(
    release: dict[str, Any], fds: list[int], bundle: Any, private_key: Any, keywrap: types.ModuleType, memory_bytes: int
) -> bytes:
    from enclaves.bundle import BundleKind, canonical_json

    context = str(release["context"])
    keys: dict[str, bytes] = {}
    for key_id, token in dict(release["tokens"]).items():
        try:
            keys[str(key_id)] = keywrap.unwrap_data_key(str(token), private_key, context=context)
        except keywrap.UnwrapFailed:
            raise EnclaveError("key_unwrap_failed") from None
    tables = _load_tables(list(release["inputs"]), fds, keys)
    keys.clear()
    params = json.loads(release["params"])
    try:
        if bundle.kind is BundleKind.SQL:
            result = _run_sql(bundle.source, tables, params, memory_bytes)
        else:
            result = _run_python(bundle.source, tables, params)
    except MemoryError:
        raise EnclaveError("memory_limit") from None
    except BaseException:
        raise EnclaveError("algorithm_error") from None
    try:
        return canonical_json(_plain(result))
    except (TypeError, ValueError, RecursionError):
        raise EnclaveError("result_not_json") from None


def _warm_up(keywrap: types.ModuleType, source: str, *, sql: bool) -> None:
    """Between hello and ready, with no job data and no job key in reach (the release is not read
    until after ready): import and exercise once what every job uses (the JWE unwrap, Parquet and
    CSV readers, DuckDB) and import the modules the algorithm's own import statements name. The
    launcher meters all of this as startup, and a pre-started sandbox has it done before its job
    arrives."""
    import pyarrow
    import pyarrow.csv
    import pyarrow.parquet

    private, public = keywrap.generate_ephemeral_key()
    keywrap.unwrap_data_key(
        keywrap.wrap_data_key(os.urandom(32), public, context="warm-up"), private, context="warm-up"
    )
    sample = pyarrow.table({"x": [1.0]})
    buffer = pyarrow.BufferOutputStream()
    pyarrow.parquet.write_table(sample, buffer)
    pyarrow.parquet.read_table(pyarrow.BufferReader(buffer.getvalue()))
    pyarrow.csv.read_csv(io.BytesIO(b"x\n1\n"))
    if sql:
        import duckdb

        connection = duckdb.connect(":memory:")
        connection.register("sample", sample)
        connection.execute("SELECT sum(x) FROM sample").fetchall()
        connection.close()
        return
    import ast
    import importlib

    for node in ast.parse(source).body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: S112 - the algorithm's own run reports it
                continue


def main(argv: list[str]) -> int:
    install_exec_filter(EXEC_FILTER.read_bytes())
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _silence_output()
    channel, memory_bytes = int(argv[0]), int(argv[1])

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from enclaves.bundle import AlgorithmBundle, BundleKind
    from enclaves.protocol import ProtocolError, read_frame_with_fds, result_signing_payload, write_frame

    keywrap = _import_keywrap()
    bundle = AlgorithmBundle.from_canonical(BUNDLE.read_bytes())
    private_key, public_der = keywrap.generate_ephemeral_key()
    signing_key = Ed25519PrivateKey.generate()
    signing_public = signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    write_frame(channel, {"kind": "hello", "kex": public_der, "sign": signing_public})
    # Warming up after hello lets a sandbox started for its job import while the launcher attests
    # it and the broker releases the keys; the release waits unread in the channel until ``ready``.
    _warm_up(keywrap, bundle.source, sql=bundle.kind is BundleKind.SQL)
    write_frame(channel, {"kind": "ready"})
    try:
        release, fds = read_frame_with_fds(channel, "release", MAX_INPUTS)
        if release["kind"] != "release":
            return 3
        result = _execute(release, fds, bundle, private_key, keywrap, memory_bytes)
    except EnclaveError as exc:
        write_frame(channel, {"kind": "error", "code": exc.code})
        return 2
    except (ProtocolError, KeyError, TypeError, ValueError, IndexError):
        write_frame(channel, {"kind": "error", "code": "protocol_error"})
        return 2
    signature = signing_key.sign(result_signing_payload(result, str(release["context"])))
    write_frame(channel, {"kind": "result", "result": result, "signature": signature})
    return 0
