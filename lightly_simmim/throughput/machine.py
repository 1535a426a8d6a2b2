"""What a throughput table was measured on: the device, its cores and the versions."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["Machine", "cpu_flags", "cpu_model", "describe_machine", "resolve_device"]

_CPUINFO = Path("/proc/cpuinfo")


@lru_cache(maxsize=1)
def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (Linux only)."""
    try:
        text = _CPUINFO.read_text()
    except OSError:  # not Linux
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block ends at the first blank line
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx512_bf16``, ``amx_bf16``, ...); empty where
    ``/proc/cpuinfo`` cannot be read."""
    return frozenset(_cpuinfo_fields().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's model name, as precise as the platform tells it."""
    return _cpuinfo_fields().get("model name") or platform.processor() or "unknown CPU"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (the current CUDA device) or ``auto`` (CUDA if available).

    Raises:
        ValueError: ``cuda`` without a CUDA device, or another name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "--device cuda, but torch sees no CUDA device; use --device cpu."
            )
        return torch.device("cuda", torch.cuda.current_device())
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"Unknown device {name!r}; use cpu, cuda or auto.")


@dataclass(frozen=True)
class Machine:
    """The machine of a measurement, for the report's header.

    Attributes:
        device: The torch device the rows ran on (``cpu``, ``cuda:0``).
        name: The GPU's name on CUDA, else the CPU's model name.
        cpu: The CPU's model name (data loading and the host side run there).
        cores: Logical CPU cores of the machine.
        threads: torch's intra-op threads (``torch.get_num_threads()``).
        torch: Versions of torch, timm, lightly, Lightning and (if installed)
            transformers.
        timm: See ``torch``.
        lightly: See ``torch``.
        lightning: See ``torch``.
        transformers: See ``torch``; None if not installed.
    """

    device: str
    name: str
    cpu: str
    cores: int
    threads: int
    torch: str
    timm: str | None
    lightly: str | None
    lightning: str | None
    transformers: str | None

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (the JSON report's ``machine``)."""
        return asdict(self)

    def describe(self) -> str:
        """One line: device, cores, threads and versions."""
        versions = ", ".join(
            f"{name} {version}"
            for name, version in (
                ("torch", self.torch),
                ("timm", self.timm),
                ("lightly", self.lightly),
                ("Lightning", self.lightning),
                ("transformers", self.transformers),
            )
            if version is not None
        )
        where = self.name if self.device == "cpu" else f"{self.name} (host {self.cpu})"
        return (
            f"{where} [{self.device}], {self.cores} cores, {self.threads} torch "
            f"threads; {versions}"
        )


def describe_machine(device: torch.device) -> Machine:
    """The machine the rows run on.

    Args:
        device: The device of the measurement.

    Returns:
        Its description.
    """
    cpu = cpu_model()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return Machine(
        device=str(device),
        name=name,
        cpu=cpu,
        cores=os.cpu_count() or 1,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        timm=_version("timm"),
        lightly=_version("lightly"),
        lightning=_version("pytorch-lightning"),
        transformers=_version("transformers"),
    )
