"""Atomic writes: the old file or the new one, never a half-written one."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightly_simmim.atomic import atomic_write, remove_stale_temporaries


def test_atomic_write__creates_folders_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "file.json"
    assert atomic_write(path, b"old") == path
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["file.json"]


def test_atomic_write__a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    atomic_write(path, b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary left


def test_remove_stale_temporaries__only_the_writers_leftovers(tmp_path: Path) -> None:
    stale = tmp_path / ".last.ckpt.123.abc.partial"
    stale.write_bytes(b"half")
    keep = [tmp_path / "last.ckpt", tmp_path / "notes.partial", tmp_path / ".hidden"]
    for path in keep:
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(tmp_path.iterdir()) == sorted(keep)
    assert remove_stale_temporaries(tmp_path / "missing") == []
