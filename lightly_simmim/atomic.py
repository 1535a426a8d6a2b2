"""Atomic file writes: a reader or a crash sees the old file or the new one, whole.

Standard library only: the one writer for checkpoints, configs, evaluation results,
exports and benchmark reports. See :mod:`lightly_simmim.checkpoints` for why a plain
``write`` + ``rename`` is not enough.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

__all__ = ["WriteError", "atomic_write", "ensure_folder", "remove_stale_temporaries"]

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


class WriteError(OSError):
    """A file or folder could not be written: read-only, no space, a parent that is
    a file, no permission. ``filename`` is the path; ``strerror`` says why and what
    to do, so ``f"{error.filename}: {error.strerror}"`` is the whole message."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


# errno -> what to do about it (the OS's own reason comes first in the message).
_REMEDIES = {
    errno.EROFS: "the file system is read-only; choose a folder you can write to",
    errno.EACCES: "no permission to write there; choose a folder you can write to",
    errno.EPERM: "not permitted; choose a folder you can write to",
    errno.ENOSPC: "no space left on the device; free some, or write elsewhere",
    errno.EDQUOT: "over the disk quota; free some space, or write elsewhere",
    errno.ENOTDIR: "a parent of this path is a file, not a folder",
    errno.EEXIST: "a parent of this path is a file, not a folder",
    errno.EISDIR: "this path is a folder; give a file name",
}


def _write_error(error: OSError, path: Path) -> WriteError:
    reason = error.strerror or str(error)
    remedy = _REMEDIES.get(error.errno or 0)
    explained = f"cannot write: {reason}" + (f" ({remedy})" if remedy else "")
    return WriteError(error.errno or 0, explained, str(path))


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Creates ``folder`` and its parents if needed.

    Raises:
        WriteError: The folder cannot be created (a parent is a file, read-only, ...).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        # mkdir(exist_ok=True) raises FileExistsError when a file is in the way.
        blocked = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        if blocked is not None:
            raise WriteError(
                errno.ENOTDIR,
                f"cannot create {str(folder)!r}: it is a file, not a folder",
                str(blocked),
            ) from error
        raise _write_error(error, folder) from error
    return folder


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` so that readers see the old or the new file only.

    Every failure of the file system (read-only folder, no space, a parent that is a
    file, no permission) is one :class:`WriteError` naming the path and the reason;
    no temporary file is left behind.

    Args:
        path: Target file; its folder is created if needed.
        data: The complete new content.

    Returns:
        The path written.

    Raises:
        WriteError: The file could not be written.
    """
    path = Path(path)
    ensure_folder(path.parent)
    try:
        _replace_with(path, data)
    except WriteError:
        raise
    except OSError as error:
        raise _write_error(error, path) from error
    _fsync_dir(path.parent)
    return path


def _replace_with(path: Path, data: bytes) -> None:
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
