"""The report: tables and plots made only from what the run folders hold."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from PIL import Image

from lightly_simmim.benchmark import BenchmarkConfig, write_report
from lightly_simmim.benchmark.report import COLUMNS, loss_curves


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


def test_write_report__table_csv_json_and_plots(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "simmim"
    _log(run, 0, [(9, "1.0"), (19, "0.5")])
    rows = [
        _row(
            "simmim",
            run,
            method="simmim",
            encoder="vit_tiny_patch16_224",
            pretrain_epochs=2,
            batch_size=128,
            knn_top1=71.234,
            knn_top5=98.0,
            linear_top1=75.5,
            finetune_top1=80.0,
            pretrain_seconds=300.0,
            peak_memory_mb=2048.0,
            peak_memory_kind="cpu_max_rss",
            resumed=True,
        ),
        _row("raw-pixels", tmp_path / "baselines", kind="baseline", knn_top1=79.0),
    ]
    config = BenchmarkConfig(name="tiny", methods={"simmim": {}})
    paths = write_report(rows, tmp_path, config, command="lightly-simmim benchmark")

    markdown = paths["md"].read_text()
    assert "# Benchmark: tiny" in markdown and "lightly-simmim benchmark" in markdown
    assert (
        "| simmim | simmim | vit_tiny_patch16_224 | 2 | 128 | 71.23 | 75.50 | 80.00 "
        "| 5.0 min (resumed) | 2.00 GiB RSS |"
    ) in markdown
    assert "| raw-pixels | – | – | 0 | – | 79.00 | – | – | – | – |" in markdown

    with paths["csv"].open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == list(COLUMNS)
    assert records[0]["knn_top1"] == "71.234" and records[1]["linear_top1"] == ""

    payload = json.loads(paths["json"].read_text())
    assert payload["rows"] == rows and payload["name"] == "tiny"
    assert payload["machine"]["cpu_count"] >= 1
    assert payload["config"]["methods"] == {"simmim": {}}

    for key in ("accuracy", "losses"):
        with Image.open(paths[key]) as image:
            assert image.format == "PNG" and image.width > 100
    # Nothing half-written is left beside the files.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        ["results.md", "results.csv", "results.json", "accuracy.png", "loss_curves.png"]
    )
