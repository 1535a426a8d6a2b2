"""How ``lightly-simmim`` reports an exception: one table, first match wins.

A user-facing problem (a bad config, missing or corrupt data, an unknown component,
a missing run folder, a folder the OS will not let us write) becomes one line on
stderr, ``lightly-simmim <command>: error: <message>``, and an exit status; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lightly_simmim import registry
from lightly_simmim.cli.common import EXIT_DIVERGED, EXIT_FAILED, EXIT_USAGE

#: What PyTorch's ``ExceptionWrapper`` puts into the message of an exception it
#: re-raises from a data loader worker, followed by the worker's traceback text.
WORKER_TRACEBACK_MARKER = "Original Traceback (most recent call last):"

_TRACEBACK_HEADER = "Traceback (most recent call last):"
# The first line of a formatted exception: "package.module.ErrorType: message".
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: ")
# str() of an OSError whose details were lost on the way out of a worker:
# "[Errno 30] Read-only file system: '/a'" (" -> '/b'" for a rename).
_ERRNO_TEXT = re.compile(r"^\[Errno -?\d+\] (?P<reason>.+?): (?P<paths>'.*')$")


@dataclass(frozen=True)
class ExitRule:
    """One row of :data:`EXIT_RULES`.

    Attributes:
        error: The exception type the row catches (subclasses included).
        status: The exit status of the command.
        prefix: Put before the message, after ``error: ``.
    """

    error: type[BaseException]
    status: int
    prefix: str = ""


#: Exception type -> exit status, tried from the top; the first match wins. Every
#: type sits above its base classes (ChildProcessError, FileNotFoundError and
#: FileExistsError are OSErrors; PluginLoadError is an ImportError), or the base
#: class's row would take it; tests/cli/test_errors.py checks that no row is
#: shadowed by one above it.
EXIT_RULES: tuple[ExitRule, ...] = (
    # benchmark: a pretraining child failed (BenchmarkError); its own messages are
    # above ours. Not a usage error.
    ExitRule(ChildProcessError, EXIT_FAILED),
    # The loss became NaN / inf (NonFiniteLossError): not a usage error either.
    ExitRule(FloatingPointError, EXIT_DIVERGED),
    # ConfigError, CorruptImageError, CheckpointError, UnknownComponentError.
    ExitRule(ValueError, EXIT_USAGE),
    # DatasetNotFoundError, NothingToResumeError, a missing run or checkpoint.
    ExitRule(FileNotFoundError, EXIT_USAGE),
    # A new run into a folder that already holds a checkpoint.
    ExitRule(FileExistsError, EXIT_USAGE),
    # A registered plugin fails to import.
    ExitRule(registry.PluginLoadError, EXIT_USAGE),
    # What else the OS refuses: a read-only folder, a full disk, a parent that is a
    # file. The message names the path and the reason.
    ExitRule(OSError, EXIT_USAGE, prefix="OS error: "),
)


def find_rule(error: BaseException) -> ExitRule | None:
    """The first row of :data:`EXIT_RULES` that catches ``error``.

    Args:
        error: The exception a command raised.

    Returns:
        The row, or None for an exception that is not a user error (a bug).
    """
    return next((rule for rule in EXIT_RULES if isinstance(error, rule.error)), None)


def describe(error: BaseException) -> str:
    """The message printed for an exception: no traceback, no bare errno.

    - An OSError from the OS reads ``PATH: REASON`` (``strerror``) rather than
      ``[Errno 30] Read-only file system: 'PATH'``, also when it comes from a
      data loader worker (which keeps only the text).
    - An exception re-raised from a data loader worker carries the worker's
      traceback text in its message; only the original exception's own message is
      kept, so the error reads the same with and without workers.

    Args:
        error: The exception.

    Returns:
        The message to print.
    """
    if isinstance(error, OSError) and error.strerror:
        # Raised by the OS: errno, strerror and the path(s) it was about.
        names = (error.filename, error.filename2)
        paths = " -> ".join(str(name) for name in names if name is not None)
        return f"{paths}: {error.strerror}" if paths else error.strerror
    message = str(error)
    if WORKER_TRACEBACK_MARKER in message:
        message = _worker_error_message(message)
    match = _ERRNO_TEXT.match(message) if isinstance(error, OSError) else None
    if match is not None:
        paths = match["paths"].replace("' -> '", " -> ").strip("'")
        message = f"{paths}: {match['reason']}"
    return message


def _worker_error_message(message: str) -> str:
    """The original exception's message in a worker's re-raised error message.

    The text after the marker is ``traceback.format_exception`` output: frames (lines
    indented by two spaces), then ``module.Type: message``. With a chained cause the
    last ``Traceback`` block is the exception that was raised.

    Args:
        message: ``str()`` of the re-raised exception.

    Returns:
        The original message (all its lines), without the exception type.
    """
    text = message.rpartition(_TRACEBACK_HEADER)[2]
    lines = [line for line in text.strip("\n").splitlines() if line.strip()]
    # Frames and source lines are indented; the exception's text is not.
    first = next((i for i, line in enumerate(lines) if not line.startswith(" ")), None)
    if first is None:  # no exception line at all: keep the last line, not frames
        return lines[-1].strip() if lines else message
    original = "\n".join(lines[first:])
    return _EXCEPTION_LINE.sub("", original, count=1)
