"""Blob storage: the configured Django storage (local directory or S3-compatible).

Only sealed bytes ever pass through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from django.core.files.storage import default_storage


def _local_path(name: str) -> Path | None:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        return None


def open_for_write(name: str) -> IO[bytes]:
    path = _local_path(name)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("xb")
    return default_storage.open(name, "wb")


def open_for_read(name: str) -> IO[bytes]:
    return default_storage.open(name, "rb")


def size(name: str) -> int:
    return default_storage.size(name)


def exists(name: str) -> bool:
    return default_storage.exists(name)


def delete(name: str) -> None:
    default_storage.delete(name)


def delete_under(prefix: str) -> int:
    """Deletes every blob whose name starts with ``prefix/``, at any depth; returns how many.
    For what no layout lists any more, such as the blobs of a build that was killed half-way."""
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return 0
    for name in files:
        default_storage.delete(f"{prefix}/{name}")
    return len(files) + sum(delete_under(f"{prefix}/{folder}") for folder in folders)
