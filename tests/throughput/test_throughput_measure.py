"""Whole measurements on tiny models: every row, absent rows, compile failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lightly_simmim.throughput import (
    ROWS,
    ThroughputReport,
    ThroughputSettings,
    measure_throughput,
)
from lightly_simmim.throughput.loop import BatchTimer

STEP_ROWS = ("simmim", "hf", "mae", "byol", "simmim-unfused", "simmim-fullhead")
TINY_VIT = {
    "img_size": 16,
    "patch_size": 4,
    "in_chans": 1,
    "embed_dim": 32,
    "depth": 1,
    "num_heads": 2,
}


@pytest.fixture
def tiny_benchmark(tmp_path: Path) -> Path:
    """A benchmark YAML on disk: a depth-1 ViT on 16 px Fashion-MNIST, every
    method small, a loop short enough for a test."""
    base = {
        "encoder": {"name": "vit_tiny_patch16_224", "kwargs": TINY_VIT},
        "data": {
            "input_size": 16,
            "in_chans": 1,
            "batch_size": 8,
            "num_workers": 0,
            "limit_train": 64,
            "limit_eval": 16,
        },
        "trainer": {
            "epochs": 1,
            "accelerator": "cpu",
            "precision": "32",
            "progress_bar": False,
            "log_every_n_steps": 1,
            "online_classifier": False,
        },
    }
    methods = {
        "simmim": {"method": {"name": "simmim", "mask_patch_size": 8}},
        "mae": {"method": {"decoder_dim": 16, "decoder_depth": 1}},
        "byol": {
            "method": {
                "projection_hidden_dim": 32,
                "projection_dim": 16,
                "prediction_hidden_dim": 32,
            }
        },
    }
    path = tmp_path / "tiny_benchmark.yaml"
    path.write_text(yaml.safe_dump({"base": base, "methods": methods}))
    return path


def _measure(target: Path | str, rows: tuple[str, ...], **kwargs: Any) -> Any:
    settings = ThroughputSettings(
        target=str(target),
        device="cpu",
        repeats=2,
        warmup=1,
        steps=1,
        rows=rows,
        **kwargs,
    )
    return measure_throughput(settings, progress=lambda line: None)


def _check_measured(report: ThroughputReport, rows: tuple[str, ...]) -> None:
    data = report.to_dict()
    assert [row["row"] for row in data["rows"]] == list(rows)
    for row in data["rows"]:
        assert row["status"] == "measured", row
        rates = row["images_per_second"]
        assert len(rates["samples"]) == 2
        assert 0 < rates["min"] <= rates["median"] <= rates["max"]
        assert row["peak_memory_mib"] is not None and row["peak_memory_mib"] >= 0
        if row["row"] in STEP_ROWS:
            assert row["flops_per_image"] > 0 and row["parameters"] > 0
            assert row["achieved_flops_per_second"] > 0 and row["mfu"] > 0
    assert data["rows"][0]["ratio_to_simmim"] == 1.0


def test_measure_throughput__every_method_row_has_positive_numbers(
    tiny_benchmark: Path,
) -> None:
    rows = ("simmim", "mae", "byol", "simmim-unfused", "simmim-fullhead", "masks")
    report = _measure(tiny_benchmark, rows)
    _check_measured(report, rows)
    markdown = report.to_markdown()
    for row in rows:
        assert f"\n| {row} | " in markdown
    assert report.setup.batch_size == 8 and report.setup.image_size == 16
    notes = markdown.split("Notes:")[1]
    # The ablations really turn their choice back (and only that).
    assert "simmim: AdamW as configured" in notes and "fused kernel on" in notes
    assert "simmim-unfused: AdamW" in notes and "fused kernel off" in notes
    assert "head and loss on every position" in notes
    assert report.matmul_peak is not None and report.matmul_peak.dtype == "fp32"


def test_measure_throughput__all_rows_on_a_tiny_model(tiny_benchmark: Path) -> None:
    pytest.importorskip("transformers")
    deterministic = torch.are_deterministic_algorithms_enabled()
    report = _measure(tiny_benchmark, ROWS)
    _check_measured(report, ROWS)
    # The loop's Trainer turns deterministic algorithms on for CPU runs; the rows
    # timed after it must not inherit that.
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    notes = "\n".join(report.notes)
    simmim, hf = report.row("simmim"), report.row("hf")
    assert simmim is not None and hf is not None
    assert simmim.parameters == hf.parameters
    assert f"simmim {simmim.parameters:,}, hf {hf.parameters:,} (identical)" in notes


def test_measure_throughput__rows_a_target_cannot_have_say_why() -> None:
    # A ConvNeXt: SimMIM and BYOL train it, MAE and HF's ViT cannot.
    report = _measure(
        "test_convnext",
        ("simmim", "mae", "byol", "hf"),
        batch_size=2,
        image_size=64,
    )
    data = {row["row"]: row for row in report.to_dict()["rows"]}
    assert data["simmim"]["status"] == data["byol"]["status"] == "measured"
    assert data["mae"]["status"] == "absent"
    assert "VisionTransformer" in data["mae"]["reason"]
    assert data["hf"]["status"] == "absent"
    assert (
        "ConvNeXt" in data["hf"]["reason"] or "transformers" in (data["hf"]["reason"])
    )
    assert "| mae | absent (see notes) |" in report.to_markdown()
    assert f"mae: absent: {data['mae']['reason']}" in report.to_markdown()


def test_measure_throughput__a_mask_covering_the_image_is_absent_with_the_fix() -> None:
    # At 32 px the paper's 32 px cells leave one cell: all masked, nothing to see.
    report = _measure("test_convnext", ("simmim",), batch_size=2, image_size=32)
    (row,) = report.to_dict()["rows"]
    assert row["status"] == "absent"
    assert "mask_patch_size" in row["reason"] and "1 of the 1 cell" in row["reason"]


def test_measure_throughput__failed_compile_is_reported_in_the_row(
    tiny_benchmark: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("inductor: no C++ compiler\nlong traceback")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    report = _measure(tiny_benchmark, ("simmim", "byol"), compile=True)
    for row in report.rows:
        assert row.absent == "torch.compile failed: inductor: no C++ compiler"


def test_batch_timer__a_run_shorter_than_the_window_says_what_to_raise() -> None:
    timer = BatchTimer(skip=2, timed=5, device=torch.device("cpu"))
    for index in range(4):
        timer.on_train_batch_end(None, None, None, None, index)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ended after 4 batches, before the 7"):
        timer.elapsed()
