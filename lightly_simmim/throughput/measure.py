"""One throughput measurement: set every row up, time them interleaved, report.

For each requested row in turn: build it, run its warm-up steps while measuring
the memory it adds, and count the FLOPs of one eager step (forward + backward).
A row that cannot be built for this target (MAE on a ConvNeXt, HF without
``transformers``, data that are not there, a failed ``torch.compile``, out of
memory) is reported absent with the reason; the others are measured. Then every
measured row is timed ``repeats`` times, round-robin
(:func:`~lightly_simmim.throughput.timing.interleave`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lightly_simmim.build import method_settings
from lightly_simmim.methods import SimMIMSettings
from lightly_simmim.throughput.data import DataPath
from lightly_simmim.throughput.flops import count_flops, measure_matmul_peak
from lightly_simmim.throughput.hf import hf_step
from lightly_simmim.throughput.loop import LoopRun
from lightly_simmim.throughput.machine import describe_machine, resolve_device
from lightly_simmim.throughput.masks import MaskGeneration
from lightly_simmim.throughput.memory import MemoryProbe
from lightly_simmim.throughput.precision import (
    ResolvedPrecision,
    compute_dtype,
    resolve_precision,
)
from lightly_simmim.throughput.report import RowResult, Setup, ThroughputReport
from lightly_simmim.throughput.rows import TrainStep, method_step
from lightly_simmim.throughput.targets import METHOD_ROWS, Target, resolve_target
from lightly_simmim.throughput.timing import Workload, interleave

__all__ = [
    "DEFAULT_ROWS",
    "DEFAULT_TARGET",
    "ROWS",
    "ThroughputSettings",
    "measure_throughput",
]

#: Every row, in the default order.
ROWS = (
    "simmim",
    "hf",
    "mae",
    "byol",
    "data",
    "loop",
    "simmim-unfused",
    "simmim-fullhead",
    "masks",
)
#: The rows measured unless asked otherwise.
DEFAULT_ROWS = ROWS[:6]
#: Rows that turn one of the hot path's choices back (see ``method_step``).
ABLATIONS = {"simmim-unfused": "fused", "simmim-fullhead": "masked-head"}

#: The target without one: the CPU default config.
DEFAULT_TARGET = "fashion_mnist_cpu"

#: Errors that mean "this row cannot run on this target", reported in the row.
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # sizes, settings, unsupported encoders (ConfigError included)
    TypeError,  # a method given an encoder it does not take
    ImportError,  # transformers, a plugin
    FileNotFoundError,  # data that are not where the config says
    torch.cuda.OutOfMemoryError,
)

Progress = Callable[[str], object]


@dataclass(frozen=True)
class ThroughputSettings:
    """What ``lightly-simmim throughput`` measures.

    Attributes:
        target: A shipped config name, a run-config or benchmark YAML, or an
            encoder spec (:mod:`lightly_simmim.throughput.targets`).
        overrides: ``--set`` strings for the target.
        batch_size: Images per step; None = the config's.
        image_size: Image side; None = the config's.
        precision: ``32``, ``bf16-mixed``, ``16-mixed`` or ``auto``; None = the
            config's ``trainer.precision``.
        device: ``cpu``, ``cuda`` or ``auto``.
        compile: ``torch.compile`` every row's model.
        repeats: Timed repetitions per row.
        warmup: Untimed steps per row before the first repetition.
        steps: Steps (batches) per repetition.
        rows: The rows, in the order of the table (see :data:`ROWS`).
        hf_precision: The ``hf`` row's own precision (``32``: what an HF user gets
            by default); None = the table's.

    Raises:
        ValueError: An unknown row, or counts below their minimum.
    """

    target: str = DEFAULT_TARGET
    overrides: tuple[str, ...] = ()
    batch_size: int | None = None
    image_size: int | None = None
    precision: str | None = None
    hf_precision: str | None = None
    device: str = "auto"
    compile: bool = False
    repeats: int = 5
    warmup: int = 3
    steps: int = 5
    rows: tuple[str, ...] = DEFAULT_ROWS

    def __post_init__(self) -> None:
        unknown = [row for row in self.rows if row not in ROWS]
        if unknown or not self.rows:
            raise ValueError(
                f"Unknown rows {unknown}; choose from {', '.join(ROWS)}."
                if unknown
                else f"No rows to measure; choose from {', '.join(ROWS)}."
            )
        for name, value, least in (
            ("repeats", self.repeats, 1),
            ("steps", self.steps, 1),
            ("warmup", self.warmup, 0),
            ("batch_size", self.batch_size or 1, 1),
            ("image_size", self.image_size or 1, 1),
        ):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}.")


def _simmim_masks(target: Target) -> SimMIMSettings:
    """The mask settings of the ``simmim`` row, for the ``hf`` row's masks."""
    settings = method_settings(target.method_config("simmim"))
    if not isinstance(settings, SimMIMSettings):  # a plugin registered as simmim
        return SimMIMSettings()
    return settings


def _builder(
    name: str,
    target: Target,
    device: torch.device,
    precision: str,
    settings: ThroughputSettings,
) -> Callable[[], Workload]:
    """What builds row ``name``."""
    if name in METHOD_ROWS:
        config = target.method_config(name)
        return lambda: method_step(name, config, device, precision, settings.compile)
    if name in ABLATIONS:
        config = target.method_config("simmim")
        return lambda: method_step(
            name, config, device, precision, settings.compile, ABLATIONS[name]
        )
    if name == "hf":

        def build_hf() -> Workload:
            masks = _simmim_masks(target)
            own = settings.hf_precision
            return hf_step(
                target.method_config("simmim"),
                mask_patch_size=masks.mask_patch_size,
                mask_ratio=masks.mask_ratio,
                device=device,
                precision=precision
                if own is None
                else resolve_precision(own, device).name,
                compile_model=settings.compile,
            )

        return build_hf
    if name == "data":
        return lambda: DataPath(target.config, device)
    if name == "masks":
        return lambda: MaskGeneration(target.method_config("simmim"), device)
    return lambda: LoopRun(
        target.config, device, precision, settings.compile, settings.warmup
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _set_up(
    name: str,
    build: Callable[[], Workload],
    probe: MemoryProbe,
    settings: ThroughputSettings,
) -> tuple[RowResult, Workload | None]:
    """Builds and warms up a row, measuring its memory and FLOPs."""
    probe.start()
    try:
        workload = build()
        workload.warm_up(settings.warmup)
    except _ROW_ERRORS as error:
        return RowResult(name, absent=_one_line(error)), None
    except Exception as error:
        if not settings.compile:
            raise  # a bug: keep the traceback
        return RowResult(name, absent=f"torch.compile failed: {_one_line(error)}"), None
    # Read before the FLOP count, whose eager pass is not the (compiled) step's.
    result = RowResult(name, peak_memory_mib=probe.peak_mib())
    if isinstance(workload, TrainStep):
        result.parameters = workload.parameters
        result.notes = list(workload.notes)
        try:
            flops = count_flops(workload.forward_backward)
        except torch.cuda.OutOfMemoryError:
            result.notes.append("FLOPs not counted: the eager pass ran out of memory")
        else:
            result.flops_per_image = flops / workload.images_per_step
    return result, workload


def _parameter_notes(rows: dict[str, RowResult]) -> list[str]:
    """The parameter counts of the two SimMIMs, side by side."""
    ours = rows["simmim"].parameters if "simmim" in rows else None
    theirs = rows["hf"].parameters if "hf" in rows else None
    if ours is None or theirs is None:
        return []
    difference = theirs - ours
    verdict = "identical" if difference == 0 else f"HF {difference:+,}"
    return [f"parameters: simmim {ours:,}, hf {theirs:,} ({verdict})"]


def _compile_notes(rows: dict[str, RowResult], device: torch.device) -> list[str]:
    """What ``--compile`` does to the memory and loop columns."""
    notes = []
    if device.type == "cpu":
        notes.append(
            "compile: a row's memory includes what the compiler allocated while "
            "warming it up (the first compiled row also the compiler's start-up)"
        )
    if "loop" in rows:
        notes.append(
            "compile: every loop repetition is a fresh pretrain run that compiles "
            "again; raise --warmup if the loop's minimum is far below its median"
        )
    return notes


def _loop_flops(rows: dict[str, RowResult], method: str) -> None:
    """Gives the loop row the FLOPs of the bare step of the method it trains."""
    loop, step = rows.get("loop"), rows.get(method)
    if loop is None or loop.absent is not None or step is None:
        return
    if step.flops_per_image is None:
        return
    loop.flops_per_image = step.flops_per_image
    loop.notes.append(
        f"FLOP/image of the bare {method} step (the loop's online classifier, if "
        "any, is not counted)"
    )


def measure_throughput(
    settings: ThroughputSettings, progress: Progress | None = None
) -> ThroughputReport:
    """Measures the table ``settings`` describe.

    Args:
        settings: Target, sizes, precision, device, rows, repetitions.
        progress: Called with one line per stage (default: stderr).

    Returns:
        The report.

    Raises:
        ValueError: A bad target, override, precision or device (ConfigError for
            config problems).
    """
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    device = resolve_device(settings.device)
    target = resolve_target(
        settings.target,
        settings.overrides,
        batch_size=settings.batch_size,
        image_size=settings.image_size,
    )
    requested = settings.precision or target.config.trainer.precision
    precision: ResolvedPrecision = resolve_precision(requested, device)
    say(f"measuring the {device.type} matmul peak")
    peak = measure_matmul_peak(device, compute_dtype(precision.name))
    results: dict[str, RowResult] = {}
    workloads: list[Workload] = []
    probe = MemoryProbe(device)
    for name in settings.rows:
        say(f"setting up {name}")
        build = _builder(name, target, device, precision.name, settings)
        results[name], workload = _set_up(name, build, probe, settings)
        if workload is not None:
            workloads.append(workload)
    for name, samples in interleave(
        workloads, settings.repeats, settings.steps, say
    ).items():
        results[name].samples = samples
    # The peak is the best the device did: measured again after the rows, so a
    # moment of contention at the start cannot make the MFU exceed 100%.
    again = measure_matmul_peak(device, compute_dtype(precision.name))
    peak = max(peak, again, key=lambda measured: measured.flops_per_second)
    _loop_flops(results, target.config.method.name)
    setup = Setup(
        target=f"{settings.target} ({target.kind})",
        encoder=target.describe_encoder(),
        batch_size=target.config.data.batch_size,
        image_size=target.config.data.input_size,
        precision=precision.name,
        precision_reason=precision.reason,
        compile=settings.compile,
        repeats=settings.repeats,
        warmup=settings.warmup,
        steps=settings.steps,
    )
    return ThroughputReport(
        machine=describe_machine(device),
        setup=setup,
        matmul_peak=peak,
        memory_kind=probe.kind,
        rows=[results[name] for name in settings.rows],
        notes=_parameter_notes(results)
        + (_compile_notes(results, device) if settings.compile else []),
    )
