"""The wire between the launcher and the enclave process: length-prefixed CBOR maps over one Unix
stream socket.

Modelled on the Confidential Containers key broker protocol, with the launcher relaying:

1. enclave → launcher ``hello``: the enclave's ephemeral X25519 public key (DER, the key the data
   keys are wrapped to) and its ephemeral Ed25519 result-signing key, both made inside.
2. launcher → enclave ``release``: one JWE per data key, the context they are wrapped under (the
   attestation hash), the inputs (their sealed files' descriptors travel with the frame as
   SCM_RIGHTS; the sandbox has no path to them) and the job's parameters. Sent only after the key
   broker accepted the evidence.
3. enclave → launcher ``result`` (canonical JSON bytes and the enclave's signature over them) or
   ``error`` with a code from ``ENCLAVE_ERROR_CODES``: never a message, a value or a traceback.

Every frame is bounded (``MAX_FRAME``); the launcher treats anything else as a protocol error.
Also the result-signature format shared by the enclave and whoever checks a released result.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from typing import Any

import cbor2

MAX_FRAME = 32 * 1024 * 1024
_LENGTH = struct.Struct(">I")
RESULT_DOMAIN = b"redlake/sandbox/result/v1"

# What the enclave may say went wrong. Anything else it sends is a protocol error.
ENCLAVE_ERROR_CODES = frozenset(
    {
        "algorithm_error",  # run() raised, or the SQL failed
        "memory_limit",  # MemoryError inside the enclave
        "result_not_json",  # the result is not JSON (or has NaN/Infinity)
        "key_unwrap_failed",  # a wrapped key is not for this enclave key or context
        "input_tampered",  # a sealed input failed authentication
        "input_unreadable",  # decrypted, but not Parquet/CSV
        "protocol_error",
    }
)


class ProtocolError(Exception):
    """A frame that is missing, too large or not what this step expects."""


def write_frame(fd: int, message: dict[str, Any]) -> None:
    body = cbor2.dumps(message)
    if len(body) > MAX_FRAME:
        raise ProtocolError("frame too large")
    data = memoryview(_LENGTH.pack(len(body)) + body)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def send_frame(fd: int, message: dict[str, Any], *, fds: list[int]) -> None:
    """``write_frame`` over a Unix socket, passing ``fds`` (SCM_RIGHTS) with the first bytes."""
    body = cbor2.dumps(message)
    if len(body) > MAX_FRAME:
        raise ProtocolError("frame too large")
    data = _LENGTH.pack(len(body)) + body
    with socket.socket(fileno=os.dup(fd)) as channel:
        sent = socket.send_fds(channel, [data], fds) if fds else channel.send(data)
        channel.sendall(data[sent:])


def read_frame_with_fds(fd: int, kind: str, max_fds: int) -> tuple[dict[str, Any], list[int]]:
    """``read_frame`` that also collects the file descriptors sent with it."""
    with socket.socket(fileno=os.dup(fd)) as channel:
        data, fds, _, _ = socket.recv_fds(channel, 1 << 16, max_fds)
    if not data:
        raise ProtocolError("the other side closed the channel")
    buffer = bytearray(data)
    while len(buffer) < _LENGTH.size:
        buffer += read_exactly(fd, _LENGTH.size - len(buffer))
    (length,) = _LENGTH.unpack(buffer[: _LENGTH.size])
    if length > MAX_FRAME:
        raise ProtocolError("frame too large")
    missing = _LENGTH.size + length - len(buffer)
    if missing < 0:
        raise ProtocolError("more than one frame")
    body = bytes(buffer[_LENGTH.size :]) + (read_exactly(fd, missing) if missing else b"")
    return decode_frame(body, kind), fds


def read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise ProtocolError("the other side closed the channel")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def decode_frame(body: bytes, kind: str) -> dict[str, Any]:
    try:
        message = cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError("undecodable frame") from exc
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ProtocolError("a frame is a map with a kind")
    if message["kind"] != kind and message["kind"] != "error":
        raise ProtocolError(f"expected {kind}")
    return message


def read_frame(fd: int, kind: str) -> dict[str, Any]:
    (length,) = _LENGTH.unpack(read_exactly(fd, _LENGTH.size))
    if length > MAX_FRAME:
        raise ProtocolError("frame too large")
    return decode_frame(read_exactly(fd, length), kind)


def result_signing_payload(result: bytes, context: str) -> bytes:
    """What the enclave's Ed25519 key signs: the result's SHA-256 under the attestation context
    (the verified evidence's attestation hash), so a signature cannot be moved to another run."""
    digest = hashlib.sha256(result).digest()
    encoded = context.encode()
    return RESULT_DOMAIN + len(encoded).to_bytes(8, "big") + encoded + digest
