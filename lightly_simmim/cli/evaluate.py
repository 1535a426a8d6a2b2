"""``lightly-simmim evaluate``: kNN, linear probe or fine-tune of a pretrained run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightly_simmim.cli.common import HELP_FORMATTER, Subparsers, add_overrides

DESCRIPTION = """\
Rebuilds the model from the run's config.yaml, loads the checkpoint
(weights only) and evaluates its pooled features.

knn: weighted kNN (eval.knn_k neighbours, eval.knn_temperature) of the
test split against the training split, top-1 / top-5 in percent.
linear: a linear layer (after a parameter-free BatchNorm, as in MAE)
on frozen features of --layer / --pooling, 90 epochs by default.
finetune: the whole encoder with a new head, SimMIM's recipe (AdamW,
layer-wise LR decay, warmup + cosine, label smoothing), 100 epochs by
default.
layers: kNN and the linear probe on every block / stage (average-pooled
tokens), one line per layer; the best layer of each is named.
Results also go to RUN/eval/<protocol>.json."""

EPILOG = """\
examples:
  lightly-simmim evaluate --protocol knn runs/simmim
  lightly-simmim evaluate --protocol linear --epochs 20 --layer -2 --pooling avg \
runs/simmim
  lightly-simmim evaluate --protocol finetune --epochs 10 runs/simmim
  lightly-simmim evaluate --protocol layers --epochs 20 runs/simmim"""

#: How each protocol is named in the printed summary.
LABELS = {
    "knn": "kNN",
    "linear": "linear",
    "finetune": "fine-tune",
    "layers": "best layer's linear",
}


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``evaluate`` command and its arguments.

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a pretrained run or checkpoint (kNN, linear probe, fine-tune)",
        formatter_class=HELP_FORMATTER,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "run",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (uses checkpoints/last.ckpt) or a .ckpt file in one",
    )
    parser.add_argument(
        "--protocol",
        choices=tuple(LABELS),
        default="knn",
        help="evaluation protocol (default: knn)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="linear / layers / finetune epochs"
    )
    parser.add_argument(
        "--warmup-epochs", type=float, default=None, help="linear / finetune warmup"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="linear / finetune batch size"
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="linear / layers: learning rate (0.1); finetune: base_lr per 512 "
        "images (1.25e-3)",
    )
    parser.add_argument(
        "--layer",
        type=int,
        default=None,
        help="linear: block / stage index of the features (default: last; -2 is "
        "the one before)",
    )
    parser.add_argument(
        "--pooling",
        choices=("default", "avg", "cls"),
        default="default",
        help="linear: how tokens are pooled (default: the encoder's own)",
    )
    add_overrides(parser)
    parser.add_argument(
        "--output", metavar="FILE", default=None, help="also write the result as JSON"
    )
    parser.set_defaults(func=run)
    return parser


def recipe_options(args: argparse.Namespace) -> dict[str, object]:
    """The options that override the protocol's recipe (None = not given).

    ``--lr`` is the linear probe's learning rate, and the fine-tune's ``base_lr``
    (per 512 images); ``--layer`` / ``--pooling`` apply to the linear probe only.
    """
    options: dict[str, object] = {
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "batch_size": args.batch_size,
    }
    if args.protocol == "linear":
        options.update(lr=args.lr, layer=args.layer, pooling=args.pooling)
    elif args.protocol == "layers":
        options["lr"] = args.lr
    elif args.protocol == "finetune":
        options["base_lr"] = args.lr
    return options


def _check_output(output: Path, folder: Path) -> None:
    """Refuses an ``--output`` that is a folder or lies in the run folder.

    Raises:
        ValueError: Naming the path and where to write instead.
    """
    if output.is_dir():  # Path("") is "." too
        raise ValueError(
            f"--output {str(output)!r} is a folder; give the JSON file's name."
        )
    inside = output.resolve().is_relative_to(folder.resolve())
    if inside:
        # config.yaml, a checkpoint or eval/<protocol>.json would be replaced.
        raise ValueError(
            f"--output {str(output)!r} lies in the run folder {str(folder)!r}, whose "
            f"files it could replace; write it elsewhere (the result is written to "
            f"{str(folder / 'eval')!r} anyway)."
        )


def run(args: argparse.Namespace) -> int:
    """Evaluates the run, prints top-1 / top-5 and writes the result files.

    Args:
        args: The arguments of :func:`add_parser`.

    Returns:
        0 once the result is written (by global rank 0 alone under DDP).
    """
    # Lazy imports keep Lightning out of `lightly-simmim --help`.
    from lightly_simmim.atomic import atomic_write
    from lightly_simmim.evaluation.protocol import evaluate_run, is_global_zero
    from lightly_simmim.runs import find_run

    if args.output is not None:  # checked before a possibly long evaluation
        _check_output(Path(args.output), find_run(args.run)[0])
    result, path = evaluate_run(
        args.run,
        args.protocol,
        args.overrides,
        recipe_overrides=recipe_options(args),
    )
    if not is_global_zero():
        return 0  # the other processes of a DDP evaluation: rank 0 reports
    for layer in result.get("layers", ()):
        print(
            f"layer {layer['layer']} ({layer['module']}): kNN top-1 "
            f"{layer['knn_top1']:.2f}%, linear top-1 {layer['linear_top1']:.2f}%"
        )
    label = LABELS[args.protocol]
    for probe in ("knn", "linear"):
        best = result.get(f"best_{probe}")
        if best is not None:
            print(f"best {LABELS[probe]} layer: {best['layer']} ({best['module']})")
    print(
        f"{label} top-1: {result['top1']:.2f}% "
        f"(top-5 {result['top5']:.2f}%) of {result['checkpoint']}; wrote {path}"
    )
    if args.output is not None:
        payload = {"checkpoint": result["checkpoint"], args.protocol: result}
        atomic_write(args.output, (json.dumps(payload, indent=2) + "\n").encode())
        print(f"wrote {args.output}")
    return 0
