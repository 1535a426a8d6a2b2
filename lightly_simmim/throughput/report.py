"""The throughput table: markdown for people, JSON for scripts.

The JSON report (``--json FILE``) has these keys:

- ``machine``: ``device``, ``name`` (GPU or CPU model), ``cpu``, ``cores``,
  ``threads`` and the versions ``torch``, ``timm``, ``lightly``, ``lightning``,
  ``transformers`` (null if not installed);
- ``setup``: ``target``, ``encoder``, ``batch_size``, ``image_size``,
  ``precision``, ``precision_reason``, ``compile``, ``repeats``, ``warmup``,
  ``steps``;
- ``matmul_peak``: ``flops_per_second``, ``dtype``, ``size`` (null if not measured);
- ``memory_kind``: what ``peak_memory_mib`` measures (``cuda_max_allocated``,
  ``cpu_peak_rss_growth``, ``cpu_rss_growth`` or null);
- ``rows``: one object per requested row, in the requested order: ``row``,
  ``status`` (``measured`` or ``absent``), ``reason`` (why absent, else null),
  ``images_per_second`` (``median``, ``min``, ``max``, ``samples``: one rate per
  repetition), ``ratio_to_simmim``, ``peak_memory_mib``, ``flops_per_image``,
  ``achieved_flops_per_second``, ``mfu``, ``parameters``, ``notes``; numbers a
  row does not have are null;
- ``notes``: remarks on the whole table (parameter counts, what the loop counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lightly_simmim.throughput.flops import MatmulPeak
from lightly_simmim.throughput.machine import Machine
from lightly_simmim.throughput.timing import Sample, Spread

__all__ = ["REFERENCE_ROW", "RowResult", "Setup", "ThroughputReport"]

#: The row every ratio is relative to.
REFERENCE_ROW = "simmim"

_MEMORY_KINDS = {
    "cuda_max_allocated": "torch.cuda.max_memory_allocated during the row's build "
    "and warm-up, minus what other rows held",
    "cpu_peak_rss_growth": "growth of this process's peak resident memory during "
    "the row's build and warm-up (data loader workers not counted)",
    "cpu_rss_growth": "growth of this process's resident memory during the row's "
    "build and warm-up (the peak could not be reset; workers not counted)",
}


@dataclass(frozen=True)
class Setup:
    """What was measured, for the report's header (``setup`` in the JSON)."""

    target: str
    encoder: str
    batch_size: int
    image_size: int
    precision: str
    precision_reason: str
    compile: bool
    repeats: int
    warmup: int
    steps: int


@dataclass
class RowResult:
    """One row of the table.

    Attributes:
        name: ``simmim``, ``hf``, ``mae``, ``byol``, ``data`` or ``loop``.
        samples: The timed repetitions (empty if absent).
        absent: Why the row has no numbers; None if measured.
        peak_memory_mib: Memory of the row (see the report's ``memory_kind``).
        flops_per_image: Counted FLOPs of one step (forward + backward) per image.
        parameters: Parameters of the row's model.
        notes: Remarks on this row.
    """

    name: str
    samples: list[Sample] = field(default_factory=list)
    absent: str | None = None
    peak_memory_mib: float | None = None
    flops_per_image: float | None = None
    parameters: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spread(self) -> Spread | None:
        """Median and range of the images/s; None without samples."""
        return Spread.of(self.samples) if self.samples else None

    @property
    def achieved_flops(self) -> float | None:
        """Counted FLOPs per second at the median rate."""
        spread = self.spread
        if spread is None or self.flops_per_image is None:
            return None
        return self.flops_per_image * spread.median


def _si(value: float, unit: str) -> str:
    """``1.23e11, "FLOP/s"`` -> ``"123 GFLOP/s"``."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


@dataclass
class ThroughputReport:
    """A measured table.

    Attributes:
        machine: Where it was measured.
        setup: What was measured.
        matmul_peak: The device's measured matmul rate (the MFU denominator).
        memory_kind: What the rows' peak memory is (see the module docstring).
        rows: The rows, in the requested order.
        notes: Remarks on the whole table.
    """

    machine: Machine
    setup: Setup
    matmul_peak: MatmulPeak | None
    memory_kind: str | None
    rows: list[RowResult]
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> RowResult | None:
        """The row called ``name``, if requested."""
        return next((row for row in self.rows if row.name == name), None)

    def ratio(self, row: RowResult) -> float | None:
        """The row's median images/s over the ``simmim`` row's."""
        reference = self.row(REFERENCE_ROW)
        mine = row.spread
        theirs = None if reference is None else reference.spread
        if mine is None or theirs is None:
            return None
        return mine.median / theirs.median

    def mfu(self, row: RowResult) -> float | None:
        """Achieved FLOP/s over the measured matmul peak."""
        achieved = row.achieved_flops
        if achieved is None or self.matmul_peak is None:
            return None
        return achieved / self.matmul_peak.flops_per_second

    def _row_dict(self, row: RowResult) -> dict[str, object]:
        spread = row.spread
        rates = None
        if spread is not None:
            rates = {
                "median": spread.median,
                "min": spread.low,
                "max": spread.high,
                "samples": [sample.rate for sample in row.samples],
            }
        return {
            "row": row.name,
            "status": "absent" if row.absent is not None else "measured",
            "reason": row.absent,
            "images_per_second": rates,
            "ratio_to_simmim": self.ratio(row),
            "peak_memory_mib": row.peak_memory_mib,
            "flops_per_image": row.flops_per_image,
            "achieved_flops_per_second": row.achieved_flops,
            "mfu": self.mfu(row),
            "parameters": row.parameters,
            "notes": list(row.notes),
        }

    def to_dict(self) -> dict[str, object]:
        """The report as JSON-ready data (keys in the module docstring)."""
        return {
            "machine": self.machine.to_dict(),
            "setup": asdict(self.setup),
            "matmul_peak": None
            if self.matmul_peak is None
            else asdict(self.matmul_peak),
            "memory_kind": self.memory_kind,
            "rows": [self._row_dict(row) for row in self.rows],
            "notes": list(self.notes),
        }

    def _header(self) -> list[str]:
        setup = self.setup
        precision = setup.precision + (
            f" ({setup.precision_reason})" if setup.precision_reason else ""
        )
        lines = [
            "## lightly-simmim throughput",
            "",
            f"- machine: {self.machine.describe()}",
            f"- target: {setup.target}, encoder {setup.encoder}",
            f"- batch {setup.batch_size}, image {setup.image_size} px, precision "
            f"{precision}, compile {'on' if setup.compile else 'off'}; "
            f"{setup.repeats} interleaved repetition(s) of {setup.steps} step(s) "
            f"per row, after {setup.warmup} warm-up step(s)",
        ]
        peak = self.matmul_peak
        if peak is not None:
            lines.append(
                f"- matmul peak (MFU denominator): "
                f"{_si(peak.flops_per_second, 'FLOP/s')}, {peak.dtype} "
                f"{peak.size}x{peak.size} products, measured in this run"
            )
        return lines

    def _table_line(self, row: RowResult) -> str:
        spread = row.spread
        if spread is None:
            return f"| {row.name} | absent (see notes) | | | | | |"
        ratio, mfu = self.ratio(row), self.mfu(row)
        achieved = row.achieved_flops
        cells = [
            row.name,
            f"{_rate(spread.median)} ({_rate(spread.low)}-{_rate(spread.high)})",
            "" if ratio is None else f"{ratio:.2f}x",
            "" if row.peak_memory_mib is None else f"{row.peak_memory_mib:,.0f} MiB",
            "" if row.flops_per_image is None else f"{row.flops_per_image / 1e9:.3g}",
            "" if achieved is None else _si(achieved, "FLOP/s"),
            "" if mfu is None else f"{100 * mfu:.1f}%",
        ]
        return "| " + " | ".join(cells) + " |"

    def to_markdown(self) -> str:
        """The header, the table and the notes, as markdown."""
        lines = self._header()
        lines += [
            "",
            "| row | images/s median (min-max) | vs simmim | peak memory "
            "| GFLOP / image | achieved | MFU |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [self._table_line(row) for row in self.rows]
        notes = []
        if self.memory_kind in _MEMORY_KINDS:
            notes.append(f"peak memory: {_MEMORY_KINDS[self.memory_kind]}")
        for row in self.rows:
            if row.absent is not None:
                notes.append(f"{row.name}: absent: {row.absent}")
            notes += [f"{row.name}: {note}" for note in row.notes]
        notes += self.notes
        if notes:
            lines += ["", "Notes:", ""]
            lines += [f"- {note}" for note in notes]
        return "\n".join(lines) + "\n"
