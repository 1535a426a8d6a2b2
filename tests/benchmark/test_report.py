"""The report: tables and plots made only from what the run folders hold."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from PIL import Image

from lightly_simmim.benchmark import BenchmarkConfig, write_report
from lightly_simmim.benchmark.report import COLUMNS, loss_curves
from lightly_simmim.benchmark.summary import summarize


def _log(folder: Path, version: int, rows: list[tuple[int, str]]) -> None:
    path = folder / "logs" / "csv" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True)
    lines = ["epoch,lr,step,train_loss"]
    lines += [f"0,0.1,{step},{loss}" for step, loss in rows]
    path.write_text("\n".join(lines) + "\n")


def _row(label: str, folder: Path, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(label=label, kind="method", folder=str(folder), pretrain_epochs=0)
    row.update(values)
    return row


def test_loss_curves__joins_the_starts_of_a_resumed_run(tmp_path: Path) -> None:
    # The first start logged steps 9 and 19, was killed, and the resume (version_1)
    # replayed step 19 and went on; version_10 sorts after version_2 by number.
    _log(tmp_path, 0, [(9, "1.0"), (19, "0.9")])
    _log(tmp_path, 1, [(19, "0.8"), (29, "0.7")])
    _log(tmp_path, 2, [(39, "0.6")])
    _log(tmp_path, 10, [(49, "0.5"), (59, "")])  # a row without a loss is skipped
    assert loss_curves(tmp_path) == [
        (9, 1.0),
        (19, 0.8),
        (29, 0.7),
        (39, 0.6),
        (49, 0.5),
    ]
    assert loss_curves(tmp_path / "nothing") == []


def _layers(knn: list[float], linear: list[float]) -> list[dict[str, Any]]:
    return [
        {"layer": i, "module": f"blocks.{i}", "knn_top1": k, "linear_top1": lin}
        for i, (k, lin) in enumerate(zip(knn, linear, strict=True))
    ]


def test_write_report__table_csv_json_and_plots(tmp_path: Path) -> None:
    runs = [tmp_path / "runs" / f"simmim-seed{seed}" for seed in (0, 1)]
    _log(runs[0], 0, [(9, "1.0"), (19, "0.5")])
    _log(runs[1], 0, [(9, "1.1"), (19, "0.6")])
    common = {
        "method": "simmim",
        "encoder": "vit_tiny_patch16_224",
        "pretrain_epochs": 2,
        "batch_size": 128,
        "peak_memory_mb": 2048.0,
        "peak_memory_kind": "cpu_max_rss",
    }
    rows = [
        _row(
            "simmim",
            runs[0],
            seed=0,
            knn_top1=71.234,
            knn_top5=98.0,
            linear_top1=75.5,
            finetune_top1=80.0,
            pretrain_seconds=300.0,
            resumed=True,
            # Layer 1 is best for kNN in both seeds; for linear only on average.
            layers=_layers([60.0, 72.0, 71.0], [70.0, 77.0, 75.5]),
            **common,
        ),
        _row(
            "simmim",
            runs[1],
            seed=1,
            knn_top1=72.0,
            linear_top1=76.5,
            finetune_top1=82.0,
            pretrain_seconds=360.0,
            layers=_layers([61.0, 74.0, 72.0], [71.0, 76.0, 76.5]),
            **common,
        ),
        _row("raw-pixels", tmp_path / "baselines", kind="baseline", knn_top1=79.0),
    ]
    config = BenchmarkConfig(name="tiny", methods={"simmim": {}})
    paths = write_report(rows, tmp_path, config, command="lightly-simmim benchmark")

    markdown = paths["md"].read_text()
    assert "# Benchmark: tiny" in markdown and "lightly-simmim benchmark" in markdown
    # Sample standard deviations by hand: |a - b| / sqrt(2) for two values.
    knn_std = (72.0 - 71.234) / 2**0.5
    assert (
        "| simmim | simmim | vit_tiny_patch16_224 | 2 | 128 | 0, 1 | "
        f"71.62 ± {knn_std:.2f} | 73.00 ± 1.41 (blocks.1) | 76.00 ± 0.71 | "
        "76.50 ± 0.71 (blocks.1) | 81.00 ± 1.41 | 5.5 min (resumed) | 2.00 GiB RSS |"
    ) in markdown
    assert (
        "| raw-pixels | – | – | 0 | – | – | 79.00 (1 run) | – | – | – | – | – | – |"
    ) in markdown
    assert "![accuracy per layer](layers.png)" in markdown

    with paths["csv"].open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == list(COLUMNS)
    assert records[0]["knn_top1"] == "71.234" and records[2]["linear_top1"] == ""
    # Per run, its own best layer: seed 0's linear best is blocks.1, seed 1's
    # blocks.2.
    assert [r["linear_best_layer"] for r in records] == ["blocks.1", "blocks.2", ""]

    payload = json.loads(paths["json"].read_text())
    assert payload["rows"] == rows and payload["name"] == "tiny"
    assert payload["machine"]["cpu_count"] >= 1
    assert payload["config"]["methods"] == {"simmim": {}}
    summary = payload["summary"][0]
    assert summary["seeds"] == [0, 1]
    assert summary["finetune_top1"]["values"] == [80.0, 82.0]
    assert summary["linear_best_layer"]["module"] == "blocks.1"
    assert payload["summary"][1]["knn_top1"]["std"] is None

    for key in ("accuracy", "losses", "layers"):
        with Image.open(paths[key]) as image:
            assert image.format == "PNG" and image.width > 100
    # Nothing half-written is left beside the files.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        [
            "results.md",
            "results.csv",
            "results.json",
            "accuracy.png",
            "loss_curves.png",
            "layers.png",
        ]
    )


def test_summarize__last_layer_cells_fall_back_to_the_per_layer_probes() -> None:
    # A run probed per layer only: its kNN / linear cells are the last layer's;
    # a run with its own linear protocol keeps that number.
    probed = {"label": "a", "knn_top1": None, "linear_top1": None}
    probed["layers"] = _layers([50.0, 60.0], [55.0, 65.0])
    own = {"label": "a", "knn_top1": None, "linear_top1": 70.0}
    own["layers"] = _layers([52.0, 62.0], [57.0, 67.0])
    (row,) = summarize([probed, own])
    knn, linear = row.top1["knn"], row.top1["linear"]
    assert knn is not None and knn.values == (60.0, 62.0)
    assert linear is not None and linear.values == (65.0, 70.0)
    assert row.top1["finetune"] is None


def test_write_report__a_single_seed_best_layer_cell_names_layer_and_run(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "runs" / "byol-seed0"
    row = _row(
        "byol",
        folder,
        seed=0,
        method="byol",
        layers=_layers([60.0, 72.0, 71.0], [70.0, 77.0, 75.5]),
    )
    config = BenchmarkConfig(name="tiny", methods={"byol": {}})
    markdown = write_report([row], tmp_path, config)["md"].read_text()
    # kNN best blocks.1 (72.00), linear best blocks.1 (77.00); last layer 71 / 75.5.
    assert "| 71.00 (1 run) | 72.00 (blocks.1, 1 run) |" in markdown
    assert "| 75.50 (1 run) | 77.00 (blocks.1, 1 run) |" in markdown
