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


def test_evaluate__output_in_the_run_folder_or_a_folder_is_refused_first(
    tmp_path: Path,
    pretrained_run: Callable[[str], Path],
    run_main: Callable[..., object],
    assert_user_error: Callable[..., str],
) -> None:
    """--output used to replace config.yaml or last.ckpt with the result JSON (exit
    0), and a folder failed only after the whole evaluation."""
    run = pretrained_run("vit")
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}

    def refused(output: Path) -> str:
        result = run_main("evaluate", str(run), "--output", str(output))
        return assert_user_error(result, 2)

    for target in (run / "config.yaml", run / "checkpoints" / "last.ckpt"):
        err = refused(target)
        assert "lies in the run folder" in err and "write it elsewhere" in err
    err = refused(tmp_path)
    assert "is a folder; give the JSON file's name" in err
    after = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert after == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "options"),
    [
        ("linear", ["--layer", "-1", "--pooling", "avg"]),
        ("finetune", ["--batch-size", "16"]),
        ("layers", []),
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
    if protocol == "layers":  # one line per block, the best named
        assert result.stdout.count("): kNN top-1") == len(saved["layers"]) >= 1
        assert f"({saved['best_linear']['module']})" in result.stdout


def test_evaluate_run__missing_run_names_what_a_run_folder_holds(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError, match="neither a run folder") as info:
        evaluate_run(tmp_path / "nope", "knn")
    assert "config.yaml" in str(info.value)
    assert not (tmp_path / "nope").exists()  # nothing written


# Two CPU processes through Lightning's DDP (gloo over loopback), as a multi-GPU run
# would evaluate; fp32 so that both runs compute alike.
DDP = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
FP32 = ["trainer.precision=32", "data.limit_eval=33"]  # 33: shards of 17 and 16


@pytest.fixture
def tiny_run(
    tmp_path: Path, pretrain_args: Callable[..., list[str]], run_cli: RunCli
) -> Path:
    """A tiny pretrained run of this test's own (64 training images)."""
    result = run_cli(*pretrain_args())
    assert result.returncode == 0, result.stderr
    return tmp_path / "runs" / "simmim"


@pytest.mark.slow
def test_evaluate__finetune_on_two_ddp_processes_uses_the_global_batch(
    tiny_run: Path, run_cli: RunCli
) -> None:
    args = ["--protocol", "finetune", "--epochs", "2", "--batch-size", "8"]
    result = run_cli("evaluate", *args, str(tiny_run), "--set", *DDP, *FP32)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr  # rank 1 took part
    assert result.stdout.count("fine-tune top-1:") == 1  # rank 0 reports alone
    saved = json.loads((tiny_run / "eval" / "finetune.json").read_text())
    settings = saved["settings"]
    # 8 images per process and step, 2 processes: 16 per step, and the peak LR
    # scaled from base_lr by 16 / 512.
    assert settings["world_size"] == 2 and settings["global_batch_size"] == 16
    assert settings["lr"] == pytest.approx(settings["base_lr"] * 16 / 512)
    assert settings["precision"] == "32-true"
    assert len(saved["history"]) == 2
    # Every test image scored once over both processes: hits out of 33 (a padded
    # sampler would score 34).
    for record in saved["history"]:
        hits = record["top1"] * 33 / 100
        assert hits == pytest.approx(round(hits), abs=1e-6), record
    assert settings["num_val"] == 33


@pytest.mark.slow
def test_evaluate__linear_probe_on_two_ddp_processes_gathers_every_feature(
    tiny_run: Path, run_cli: RunCli
) -> None:
    args = ["--protocol", "linear", "--epochs", "3", str(tiny_run), "--set"]
    single = run_cli("evaluate", *args, *FP32)
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((tiny_run / "eval" / "linear.json").read_text())
    double = run_cli("evaluate", *args, *DDP, *FP32)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "MEMBER: 2/2" in double.stdout + double.stderr  # rank 1 took part
    shared = json.loads((tiny_run / "eval" / "linear.json").read_text())
    # Both processes encode half of the images; the gathered features, in dataset
    # order, train the same probe as one process's (up to one test image from
    # floating-point differences between batch compositions).
    assert abs(shared["top1"] - alone["top1"]) <= 100 / 33 + 1e-9
    assert shared["checkpoint"] == alone["checkpoint"]


def test_evaluate_run__records_the_k_that_voted(
    pretrained_run: Callable[[str], Path],
) -> None:
    """k is clipped to the memory bank; the result said k: 1000 for 32 images."""
    result, _ = evaluate_run(pretrained_run("vit"), "knn", ["eval.knn_k=1000"])
    assert result["k"] == result["train_images"] < 1000
