"""Blob storage on the local directory: deleting under a prefix leaves no empty folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from dataspace.vault import blobs


def write(name: str) -> None:
    with blobs.open_for_write(name) as sink:
        sink.write(b"sealed")


def folders(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


@pytest.fixture
def root() -> Path:
    return Path(settings.BLOB_ROOT)


def test_delete_under_removes_the_prefix_and_its_emptied_parents(root: Path) -> None:
    for name in ["he/d1/build/a.ct", "he/d1/build/cols/b.ct", "he/d1/build/cols/deep/c.ct", "uploads/x.sealed"]:
        write(name)
    assert blobs.delete_under("he/d1/build") == 3
    assert folders(root) == {"uploads"}


def test_delete_under_keeps_folders_that_hold_other_blobs(root: Path) -> None:
    write("he/d1/old/a.ct")
    write("he/d1/new/a.ct")
    assert blobs.delete_under("he/d1/old") == 1
    assert folders(root) == {"he", "he/d1", "he/d1/new"}
    assert blobs.exists("he/d1/new/a.ct")


def test_delete_under_a_missing_prefix_is_a_no_op(root: Path) -> None:
    write("he/d2/a.ct")
    assert blobs.delete_under("he/d1/gone") == 0
    assert folders(root) == {"he", "he/d2"}
