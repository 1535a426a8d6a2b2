"""``lightly-simmim benchmark``: pretrain and evaluate several methods alike."""

from __future__ import annotations

import argparse
import shlex

from lightly_simmim.cli.common import HELP_FORMATTER, Subparsers, add_overrides

DESCRIPTION = """\
Pretrains every method a benchmark config lists (each in its own
process, as `pretrain` would), evaluates each with kNN, linear probe
and fine-tune, adds the baselines (from scratch, raw pixels, the
single-token SimMIM ablation) and writes results.md / .csv / .json and
PNG plots into the config's output_dir. Run the same command again to
resume: finished runs and evaluations are reused."""

OVERRIDE_HELP = (
    "override a benchmark config value, e.g. base.data.root=/data "
    "methods.mae.method.mask_ratio=0.5 linear.epochs=20"
)


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``benchmark`` command and its arguments.

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "benchmark",
        help="pretrain and evaluate several methods alike, into one table",
        formatter_class=HELP_FORMATTER,
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--config",
        required=True,
        metavar="YAML",
        help="benchmark config, e.g. benchmarks/configs/fashion_mnist_smoke.yaml",
    )
    parser.add_argument(
        "--output-dir", default=None, help="write here instead of the config's"
    )
    add_overrides(parser, OVERRIDE_HELP)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs (or resumes) the benchmark and prints its ``results.md``.

    Args:
        args: The arguments of :func:`add_parser`, plus ``argv`` (the command line
            after the program name, set by :func:`lightly_simmim.cli.main`).

    Returns:
        0 once every row is done.

    Raises:
        BenchmarkError: A row's pretraining failed (exit status 1).
    """
    # Lazy import: the benchmark pulls in torch, Lightning and matplotlib.
    from lightly_simmim.benchmark import load_benchmark_config, run_benchmark

    config = load_benchmark_config(args.config, args.overrides)
    if args.output_dir is not None:
        config.output_dir = args.output_dir
    # Recorded in results.md, so that a reader can rerun exactly this benchmark.
    command = shlex.join(["lightly-simmim", *args.argv])
    folder = run_benchmark(config, command=command)
    print(f"[benchmark] done: {folder / 'results.md'}")
    print((folder / "results.md").read_text())
    return 0
