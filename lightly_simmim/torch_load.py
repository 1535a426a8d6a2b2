"""What ``torch.load`` raises for a file that is not a checkpoint it can read.

A checkpoint of this package and an official SimMIM checkpoint are both read with
``torch.load(weights_only=True)``. Given a truncated zip, an empty file or bytes that
were never a pickle (a text file renamed ``.ckpt``), torch fails in the zip reader
(``RuntimeError``, ``zipfile.BadZipFile``, ``OSError``, ``EOFError``) or inside its
weights-only unpickler, which indexes an opcode table, a memo and a stack with the
file's bytes (``KeyError``, ``IndexError``, ``ValueError``, ``TypeError``,
``AttributeError``). Every one of those means "this file cannot be read", never a bug
of the caller; ``pickle.UnpicklingError`` is left out, because torch also uses it for
"the file pickles an object that is not allowed", which callers report differently.
"""

from __future__ import annotations

import re
import zipfile

__all__ = ["UNREADABLE_CHECKPOINT_ERRORS", "load_error_detail"]

UNREADABLE_CHECKPOINT_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    EOFError,
    OSError,
    zipfile.BadZipFile,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AttributeError,
)


def load_error_detail(error: BaseException) -> str:
    """``Type: reason`` of a ``torch.load`` failure, in one line.

    torch wraps its weights-only unpickler's reason (``Unsupported operand 102``) in
    paragraphs of advice to load the file unsafely; only the reason is kept.
    """
    text = str(error)
    reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    lines = text.strip().splitlines()
    detail = reason[1] if reason else (lines[0] if lines else "no detail")
    return f"{type(error).__name__}: {detail.strip()}"
