"""Atomic file writes: a reader or a crash sees the old file or the new one, whole.

Standard library only: the one writer for checkpoints, configs, evaluation results,
exports and benchmark reports. See :mod:`lightly_simmim.checkpoints` for why a plain
``write`` + ``rename`` is not enough.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write", "remove_stale_temporaries"]

# Temporary files are hidden and carry this suffix, so a folder listing of finished
# checkpoints never shows them and `remove_stale_temporaries` can find the ones a
# killed process left behind.
_TMP_SUFFIX = ".partial"
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows only: no newline translation


def _fsync_dir(folder: Path) -> None:
    # The rename itself lives in the folder's metadata; without this a power cut right
    # after os.replace can still lose it on some file systems. Not possible on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` so that readers see the old or the new file only.

    Args:
        path: Target file; its folder is created if needed.
        data: The complete new content.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target (same file system: the rename is atomic), a name no
    # other process or rank uses, and mode 0o666 minus the umask like any new file
    # (tempfile.mkstemp would make it private to the owner).
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Deletes temporary files that a killed :func:`atomic_write` left in ``folder``.

    Call it only where no other process is writing into ``folder`` (rank 0, before
    training starts).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.glob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed
