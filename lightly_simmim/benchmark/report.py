"""The benchmark's report: ``results.md``, ``results.csv``, ``results.json``, plots.

Every file is written atomically and rewritten after each row, so the folder always
holds a complete report of the rows finished so far. The numbers come only from the
run folders (``metrics.json``, ``eval/*.json``, ``logs/csv/version_*/metrics.csv``);
nothing here computes an accuracy.
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
from typing import TYPE_CHECKING, Any

import torch

from lightly_simmim.atomic import atomic_write

if TYPE_CHECKING:
    from lightly_simmim.benchmark.config import BenchmarkConfig

__all__ = ["COLUMNS", "loss_curves", "machine", "write_report"]

#: Columns of results.csv, in order (results.json has the same keys per row).
COLUMNS = (
    "label",
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
    "folder",
)
_PROTOCOL_NAMES = {"knn": "kNN", "linear": "linear", "finetune": "fine-tune"}
_MEMORY_KINDS = {"cpu_max_rss": "RSS", "cuda_allocated": "CUDA"}


def machine() -> dict[str, Any]:
    """What the benchmark ran on: OS, CPU count, torch, accelerator."""
    info: dict[str, Any] = {
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


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _memory(row: dict[str, Any]) -> str:
    if row.get("peak_memory_mb") is None:
        return "–"
    kind = _MEMORY_KINDS.get(str(row.get("peak_memory_kind")), "")
    return f"{row['peak_memory_mb'] / 1024:.2f} GiB {kind}".rstrip()


def _markdown(
    rows: Sequence[dict[str, Any]],
    benchmark: BenchmarkConfig,
    command: str | None,
    info: dict[str, Any],
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
        "| row | method | encoder | pretrain epochs | batch | kNN top-1 | "
        "linear top-1 | fine-tune top-1 | pretrain time | peak memory |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        resumed = " (resumed)" if row.get("resumed") else ""
        lines.append(
            f"| {row['label']} | {row['method'] or '–'} | {row['encoder'] or '–'} | "
            f"{row['pretrain_epochs']} | {row['batch_size'] or '–'} | "
            f"{_percent(row['knn_top1'])} | {_percent(row['linear_top1'])} | "
            f"{_percent(row['finetune_top1'])} | "
            f"{_duration(row['pretrain_seconds'])}{resumed} | {_memory(row)} |"
        )
    lines += [
        "",
        "Top-1 accuracy in percent on the test split (top-5 in results.csv). "
        "Pretrain time is the wall time of the pretraining process that finished the "
        "run, its final kNN included ('resumed': of the last start only). Peak memory "
        "is that process's peak resident set size on CPU (data loader workers not "
        "counted), or the most memory torch allocated on the GPU.",
        "",
        "![accuracy per protocol](accuracy.png)",
        "",
        "![pretraining loss](loss_curves.png)",
        "",
    ]
    return "\n".join(lines)


def _plot_accuracy(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [
        p for p in _PROTOCOL_NAMES if any(r[f"{p}_top1"] is not None for r in rows)
    ]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4))
    width = 0.8 / max(1, len(protocols))
    for index, protocol in enumerate(protocols):
        values = [row[f"{protocol}_top1"] for row in rows]
        offset = (index - (len(protocols) - 1) / 2) * width
        positions = [i + offset for i in range(len(rows))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(positions, heights, width, label=_PROTOCOL_NAMES[protocol])
        for bar, value in zip(bars, values, strict=True):
            if value is not None:
                axes.annotate(
                    f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    axes.set_xticks(range(len(rows)), [row["label"] for row in rows], rotation=20)
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 105)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("Accuracy per protocol")
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def _plot_losses(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for row in rows:
        if row["method"] is not None:
            points = loss_curves(Path(row["folder"]))
            if points:
                curves[row["label"]] = points
    count = max(1, len(curves))
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count, 3), squeeze=False)
    for axis, (label, points) in zip(axes[0], curves.items(), strict=False):
        steps, losses = zip(*points, strict=True)
        axis.plot(steps, losses, linewidth=1)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("train loss")
    if not curves:
        axes[0][0].text(0.5, 0.5, "no loss logged yet", ha="center", va="center")
    figure.suptitle("Pretraining loss (each method's own loss)", fontsize=10)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def _save(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())


def write_report(
    rows: Sequence[dict[str, Any]],
    output_dir: str | os.PathLike[str],
    benchmark: BenchmarkConfig,
    command: str | None = None,
) -> dict[str, Path]:
    """Writes the table, the CSV, the JSON and the two plots for ``rows``.

    Args:
        rows: Table rows with the keys of :data:`COLUMNS`.
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
    markdown = _markdown(rows, benchmark, command, info, written)
    atomic_write(paths["md"], markdown.encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(paths["csv"], buffer.getvalue().encode())
    payload = {
        "name": benchmark.name,
        "command": command,
        "written": written,
        "machine": info,
        "config": asdict(benchmark),
        "rows": list(rows),
    }
    atomic_write(paths["json"], (json.dumps(payload, indent=2) + "\n").encode())
    _plot_accuracy(rows, paths["accuracy"])
    _plot_losses(rows, paths["losses"])
    return paths
