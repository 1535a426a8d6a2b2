"""Peak memory of one row: what building it and its warm-up steps added.

Every row's model and optimiser stay alive while the others run (the repetitions
are interleaved), so a row's memory is measured while it is set up: the peak during
its build and warm-up minus what was in use before it.

- CUDA: ``torch.cuda.max_memory_allocated`` (tensors torch allocated; its caching
  allocator reserves a little more), after ``reset_peak_memory_stats``.
- CPU (Linux): the peak resident set size of this process (``VmHWM``, reset through
  ``/proc/self/clear_refs``) minus the resident size before, after returning freed
  heap memory to the OS (``malloc_trim``) so a row does not look free because it
  reuses pages another row freed. Data loader workers are other processes and are
  not counted.
- Elsewhere nothing is measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from pathlib import Path

import torch

from lightly_simmim.proc_status import status_kib

__all__ = ["MemoryProbe"]

_CLEAR_REFS = Path("/proc/self/clear_refs")
_MIB = 2**20


def _reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0); False if refused."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _trim_heap() -> None:
    """Returns freed heap pages to the OS (glibc only; a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


class MemoryProbe:
    """Measures the peak memory a piece of work adds on a device.

    Call :meth:`start` before the work and :meth:`peak_mib` after it.

    Args:
        device: The device of the work.

    Attributes:
        kind: What was measured, set by :meth:`start`: ``"cuda_max_allocated"``,
            ``"cpu_peak_rss_growth"``, ``"cpu_rss_growth"`` (the peak could not be
            reset: the growth of the current RSS) or None (nothing).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base: int | None = None
        self._peak_reset = False
        self.kind: str | None = None

    def start(self) -> None:
        """Records the memory in use now and resets the peak."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
            return
        _trim_heap()
        self._peak_reset = _reset_peak_rss()
        rss = status_kib("VmRSS")
        self._base = None if rss is None else rss * 1024
        if rss is not None:
            self.kind = "cpu_peak_rss_growth" if self._peak_reset else "cpu_rss_growth"

    def peak_mib(self) -> float | None:
        """MiB the work added at its peak since :meth:`start`; None if unknown."""
        if self._base is None:
            return None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return max(0, peak - self._base) / _MIB
        field = "VmHWM" if self._peak_reset else "VmRSS"
        now = status_kib(field)
        return None if now is None else max(0, now * 1024 - self._base) / _MIB
