"""Evaluating a run folder (``lightly_simmim.evaluation.protocol``): kNN, linear probe
and fine-tune, through ``lightly-simmim evaluate`` and ``evaluate_run``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lightly_simmim.evaluation.protocol import evaluate_run

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.slow
def test_evaluate__knn_of_a_run_is_the_end_of_training_knn(
    tmp_path: Path, pretrained_run: Callable[[str], Path], run_cli: RunCli
) -> None:
    run = pretrained_run("vit")
    report = tmp_path / "knn.json"
    result = run_cli("evaluate", "--protocol", "knn", str(run), "--output", str(report))
    assert result.returncode == 0, result.stderr
    assert "kNN top-1:" in result.stdout
    # The same weights and data give the kNN accuracy of the end of training.
    trained = json.loads((run / "metrics.json").read_text())["knn"]
    assert json.loads(report.read_text())["knn"]["top1"] == trained["top1"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "options"),
    [
        ("linear", ["--layer", "-1", "--pooling", "avg"]),
        ("finetune", ["--batch-size", "16"]),
    ],
)
def test_evaluate__trains_a_protocol_and_writes_its_json(
    pretrained_run: Callable[[str], Path],
    run_cli: RunCli,
    protocol: str,
    options: list[str],
) -> None:
    run = pretrained_run("vit")
    args = ["--protocol", protocol, "--epochs", "2", *options, str(run)]
    result = run_cli("evaluate", *args)
    assert result.returncode == 0, result.stderr
    saved = json.loads((run / "eval" / f"{protocol}.json").read_text())
    assert 0.0 <= saved["top1"] <= saved["top5"] <= 100.0
    assert saved["checkpoint"] == str(run / "checkpoints" / "last.ckpt")


def test_evaluate_run__missing_run_names_what_a_run_folder_holds(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError, match="neither a run folder") as info:
        evaluate_run(tmp_path / "nope", "knn")
    assert "config.yaml" in str(info.value)
    assert not (tmp_path / "nope").exists()  # nothing written
