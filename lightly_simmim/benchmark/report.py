"""The benchmark's report: ``results.md``, ``results.csv``, ``results.json``, plots.

Every file is written atomically and rewritten after each run, so the folder always
holds a complete report of the runs finished so far. The numbers come only from the
run folders (``metrics.json``, ``eval/*.json``, ``logs/csv/version_*/metrics.csv``);
nothing here computes an accuracy. ``results.csv`` has one line per run (a row label
and a seed); ``results.md`` one line per row label, every accuracy the mean ± the
standard deviation over its seeds (:mod:`.summary`); ``results.json`` both.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lightly_simmim.atomic import atomic_write
from lightly_simmim.benchmark.plots import plot_accuracy, plot_layers, plot_losses
from lightly_simmim.benchmark.summary import PROBES, RowSummary, Spread, summarize
from lightly_simmim.evaluation.layers import best_layer
from lightly_simmim.evaluation.results import JsonDict

if TYPE_CHECKING:
    from lightly_simmim.benchmark.config import BenchmarkConfig

__all__ = ["COLUMNS", "loss_curves", "machine", "write_report"]

#: Columns of results.csv, in order (results.json has the same keys per row).
COLUMNS = (
    "label",
    "seed",
    "kind",
    "method",
    "encoder",
    "pretrain_epochs",
    "batch_size",
    "knn_top1",
    "knn_top5",
    "linear_top1",
    "linear_top5",
    "finetune_top1",
    "finetune_top5",
    "pretrain_seconds",
    "peak_memory_mb",
    "peak_memory_kind",
    "resumed",
    "knn_seconds",
    "linear_seconds",
    "finetune_seconds",
    "knn_best_top1",
    "knn_best_layer",
    "linear_best_top1",
    "linear_best_layer",
    "layers_seconds",
    "folder",
)
_MEMORY_KINDS = {"cpu_max_rss": "RSS", "cuda_allocated": "CUDA"}


def machine() -> JsonDict:
    """What the benchmark ran on: OS, CPU count, torch, accelerator."""
    info: JsonDict = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def loss_curves(folder: Path) -> list[tuple[int, float]]:
    """``(step, train_loss)`` of a run, over all its starts (resumes)."""
    points: dict[int, float] = {}
    versions = sorted(
        (folder / "logs" / "csv").glob("version_*"),
        key=lambda p: int(p.name.split("_")[-1]) if p.name[8:].isdigit() else -1,
    )
    for version in versions:
        path = version / "metrics.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as handle:
            for record in csv.DictReader(handle):
                loss, step = record.get("train_loss"), record.get("step")
                if loss and step:
                    points[int(step)] = float(loss)  # a resume overwrites replays
    return sorted(points.items())


def _cell(value: Spread | None) -> str:
    return "–" if value is None else value.format()


def _best(row: RowSummary, probe: str) -> str:
    best = row.best_layer(probe)
    if best is None:
        return "–"
    index, value = best
    if value.std is None:  # "61.58 (blocks.3, 1 run)", not "61.58 (1 run) (blocks.3)"
        return f"{value.mean:.2f} ({row.modules[index]}, 1 run)"
    return f"{value.format()} ({row.modules[index]})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _memory(row: JsonDict) -> str:
    if row.get("peak_memory_mb") is None:
        return "–"
    kind = _MEMORY_KINDS.get(str(row.get("peak_memory_kind")), "")
    return f"{row['peak_memory_mb'] / 1024:.2f} GiB {kind}".rstrip()


def _pretrain_time(row: RowSummary) -> str:
    """The mean over the row's runs, '(resumed)' if any run was."""
    seconds = [r["pretrain_seconds"] for r in row.runs if r.get("pretrain_seconds")]
    if not seconds:
        return "–"
    resumed = " (resumed)" if any(r.get("resumed") for r in row.runs) else ""
    return _duration(sum(seconds) / len(seconds)) + resumed


def _table_line(row: RowSummary) -> str:
    first = row.first
    seeds = ", ".join("–" if seed is None else str(seed) for seed in row.seeds)
    cells = [
        row.label,
        first["method"] or "–",
        first["encoder"] or "–",
        str(first["pretrain_epochs"]),
        str(first["batch_size"] or "–"),
        seeds,
        _cell(row.top1["knn"]),
        _best(row, "knn"),
        _cell(row.top1["linear"]),
        _best(row, "linear"),
        _cell(row.top1["finetune"]),
        _pretrain_time(row),
        _memory(first),
    ]
    return "| " + " | ".join(cells) + " |"


def _markdown(
    summaries: Sequence[RowSummary],
    benchmark: BenchmarkConfig,
    command: str | None,
    info: JsonDict,
    written: str,
) -> str:
    lines = [f"# Benchmark: {benchmark.name}", ""]
    if command:
        lines += ["Command:", "", "```bash", command, "```", ""]
    device = info.get("gpu") or f"{info['cpu_count']} CPU cores (no GPU)"
    lines += [
        f"Machine: {device}; {info['platform']}; Python {info['python']}; torch "
        f"{info['torch']} ({info['torch_threads']} threads). Written {written}.",
        "",
        "| row | method | encoder | pretrain epochs | batch | seeds | kNN top-1 | "
        "kNN best layer | linear top-1 | linear best layer | fine-tune top-1 | "
        "pretrain time | peak memory |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *(_table_line(row) for row in summaries),
        "",
        "Top-1 accuracy in percent on the test split: the mean ± the sample standard "
        "deviation over the row's seeds ('(1 run)': one seed, no spread; top-5 and "
        "every run's numbers in results.csv). kNN / linear top-1 read the last layer:"
        " the encoder's pooled features where the knn / linear protocols ran, else "
        "the per-layer probes' last layer; the best-layer columns probe every block /"
        " stage (average-pooled tokens, the same for every method) and name the layer"
        " with the highest mean, chosen on the test split (an upper bound, as the "
        "papers' layer choices are). Pretrain time is the mean wall time of the "
        "pretraining processes that finished the runs, their final kNN included "
        "('resumed': of the last start only). Peak memory is the first run's peak "
        "resident set size on CPU (data loader workers not counted), or the most "
        "memory torch allocated on the GPU.",
        "",
        "![accuracy per protocol](accuracy.png)",
        "",
    ]
    if any(row.layers for row in summaries):
        lines += ["![accuracy per layer](layers.png)", ""]
    lines += ["![pretraining loss](loss_curves.png)", ""]
    return "\n".join(lines)


def _with_best_layers(rows: Sequence[JsonDict]) -> list[JsonDict]:
    """The runs with each probe's best layer (of that run) filled in for the CSV."""
    filled = []
    for row in rows:
        row = dict(row)
        layers = row.get("layers") or []
        for probe in PROBES:
            if layers:
                best = best_layer(layers, probe)
                row[f"{probe}_best_top1"] = best[f"{probe}_top1"]
                row[f"{probe}_best_layer"] = best["module"]
        filled.append(row)
    return filled


def write_report(
    rows: Sequence[JsonDict],
    output_dir: str | os.PathLike[str],
    benchmark: BenchmarkConfig,
    command: str | None = None,
) -> dict[str, Path]:
    """Writes the table, the CSV, the JSON and the plots for ``rows``.

    Args:
        rows: One dict per run with the keys of :data:`COLUMNS` (``seed`` may be
            None) and, with per-layer probes, ``layers``: the ``layers`` list of
            :func:`~lightly_simmim.evaluation.layers.layer_probes`.
        output_dir: The benchmark's folder.
        benchmark: Its config (name; recorded whole in ``results.json``).
        command: The command line that ran it, shown in ``results.md``.

    Returns:
        Name -> path of every file written.
    """
    folder = Path(output_dir)
    info = machine()
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    paths = {
        "md": folder / "results.md",
        "csv": folder / "results.csv",
        "json": folder / "results.json",
        "accuracy": folder / "accuracy.png",
        "losses": folder / "loss_curves.png",
    }
    summaries = summarize(rows)
    if any(row.layers for row in summaries):
        paths["layers"] = folder / "layers.png"
    markdown = _markdown(summaries, benchmark, command, info, written)
    atomic_write(paths["md"], markdown.encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_with_best_layers(rows))
    atomic_write(paths["csv"], buffer.getvalue().encode())
    payload = {
        "name": benchmark.name,
        "command": command,
        "written": written,
        "machine": info,
        "config": asdict(benchmark),
        "rows": list(rows),
        "summary": [row.to_dict() for row in summaries],
    }
    atomic_write(paths["json"], (json.dumps(payload, indent=2) + "\n").encode())
    plot_accuracy(summaries, paths["accuracy"])
    plot_losses(summaries, paths["losses"], loss_curves)
    if "layers" in paths:
        plot_layers(summaries, paths["layers"])
    return paths
