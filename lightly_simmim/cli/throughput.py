"""``lightly-simmim throughput``: train-step images/s of SimMIM against the others."""

from __future__ import annotations

import argparse
import json
import sys

from lightly_simmim.cli.common import (
    DEFAULT_CONFIG,
    EXIT_USAGE,
    HELP_FORMATTER,
    Subparsers,
    add_overrides,
)

# The names of lightly_simmim.throughput, repeated so that `--help` does not import
# it (and Lightning with it); tests check they agree.
ROWS = (
    "simmim",
    "hf",
    "mae",
    "byol",
    "data",
    "loop",
    "simmim-unfused",
    "simmim-fullhead",
    "masks",
)
DEFAULT_ROWS = ROWS[:6]
PRECISIONS = ("32", "bf16-mixed", "16-mixed", "auto")

DESCRIPTION = f"""\
Measures training throughput in one process, repetitions interleaved
round-robin across rows (warm-up excluded; median and min-max):

  simmim  this package's SimMIM step as pretrain trains it
  hf      Hugging Face's ViTForMaskedImageModeling on the identical ViT,
          torch.optim.AdamW defaults (pip install "lightly-simmim[bench]")
  mae     this package's MAE on the same encoder (ViTs only)
  byol    this package's BYOL on the same encoder
  data    the data path alone: dataset -> transform -> collate -> device
  loop    the whole `pretrain` loop (max_steps runs, kNN off)

A step is forward + backward + optimiser step on a batch already on the
device. Columns: images/s, ratio to simmim, peak memory, counted FLOPs
per image, achieved FLOP/s and MFU against the matmul peak measured in
the same run and dtype. The target is a shipped config (default
'{DEFAULT_CONFIG}'), a run-config or benchmark YAML (MAE / BYOL get its
method rows' settings), or an encoder spec TIMM_NAME:KEY=VALUE,... for
an ad-hoc model (methods at their defaults)."""

EPILOG = """\
examples:
  lightly-simmim throughput
  lightly-simmim throughput vit_small_patch16_224:img_size=96,embed_dim=384,\
depth=6,num_heads=6 --batch-size 32
  lightly-simmim throughput benchmarks/configs/fashion_mnist_cpu.yaml \
--rows simmim,mae,byol --precision bf16-mixed
  lightly-simmim throughput vit_base_patch16_224 --batch-size 128 --device cuda \
--precision bf16-mixed --compile --rows simmim,hf --json vit_b.json"""


def _rows(text: str) -> tuple[str, ...]:
    """``--rows`` as a tuple of known row names."""
    rows = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise argparse.ArgumentTypeError(
            f"unknown rows {unknown}; choose from {','.join(ROWS)}"
            if unknown
            else f"no rows given; choose from {','.join(ROWS)}"
        )
    return rows


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_timing(parser: argparse.ArgumentParser) -> None:
    """The arguments of what is timed and how often."""
    parser.add_argument(
        "--repeats", type=_positive, default=5, metavar="N", help="default: 5"
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative,
        default=3,
        metavar="N",
        help="untimed steps per row first (default: 3)",
    )
    parser.add_argument(
        "--steps",
        type=_positive,
        default=5,
        metavar="N",
        help="steps per repetition (default: 5)",
    )
    parser.add_argument(
        "--rows",
        type=_rows,
        default=DEFAULT_ROWS,
        metavar="ROW,...",
        help=f"rows in table order (default: {','.join(DEFAULT_ROWS)}; also "
        "simmim-unfused (AdamW without its fused kernel) and simmim-fullhead (the "
        "head on every position): what those two choices are worth; masks: the mask "
        "generation alone, per mask)",
    )


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``throughput`` command and its arguments.

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "throughput",
        help="train-step images/s of SimMIM vs Hugging Face, MAE, BYOL, the data "
        "path and the whole loop, with memory, FLOPs and MFU",
        formatter_class=HELP_FORMATTER,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "target",
        nargs="?",
        default=DEFAULT_CONFIG,
        metavar="CONFIG_OR_ENCODER",
        help=f"shipped config name, YAML file or encoder spec (default: "
        f"{DEFAULT_CONFIG})",
    )
    add_overrides(
        parser,
        "override one value of the target's config, dotted key = YAML value "
        "(benchmark files: their own keys, e.g. base.data.root=/data); repeatable",
    )
    parser.add_argument(
        "--batch-size", type=_positive, metavar="N", help="default: the config's"
    )
    parser.add_argument(
        "--image-size",
        type=_positive,
        metavar="N",
        help="default: the config's (sets encoder.kwargs.img_size too if given)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="default: the config's trainer.precision; auto = bf16-mixed where "
        "the device does bf16 natively (CUDA 8.0+, AVX512-BF16 / AMX CPUs)",
    )
    parser.add_argument(
        "--hf-precision",
        choices=PRECISIONS,
        default=None,
        help="the hf row's own precision (e.g. 32, what an HF user gets by default, "
        "beside this package's auto); default: the table's",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile every row's model"
    )
    _add_timing(parser)
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="also write the report as JSON"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Measures and prints the table (and writes the JSON report if asked).

    Args:
        args: The arguments of :func:`add_parser`.

    Returns:
        0, or 2 when no requested row could be measured (the table's notes say why).

    Raises:
        ValueError: A bad target, override, precision or device.
    """
    # Imported here: they pull in Lightning, which `--help` should not wait for.
    from lightly_simmim.atomic import atomic_write
    from lightly_simmim.throughput import ThroughputSettings, measure_throughput

    settings = ThroughputSettings(
        target=args.target,
        overrides=tuple(args.overrides),
        batch_size=args.batch_size,
        image_size=args.image_size,
        precision=args.precision,
        hf_precision=args.hf_precision,
        device=args.device,
        compile=args.compile,
        repeats=args.repeats,
        warmup=args.warmup,
        steps=args.steps,
        rows=args.rows,
    )
    report = measure_throughput(settings)
    print(report.to_markdown(), end="", flush=True)
    if args.json is not None:
        text = json.dumps(report.to_dict(), indent=2) + "\n"
        path = atomic_write(args.json, text.encode("utf-8"))
        print(f"\nwrote {path}", flush=True)
    if all(row.absent is not None for row in report.rows):
        # A table without a number is a failed measurement, not a result.
        print(
            "lightly-simmim throughput: error: no requested row could be measured; "
            "the notes above give each row's reason.",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_USAGE
    return 0
