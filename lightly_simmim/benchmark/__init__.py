"""The benchmark suite: methods pretrained and evaluated alike, in one table.

``lightly-simmim benchmark --config benchmarks/configs/<name>.yaml`` reads a
benchmark config (:mod:`.config`), pretrains and evaluates every method and
baseline (:mod:`.runner`) and writes the tables and plots (:mod:`.report`).
"""

from lightly_simmim.benchmark.config import (
    PROTOCOLS,
    Baselines,
    BenchmarkConfig,
    SeededRun,
    load_benchmark_config,
    method_configs,
    seeded_runs,
)
from lightly_simmim.benchmark.report import write_report
from lightly_simmim.benchmark.runner import BenchmarkError, RawPixels, run_benchmark

__all__ = [
    "PROTOCOLS",
    "Baselines",
    "BenchmarkConfig",
    "BenchmarkError",
    "RawPixels",
    "SeededRun",
    "load_benchmark_config",
    "method_configs",
    "run_benchmark",
    "seeded_runs",
    "write_report",
]
