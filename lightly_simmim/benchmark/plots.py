"""The benchmark's plots: accuracy per protocol, per layer, and the loss curves.

Each plot shows the spread over seeds: bars and lines are means, error bars the
sample standard deviation, and every seed's own value is a dot. Files are written
atomically (a PNG in memory, then :func:`~lightly_simmim.atomic.atomic_write`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightly_simmim.atomic import atomic_write
from lightly_simmim.benchmark.summary import PROBES, RowSummary, Spread

__all__ = ["plot_accuracy", "plot_layers", "plot_losses"]

_NAMES = {"knn": "kNN", "linear": "linear", "finetune": "fine-tune"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())
    _pyplot().close(figure)


def _error(spread: Spread | None) -> float:
    return 0.0 if spread is None or spread.std is None else spread.std


def plot_accuracy(rows: Sequence[RowSummary], path: Path) -> None:
    """Grouped bars: one group per row, one bar per protocol, seeds as dots."""
    plt = _pyplot()
    protocols = [p for p in _NAMES if any(row.top1.get(p) for row in rows)]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(rows) + 2), 4))
    width = 0.8 / max(1, len(protocols))
    for index, protocol in enumerate(protocols):
        offset = (index - (len(protocols) - 1) / 2) * width
        spreads = [row.top1.get(protocol) for row in rows]
        positions = [i + offset for i in range(len(rows))]
        heights = [0.0 if s is None else s.mean for s in spreads]
        errors = [_error(s) for s in spreads]
        bars = axes.bar(
            positions, heights, width, yerr=errors, capsize=2, label=_NAMES[protocol]
        )
        for bar, spread in zip(bars, spreads, strict=True):
            if spread is None:
                continue
            centre = bar.get_x() + bar.get_width() / 2
            axes.scatter(
                [centre] * len(spread.values), spread.values, s=6, c="black", zorder=3
            )
            axes.annotate(
                f"{spread.mean:.1f}",
                (centre, bar.get_height() + _error(spread)),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    axes.set_xticks(range(len(rows)), [row.label for row in rows], rotation=20)
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 105)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("Accuracy per protocol (mean ± std over seeds; dots: seeds)")
    figure.tight_layout()
    _save(figure, path)


def plot_layers(rows: Sequence[RowSummary], path: Path) -> None:
    """One panel per row: kNN and linear top-1 of every layer, with error bars."""
    plt = _pyplot()
    probed = [row for row in rows if row.layers]
    count = max(1, len(probed))
    figure, axes = plt.subplots(
        1, count, figsize=(3.2 * count, 3.2), squeeze=False, sharey=True
    )
    for axis, row in zip(axes[0], probed, strict=False):
        for probe in PROBES:
            spreads = row.layers[probe]
            layers = list(range(len(spreads)))
            axis.errorbar(
                layers,
                [s.mean for s in spreads],
                yerr=[_error(s) for s in spreads],
                marker="o",
                markersize=3,
                capsize=2,
                label=_NAMES[probe],
            )
            for layer, spread in zip(layers, spreads, strict=True):
                axis.scatter(
                    [layer] * len(spread.values), spread.values, s=4, c="black"
                )
        axis.set_xticks(range(len(row.modules)), row.modules, rotation=45, fontsize=7)
        axis.set_title(row.label, fontsize=9)
        axis.set_ylabel("top-1 accuracy (%)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Probes per layer (average-pooled tokens)", fontsize=10)
    figure.tight_layout()
    _save(figure, path)


def plot_losses(
    rows: Sequence[RowSummary],
    path: Path,
    curves_of: Callable[[Path], list[tuple[int, float]]],
) -> None:
    """One panel per pretrained row, one curve per seed."""
    plt = _pyplot()
    panels: dict[str, list[tuple[str, list[tuple[int, float]]]]] = {}
    for row in rows:
        for run in row.runs:
            if run.get("method") is None:
                continue
            points = curves_of(Path(run["folder"]))
            if points:
                seed = run.get("seed")
                name = "" if seed is None else f"seed {seed}"
                panels.setdefault(row.label, []).append((name, points))
    count = max(1, len(panels))
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count, 3), squeeze=False)
    for axis, (label, curves) in zip(axes[0], panels.items(), strict=False):
        for name, points in curves:
            steps, losses = zip(*points, strict=True)
            axis.plot(steps, losses, linewidth=1, label=name or None)
        if len(curves) > 1:
            axis.legend(fontsize=7)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("train loss")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no loss logged yet", ha="center", va="center")
    figure.suptitle("Pretraining loss (each method's own loss)", fontsize=10)
    figure.tight_layout()
    _save(figure, path)
