"""Algorithm bundles: what a consumer submits and a provider approves, and its measurement.

A bundle is either a Python module defining ``run(tables, params) -> result`` together with a
lockfile naming the distributions of the worker's runtime it may import (exact versions, checked
against what is installed), or a DuckDB SQL template whose ``$name`` parameters are bound from
the job's parameters. Both declare the schema of their result and its maximum size.

Invariants:
- One bundle has one byte form (``canonical_bytes``: sorted-key compact JSON with a format tag);
  ``from_canonical`` refuses any other encoding of the same content, so the digest names the
  bundle and nothing else.
- The measurement is SHA-256 over the bundle's bytes *and* the sandbox profile's bytes (runtime
  image hash, confinement arguments, seccomp filter hashes): changing the sandbox changes the
  measurement, and a provider's approval no longer matches.
- Results are checked against the declared schema and size by the launcher, outside the enclave;
  a refusal names the schema path that failed, never a value.
"""

from __future__ import annotations

import ast
import enum
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

BUNDLE_FORMAT = "redlake/algorithm-bundle/v1"
MEASUREMENT_DOMAIN = b"redlake/sandbox/measurement/v1"
MAX_SOURCE_BYTES = 256 * 1024
MAX_OUTPUT_BYTES_LIMIT = 16 * 1024 * 1024
MAX_SCHEMA_DEPTH = 8
_DIST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9.+!_-]{1,64}$")
_SCALAR_TYPES = frozenset({"number", "integer", "string", "boolean", "null"})


class BundleKind(enum.StrEnum):
    PYTHON = "python"
    SQL = "sql"


class BundleInvalid(ValueError):
    """A bundle that cannot be measured or run; ``code`` is stable, ``field`` names the part."""

    def __init__(self, code: str, field_name: str, message: str) -> None:
        self.code = code
        self.field = field_name
        super().__init__(f"{code} ({field_name}): {message}")


class OutputRejected(Exception):
    """A result the launcher will not release: ``code`` is ``output_schema_mismatch`` or
    ``output_too_large``; ``path`` is a schema path, never a value."""

    def __init__(self, code: str, path: str = "$") -> None:
        self.code = code
        self.path = path
        super().__init__(f"{code} at {path}")


def normalise_distribution(name: str) -> str:
    """PEP 503 normalised distribution name (``Scikit_Learn`` → ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class AlgorithmBundle:
    kind: BundleKind
    source: str
    output_schema: Mapping[str, Any]
    max_output_bytes: int
    lockfile: Mapping[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", BundleKind(self.kind))
        lock = {normalise_distribution(k): v for k, v in dict(self.lockfile).items()}
        object.__setattr__(self, "lockfile", MappingProxyType(dict(sorted(lock.items()))))
        # Freeze the schema by a JSON round trip (also proves it is JSON).
        try:
            schema = json.loads(canonical_json(dict(self.output_schema)))
        except (TypeError, ValueError) as exc:
            raise BundleInvalid("bundle_invalid", "output_schema", "not a JSON object") from exc
        object.__setattr__(self, "output_schema", MappingProxyType(schema))
        self._validate()

    def _validate(self) -> None:
        if len(self.name) > 200:
            raise BundleInvalid("bundle_invalid", "name", "at most 200 characters")
        if not self.source.strip() or len(self.source.encode()) > MAX_SOURCE_BYTES:
            raise BundleInvalid("bundle_invalid", "source", f"1 to {MAX_SOURCE_BYTES} bytes")
        if not 1 <= self.max_output_bytes <= MAX_OUTPUT_BYTES_LIMIT:
            raise BundleInvalid("bundle_invalid", "max_output_bytes", f"1 to {MAX_OUTPUT_BYTES_LIMIT}")
        for dist, version in self.lockfile.items():
            if not _DIST_NAME.match(dist) or not isinstance(version, str) or not _VERSION.match(version):
                raise BundleInvalid("bundle_invalid", "lockfile", f"{dist!r}: an exact version string is required")
        _check_schema(dict(self.output_schema), "$", 0)
        if self.kind is BundleKind.PYTHON:
            _check_python_source(self.source)
        elif self.lockfile:
            raise BundleInvalid("bundle_invalid", "lockfile", "a SQL bundle runs on DuckDB alone; no lockfile")

    def as_document(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "kind": str(self.kind),
            "name": self.name,
            "source": self.source,
            "lockfile": dict(self.lockfile),
            "output_schema": dict(self.output_schema),
            "max_output_bytes": self.max_output_bytes,
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.as_document())

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()

    @classmethod
    def from_canonical(cls, raw: bytes) -> AlgorithmBundle:
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise BundleInvalid("bundle_invalid", "$", "not JSON") from exc
        if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
            raise BundleInvalid("bundle_invalid", "format", f"must be {BUNDLE_FORMAT}")
        try:
            bundle = cls(
                kind=BundleKind(document["kind"]),
                source=document["source"],
                output_schema=document["output_schema"],
                max_output_bytes=document["max_output_bytes"],
                lockfile=document.get("lockfile", {}),
                name=document.get("name", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BundleInvalid):
                raise
            raise BundleInvalid("bundle_invalid", "$", "missing or mistyped field") from exc
        if bundle.canonical_bytes() != raw:
            raise BundleInvalid("bundle_invalid", "$", "not in canonical form")
        return bundle


def _check_python_source(source: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise BundleInvalid("bundle_invalid", "source", f"syntax error on line {exc.lineno}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run":
            positional = node.args.posonlyargs + node.args.args
            if len(positional) >= 2 or node.args.vararg is not None:
                return
            raise BundleInvalid("bundle_invalid", "source", "run must take (tables, params)")
    raise BundleInvalid("bundle_invalid", "source", "the module must define run(tables, params) at top level")


def _check_schema(schema: Any, path: str, depth: int) -> None:
    """The subset of JSON Schema a result may declare: object (properties, required,
    additionalProperties false), array (items, maxItems), number, integer, string (maxLength),
    boolean, null."""
    if depth > MAX_SCHEMA_DEPTH:
        raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: nested too deep")
    if not isinstance(schema, dict):
        raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: a schema is an object")
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: properties must be an object")
        required = schema.get("required", [])
        if not isinstance(required, list) or not set(required) <= set(properties):
            raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: required names unknown properties")
        for name, sub in properties.items():
            _check_schema(sub, f"{path}.{name}", depth + 1)
    elif kind == "array":
        if "items" not in schema:
            raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: an array declares its items")
        max_items = schema.get("maxItems")
        if max_items is not None and (not isinstance(max_items, int) or max_items < 0):
            raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: maxItems must be a count")
        _check_schema(schema["items"], f"{path}[]", depth + 1)
    elif kind not in _SCALAR_TYPES:
        raise BundleInvalid("bundle_invalid", "output_schema", f"{path}: unsupported type {kind!r}")


def check_output(result_bytes: bytes, bundle: AlgorithmBundle) -> Any:
    """The result a launcher may release: at most ``max_output_bytes`` of canonical JSON that
    matches the declared schema. Returns the decoded value."""
    if len(result_bytes) > bundle.max_output_bytes:
        raise OutputRejected("output_too_large")
    try:
        value = json.loads(result_bytes, parse_constant=_refuse_constant)
    except ValueError:
        raise OutputRejected("output_schema_mismatch") from None
    if canonical_json(value) != result_bytes:
        raise OutputRejected("output_schema_mismatch")
    _match(value, dict(bundle.output_schema), "$")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _match(value: Any, schema: Mapping[str, Any], path: str) -> None:
    kind = schema.get("type")
    ok: bool
    if kind == "object":
        if not isinstance(value, dict):
            raise OutputRejected("output_schema_mismatch", path)
        properties: Mapping[str, Any] = schema.get("properties", {})
        missing = set(schema.get("required", [])) - set(value)
        if missing:
            raise OutputRejected("output_schema_mismatch", f"{path}.{sorted(missing)[0]}")
        for key, item in value.items():
            if key not in properties:
                # Extra keys are refused (additionalProperties false): an algorithm cannot smuggle
                # a field past a provider who approved a schema.
                raise OutputRejected("output_schema_mismatch", path)
            _match(item, properties[key], f"{path}.{key}")
        return
    if kind == "array":
        if not isinstance(value, list):
            raise OutputRejected("output_schema_mismatch", path)
        max_items = schema.get("maxItems")
        if max_items is not None and len(value) > max_items:
            raise OutputRejected("output_schema_mismatch", path)
        for item in value:
            _match(item, schema["items"], f"{path}[]")
        return
    checks: Mapping[str, Callable[[Any], bool]] = {
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str) and len(v) <= schema.get("maxLength", len(v)),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    ok = checks[str(kind)](value)
    if not ok:
        raise OutputRejected("output_schema_mismatch", path)


def validate_lockfile(lockfile: Mapping[str, str], installed: Mapping[str, str]) -> None:
    """Every locked distribution is installed in the worker's runtime at exactly that version."""
    for dist, version in lockfile.items():
        have = installed.get(normalise_distribution(dist))
        if have is None:
            raise BundleInvalid("lockfile_mismatch", "lockfile", f"{dist} is not in the worker's runtime")
        if have != version:
            raise BundleInvalid("lockfile_mismatch", "lockfile", f"{dist} is {have} in the runtime, not {version}")


def measurement(bundle: AlgorithmBundle, profile_bytes: bytes) -> bytes:
    """SHA-256 over the bundle and the sandbox profile (both canonical, each length-prefixed)."""
    h = hashlib.sha256(MEASUREMENT_DOMAIN)
    for part in (bundle.canonical_bytes(), profile_bytes):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.digest()
