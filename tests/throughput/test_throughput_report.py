"""The report of a measurement: the JSON keys it documents, the markdown table."""

from __future__ import annotations

import json

import pytest
import torch

from lightly_simmim.throughput import ThroughputReport
from lightly_simmim.throughput.flops import MatmulPeak
from lightly_simmim.throughput.machine import describe_machine
from lightly_simmim.throughput.report import RowResult, Setup
from lightly_simmim.throughput.timing import Sample

# The keys the JSON report documents (lightly_simmim/throughput/report.py).
TOP_KEYS = {"machine", "setup", "matmul_peak", "memory_kind", "rows", "notes"}
ROW_KEYS = {
    "row",
    "status",
    "reason",
    "images_per_second",
    "ratio_to_simmim",
    "peak_memory_mib",
    "flops_per_image",
    "achieved_flops_per_second",
    "mfu",
    "parameters",
    "notes",
}
RATE_KEYS = {"median", "min", "max", "samples"}
SETUP_KEYS = {
    "target",
    "encoder",
    "batch_size",
    "image_size",
    "precision",
    "precision_reason",
    "compile",
    "repeats",
    "warmup",
    "steps",
}
MACHINE_KEYS = {
    "device",
    "name",
    "cpu",
    "cores",
    "threads",
    "torch",
    "timm",
    "lightly",
    "lightning",
    "transformers",
}


def _synthetic_report() -> ThroughputReport:
    setup = Setup("t (spec)", "vit(...)", 4, 16, "32", "", False, 2, 1, 1)
    rows = [
        RowResult("simmim", [Sample(100, 1.0), Sample(300, 1.0)], None, 10.0, 2e9),
        RowResult("hf", [Sample(100, 1.0), Sample(100, 1.0)], None, 12.0, 2e9),
        RowResult("mae", absent="needs a ViT"),
    ]
    peak = MatmulPeak(1e12, "fp32", 2048)
    machine = describe_machine(torch.device("cpu"))
    return ThroughputReport(machine, setup, peak, "cpu_peak_rss_growth", rows)


def test_throughput_report__json_has_the_documented_keys_and_maths() -> None:
    data = json.loads(json.dumps(_synthetic_report().to_dict()))
    assert set(data) == TOP_KEYS
    assert set(data["machine"]) == MACHINE_KEYS
    assert set(data["setup"]) == SETUP_KEYS
    assert set(data["matmul_peak"]) == {"flops_per_second", "dtype", "size"}
    simmim, hf, mae = data["rows"]
    assert all(set(row) == ROW_KEYS for row in data["rows"])
    assert set(simmim["images_per_second"]) == RATE_KEYS
    assert simmim["images_per_second"]["median"] == 200.0
    assert hf["ratio_to_simmim"] == 0.5
    assert hf["achieved_flops_per_second"] == 2e11  # 2 GFLOP x 100 images/s
    assert hf["mfu"] == pytest.approx(0.2)
    assert mae["status"] == "absent" and mae["images_per_second"] is None


def test_throughput_report__markdown_table() -> None:
    markdown = _synthetic_report().to_markdown()
    assert "| simmim | 200.0 (100.0-300.0) | 1.00x | 10 MiB | 2 | 400 GFLOP/s " in (
        markdown
    )
    assert (
        "| hf | 100.0 (100.0-100.0) | 0.50x | 12 MiB | 2 | 200 GFLOP/s | 20.0% |"
        in (markdown)
    )
    assert "matmul peak (MFU denominator): 1 TFLOP/s, fp32 2048x2048" in markdown
    assert "- mae: absent: needs a ViT" in markdown
