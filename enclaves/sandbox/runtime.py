"""The runtime image a sandbox sees: one interpreter, the distributions a bundle may import, and
this package; and the hash that names them.

Only the distributions the runner needs (``RUNNER_DISTRIBUTIONS``), the bundle's lockfile and
their declared dependencies are mounted, each by the top-level entries its RECORD lists: an
algorithm cannot import what its lockfile did not name (and its provider did not approve).

The image hash covers the interpreter binary, libpython and every file of the standard library
(contents), each mounted distribution's name, version and RECORD (which lists a SHA-256 of every
file it installed), and the source of this package. Any of them changing changes every
measurement taken on this runtime.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from enclaves.bundle import BundleInvalid, normalise_distribution, validate_lockfile

IMAGE_DOMAIN = b"redlake/sandbox/runtime-image/v1"
# What the in-sandbox runner itself imports: the key unwrap (jwcrypto → cryptography), the
# protocol (cbor2) and the tables handed to algorithms (pyarrow).
RUNNER_DISTRIBUTIONS = ("cbor2", "cryptography", "jwcrypto", "pyarrow")
SQL_DISTRIBUTIONS = ("duckdb",)
_PYCACHE = frozenset({"__pycache__"})
_STDLIB_SKIP = frozenset({"site-packages", "__pycache__", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"})


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    top_level: tuple[str, ...]
    record_sha256: bytes
    requires: tuple[str, ...]


class RuntimeImage:
    """The interpreter at ``prefix`` (its ``bin/python3.X`` and ``lib/``), the distributions
    installed in ``site_packages`` and the ``enclaves`` package at ``package_dir``."""

    def __init__(self, *, prefix: Path, site_packages: Path, package_dir: Path) -> None:
        self.prefix = prefix.resolve()
        self.site_packages = site_packages.resolve()
        self.package_dir = package_dir.resolve()
        self.version = f"{sys.version_info.major}.{sys.version_info.minor}"
        self.executable_name = f"python{self.version}"
        self._installed: dict[str, Distribution] | None = None

    @classmethod
    def current(cls) -> RuntimeImage:
        """The interpreter and the site-packages this process runs on."""
        return cls(
            prefix=Path(sys.base_prefix),
            site_packages=Path(sysconfig.get_paths()["purelib"]),
            package_dir=Path(__file__).resolve().parents[1],
        )

    @property
    def executable(self) -> Path:
        return self.prefix / "bin" / self.executable_name

    @property
    def stdlib(self) -> Path:
        return self.prefix / "lib" / self.executable_name

    def installed(self) -> Mapping[str, Distribution]:
        if self._installed is None:
            found: dict[str, Distribution] = {}
            for dist in importlib.metadata.distributions(path=[str(self.site_packages)]):
                parsed = _distribution(dist)
                if parsed is not None:
                    found.setdefault(parsed.name, parsed)
            self._installed = found
        return self._installed

    def versions(self) -> dict[str, str]:
        return {name: dist.version for name, dist in self.installed().items()}

    def closure(self, lockfile: Mapping[str, str], *, sql: bool = False) -> list[Distribution]:
        """The distributions mounted for a bundle: the runner's, the lockfile's (validated against
        what is installed) and everything they declare as dependencies, sorted by name."""
        installed = self.installed()
        validate_lockfile(lockfile, self.versions())
        wanted = [*RUNNER_DISTRIBUTIONS, *(SQL_DISTRIBUTIONS if sql else ()), *lockfile]
        seen: dict[str, Distribution] = {}
        queue = [normalise_distribution(name) for name in wanted]
        while queue:
            name = queue.pop()
            if name in seen:
                continue
            dist = installed.get(name)
            if dist is None:
                raise BundleInvalid("lockfile_mismatch", "lockfile", f"{name} is required but not installed")
            seen[name] = dist
            queue.extend(_dependencies(dist))
        return [seen[name] for name in sorted(seen)]

    def image_hash(self, distributions: Iterable[Distribution]) -> bytes:
        h = hashlib.sha256(IMAGE_DOMAIN)
        h.update(_interpreter_hash(self.prefix, self.executable_name))
        h.update(_tree_hash(self.package_dir, suffixes=(".py",)))
        for dist in distributions:
            for part in (dist.name.encode(), dist.version.encode(), dist.record_sha256):
                h.update(len(part).to_bytes(8, "big") + part)
        return h.digest()


def _distribution(dist: importlib.metadata.Distribution) -> Distribution | None:
    name = dist.metadata["Name"]
    record = dist.read_text("RECORD")
    if not name or record is None:
        return None
    top: set[str] = set()
    for line in record.splitlines():
        path = line.rsplit(",", 2)[0].strip()
        if not path or path.startswith(("..", "/")):
            continue  # console scripts and data installed outside site-packages are not mounted
        top.add(path.split("/", 1)[0])
    return Distribution(
        name=normalise_distribution(name),
        version=dist.version,
        top_level=tuple(sorted(top)),
        record_sha256=hashlib.sha256(record.encode()).digest(),
        requires=tuple(dist.requires or ()),
    )


def _dependencies(dist: Distribution) -> list[str]:
    names = []
    for spec in dist.requires:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # extras and other platforms
        names.append(normalise_distribution(requirement.name))
    return names


@functools.cache
def _interpreter_hash(prefix: Path, executable_name: str) -> bytes:
    h = hashlib.sha256()
    h.update(_file_digest(prefix / "bin" / executable_name))
    for library in sorted((prefix / "lib").glob("libpython*.so*")):
        h.update(library.name.encode() + _file_digest(library))
    h.update(_tree_hash(prefix / "lib" / executable_name, skip=_STDLIB_SKIP))
    return h.digest()


def _file_digest(path: Path) -> bytes:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def _tree_hash(root: Path, *, suffixes: tuple[str, ...] = (), skip: frozenset[str] = _PYCACHE) -> bytes:
    h = hashlib.sha256()
    for path in sorted(_walk(root, skip)):
        if suffixes and not path.name.endswith(suffixes):
            continue
        relative = str(path.relative_to(root)).encode()
        h.update(len(relative).to_bytes(8, "big") + relative + _file_digest(path))
    return h.digest()


def _walk(root: Path, skip: frozenset[str]) -> Iterable[Path]:
    for entry in root.iterdir():
        if entry.name in skip:
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry, skip)
        elif entry.is_file():
            yield entry
