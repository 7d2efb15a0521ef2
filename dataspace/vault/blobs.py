"""Blob storage: the configured Django storage (local directory or S3-compatible).

Only sealed bytes ever pass through here. On the local directory, deleting everything under a
prefix also removes the folders it leaves empty, up to (not including) the storage root.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath
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
        # delete_under may remove an emptied folder between our mkdir and open; one more try then.
        for attempt in range(3):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return path.open("xb")
            except FileNotFoundError:
                if attempt == 2:
                    raise
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
    removed = _delete_tree(prefix)
    _remove_empty_folders(prefix)
    return removed


def _delete_tree(prefix: str) -> int:
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return 0
    for name in files:
        default_storage.delete(f"{prefix}/{name}")
    return len(files) + sum(_delete_tree(f"{prefix}/{folder}") for folder in folders)


def _remove_empty_folders(prefix: str) -> None:
    """The prefix's folders, deepest first, then its parents while they are empty. Object stores
    have no folders; a folder another writer has just filled is left alone (rmdir refuses it)."""
    root, top = _local_path(""), _local_path(prefix)
    if root is None or top is None:
        return
    below = [p for p in top.rglob("*") if p.is_dir()] if top.is_dir() else []
    for folder in sorted(below, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    for folder in [top, *(root / parent for parent in PurePosixPath(prefix).parents if parent.name)]:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return  # not empty: neither are the folders above it
