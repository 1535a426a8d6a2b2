"""Rows of the benchmark table from its runs: mean and spread over seeds.

A benchmark run is one (row label, seed) pair. :func:`summarize` groups the runs by
label, in the order they were first added, and gives every accuracy its mean, its
sample standard deviation (``ddof=1``; None for a single run) and the values it came
from. A run evaluated with the per-layer probes but not with the ``knn`` / ``linear``
protocols shows its last layer's probes there (average-pooled, like every other
layer). The best layer of a row is the layer with the highest *mean* accuracy over
the row's seeds, so all seeds of a row are read at the same layer.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from lightly_simmim.evaluation.results import JsonDict

__all__ = ["PROBES", "PROTOCOL_COLUMNS", "RowSummary", "Spread", "summarize"]

#: Accuracies of a run that the table shows, by their key in a run's row.
PROTOCOL_COLUMNS = ("knn", "linear", "finetune")
#: The probes of the per-layer protocol.
PROBES = ("knn", "linear")


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of one accuracy over seeds."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """None for one value (no spread can be estimated from it)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def format(self) -> str:
        """``"mean ± std"`` in percent, or the mean and ``(1 run)``."""
        std = self.std
        tail = " (1 run)" if std is None else f" ± {std:.2f}"
        return f"{self.mean:.2f}{tail}"


def _spread(values: Sequence[float | None]) -> Spread | None:
    measured = tuple(float(value) for value in values if value is not None)
    return Spread(measured) if measured else None


@dataclass
class RowSummary:
    """One row of the table: a label's runs, aggregated."""

    label: str
    runs: list[JsonDict]
    #: Protocol -> its top-1 over the runs (None if no run has it).
    top1: dict[str, Spread | None] = field(default_factory=dict)
    #: Probe -> per layer, its top-1 over the runs (empty without per-layer probes).
    layers: dict[str, list[Spread]] = field(default_factory=dict)
    #: Layer modules (``blocks.2``) in order, from the first run that has them.
    modules: list[str] = field(default_factory=list)

    @property
    def first(self) -> JsonDict:
        return self.runs[0]

    @property
    def seeds(self) -> list[int | None]:
        return [run.get("seed") for run in self.runs]

    def best_layer(self, probe: str) -> tuple[int, Spread] | None:
        """(index, spread) of the layer with the highest mean ``probe`` top-1."""
        spreads = self.layers.get(probe)
        if not spreads:
            return None
        index = max(range(len(spreads)), key=lambda i: (spreads[i].mean, i))
        return index, spreads[index]

    def to_dict(self) -> JsonDict:
        """The row as JSON data: means, stds and values of every accuracy."""

        def spread(value: Spread | None) -> JsonDict | None:
            if value is None:
                return None
            return {"mean": value.mean, "std": value.std, "values": list(value.values)}

        data: JsonDict = {
            "label": self.label,
            "seeds": self.seeds,
            **{f"{p}_top1": spread(self.top1.get(p)) for p in PROTOCOL_COLUMNS},
        }
        for probe in PROBES:
            best = self.best_layer(probe)
            data[f"{probe}_best_layer"] = None
            if best is not None:
                index, value = best
                data[f"{probe}_best_layer"] = {
                    "layer": index,
                    "module": self.modules[index],
                    **(spread(value) or {}),
                }
            data[f"{probe}_per_layer"] = [
                spread(value) for value in self.layers.get(probe, [])
            ]
        return data


def _top1(run: JsonDict, protocol: str) -> float | None:
    """The run's ``protocol`` top-1; for kNN / linear without their own protocol,
    the per-layer probes' last layer."""
    value: float | None = run.get(f"{protocol}_top1")
    layers = run.get("layers")
    if value is None and protocol in PROBES and layers:
        value = layers[-1][f"{protocol}_top1"]
    return value


def summarize(runs: Sequence[JsonDict]) -> list[RowSummary]:
    """Groups runs (rows of ``results.csv``) by label into table rows.

    Args:
        runs: One dict per run with ``label``, ``<protocol>_top1`` and, with
            per-layer probes, ``layers`` (a list of ``{"module", "knn_top1",
            "linear_top1", ...}``, one per layer).

    Returns:
        One summary per label, in the order of the labels' first runs.
    """
    grouped: dict[str, list[JsonDict]] = {}
    for run in runs:
        grouped.setdefault(run["label"], []).append(run)
    rows = []
    for label, members in grouped.items():
        row = RowSummary(label, members)
        for protocol in PROTOCOL_COLUMNS:
            row.top1[protocol] = _spread([_top1(r, protocol) for r in members])
        with_layers = [r["layers"] for r in members if r.get("layers")]
        if with_layers:
            row.modules = [layer["module"] for layer in with_layers[0]]
            for probe in PROBES:
                row.layers[probe] = [
                    Spread(tuple(float(run[i][f"{probe}_top1"]) for run in with_layers))
                    for i in range(len(row.modules))
                ]
        rows.append(row)
    return rows
