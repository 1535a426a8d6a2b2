"""The ``lightly-simmim`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightly_simmim import registry


def _cmd_list(args: argparse.Namespace) -> int:
    from lightly_simmim.data import DATASETS

    # describe() reads entry point metadata only: listing imports no plugin, so a
    # broken one cannot break the listing; `get` reports it when it is used.
    for short in registry.GROUPS:
        print(f"{short}:")
        for name, dist, value in registry.describe(short):
            print(f"  {name:<12} {value}  [{dist}]")
    print("datasets:")
    for name, description in DATASETS.items():
        print(f"  {name:<24} {description}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lightly_simmim.demo import run_demo

    result = run_demo(
        epochs=args.epochs,
        batch_size=args.batch_size,
        output_dir=args.output_dir,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    print(
        f"done in {result.seconds:.0f} s: kNN top-1 {result.knn_before['top1']:.2f}% "
        f"-> {result.knn_after['top1']:.2f}%"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lightly-simmim`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="lightly-simmim",
        description="SimMIM masked image modeling for lightly.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="pretrain a small ViT with SimMIM on the embedded Fashion-MNIST (CPU, "
        "minutes) and print kNN accuracy before and after",
        description="Plain-PyTorch SimMIM on the embedded 10,000-image Fashion-MNIST "
        "subset: no data root, no network. Prints the loss, kNN top-1 before and after "
        "pretraining, and writes OUTPUT_DIR/reconstruction.png.",
    )
    demo.add_argument("--epochs", type=int, default=3, help="passes over the data (3)")
    demo.add_argument(
        "--batch-size", type=int, default=128, help="images per step (128)"
    )
    demo.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument(
        "--output-dir", default="runs/demo", help="where the PNG goes (runs/demo)"
    )
    demo.set_defaults(func=_cmd_demo)

    lister = sub.add_parser(
        "list",
        help="list the registered methods, encoders, transforms, heads, losses and "
        "the datasets",
        description="Lists every component found through the lightly.* entry point "
        "groups (third-party plugins included) and the datasets known by name.",
    )
    lister.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightly-simmim`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        # User-facing problems (bad settings, missing data, diverged loss): a message,
        # not a traceback.
        print(f"lightly-simmim {args.command}: error: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
