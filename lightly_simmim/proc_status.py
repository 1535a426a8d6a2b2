"""Fields of this process's ``/proc/self/status`` (Linux): resident memory now and
its high-water mark, for the training's peak memory and the throughput rows'."""

from __future__ import annotations

from pathlib import Path

__all__ = ["status_kib"]

_STATUS = Path("/proc/self/status")


def status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
