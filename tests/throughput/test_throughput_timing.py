"""Interleaved repetitions, their spread, and the memory probe."""

from __future__ import annotations

import pytest
import torch

from lightly_simmim.throughput.memory import MemoryProbe
from lightly_simmim.throughput.timing import Sample, Spread, interleave

CPU = torch.device("cpu")


class _Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def warm_up(self, steps: int) -> None:
        pass

    def measure(self, steps: int) -> Sample:
        self.log.append(self.name)
        return Sample(images=steps, seconds=1.0)


def test_interleave__round_robin_starting_one_row_later_each_round() -> None:
    log: list[str] = []
    rows = [_Recorder(name, log) for name in "abc"]
    samples = interleave(rows, repeats=3, steps=4, progress=lambda line: None)
    assert log == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(taken) for name, taken in samples.items()} == dict.fromkeys(
        "abc", 3
    )
    assert samples["a"][0] == Sample(images=4, seconds=1.0)


def test_spread__median_min_max_of_rates() -> None:
    samples = [Sample(10, 1.0), Sample(30, 1.0), Sample(40, 2.0), Sample(50, 1.0)]
    assert Spread.of(samples) == Spread(median=25.0, low=10.0, high=50.0)


def test_memory_probe__sees_a_large_allocation_on_cpu() -> None:
    probe = MemoryProbe(CPU)
    probe.start()
    if probe.kind is None:
        pytest.skip("no /proc/self/status on this system")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32
    block.add_(1)
    del block
    peak = probe.peak_mib()
    assert peak is not None
    if probe.kind == "cpu_peak_rss_growth":
        assert peak >= 60  # the peak survives the free
