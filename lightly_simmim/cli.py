"""The ``lightly-simmim`` command line.

Sub-commands: ``pretrain``, ``evaluate``, ``benchmark``, ``export``, ``list`` and
``demo``. User errors (a bad config, missing or corrupt data, an unknown component, a
missing run folder) print ``lightly-simmim <command>: error: <message>`` to stderr
and exit with status 2, as argparse does for bad arguments; a run stopped because its
loss became NaN or infinite exits with status 1. Set ``LIGHTLY_SIMMIM_TRACEBACK=1``
to get the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lightly_simmim import registry

#: Shipped config that ``lightly-simmim pretrain`` runs without ``--config``.
DEFAULT_CONFIG = "fashion_mnist_cpu"

#: Exit status of a run stopped by a NaN / inf loss (user errors exit with 2).
EXIT_DIVERGED = 1
#: Exit status of a benchmark whose pretraining child process failed.
EXIT_FAILED = 1
#: Exit status of user errors (bad config, data, arguments), as argparse's.
EXIT_USAGE = 2


def _cmd_list(args: argparse.Namespace) -> int:
    from lightly_simmim.config import shipped_configs
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
    print("configs:  (lightly-simmim pretrain --config NAME)")
    for name, path in sorted(shipped_configs().items()):
        default = "  (default)" if name == DEFAULT_CONFIG else ""
        print(f"  {name:<28} {path}{default}")
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


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from lightly_simmim.config import ConfigError, load_config
    from lightly_simmim.train import load_config_for_resume, pretrain

    if args.resume is not None:
        if args.config is not None:
            raise ConfigError(
                "--config cannot be combined with --resume: a resumed run uses its "
                "own config.yaml (change single values with --set)."
            )
        config = load_config_for_resume(args.resume, args.overrides)
    else:
        config = load_config(args.config or DEFAULT_CONFIG, args.overrides)
    pretrain(config, resume=args.resume is not None)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lightly_simmim.atomic import atomic_write
    from lightly_simmim.evaluate import ProtocolOptions, evaluate_run

    options = ProtocolOptions(
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        layer=args.layer,
        pooling=args.pooling,
    )
    result, path = evaluate_run(args.run, args.protocol, args.overrides, options)
    label = {"knn": "kNN", "linear": "linear", "finetune": "fine-tune"}[args.protocol]
    print(
        f"{label} top-1: {result['top1']:.2f}% (top-5 {result['top5']:.2f}%) "
        f"of {result['checkpoint']}; wrote {path}"
    )
    if args.output is not None:
        payload = {"checkpoint": result["checkpoint"], args.protocol: result}
        atomic_write(args.output, (json.dumps(payload, indent=2) + "\n").encode())
        print(f"wrote {args.output}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    import shlex

    from lightly_simmim.benchmark import load_benchmark_config, run_benchmark

    config = load_benchmark_config(args.config, args.overrides)
    if args.output_dir is not None:
        config.output_dir = args.output_dir
    command = shlex.join(["lightly-simmim", *sys.argv[1:]])
    folder = run_benchmark(config, command=command)
    print(f"[benchmark] done: {folder / 'results.md'}")
    print((folder / "results.md").read_text())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lightly_simmim.export import export_timm

    path = export_timm(args.run, args.output)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


_OVERRIDE_HELP = (
    "override one config value, dotted key = YAML value, e.g. optim.base_lr=2e-4 "
    "trainer.epochs=5 encoder.kwargs.depth=2 method.mask_ratio=0.5 (repeatable, "
    "several per --set; applied after the file)"
)


def _add_overrides(
    parser: argparse.ArgumentParser, help_text: str = _OVERRIDE_HELP
) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help=help_text,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lightly-simmim`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="lightly-simmim",
        description="SimMIM masked image modeling for lightly: pretrain SimMIM, MAE "
        "or BYOL from a YAML config, evaluate, export to timm.",
        epilog="Run `lightly-simmim COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    pretrain = sub.add_parser(
        "pretrain",
        help="pretrain a method from a YAML config (default: SimMIM on the embedded "
        "Fashion-MNIST, about 10 minutes on 2 CPU cores)",
        formatter_class=formatter,
        description=(
            "Pretrains the method a config names on Lightning's Trainer and ends\n"
            "with kNN accuracy of the pooled features (train vs test split).\n\n"
            f"Without --config the shipped '{DEFAULT_CONFIG}' config runs: SimMIM\n"
            "with a small ViT on the Fashion-MNIST subset inside the package (no\n"
            "data root, no network). Values come from the typed defaults < the YAML\n"
            "file < --set overrides; a misspelt key is an error naming the nearest\n"
            "valid one.\n\n"
            "The run folder output_dir/name (name defaults to the method) gets\n"
            "config.yaml (the resolved config), checkpoints/last.ckpt and\n"
            "checkpoints/epoch=NNN.ckpt, reconstructions/*.png, logs/csv (and\n"
            "logs/tensorboard if installed) and metrics.json. Checkpoints are written\n"
            "atomically: a killed run continues with --resume RUN_DIR to the same\n"
            "final epoch. A NaN / inf loss stops the run (exit status 1)."
        ),
        epilog=(
            "examples:\n"
            "  lightly-simmim pretrain\n"
            "  lightly-simmim pretrain --set trainer.epochs=2 data.limit_train=2000\n"
            "  lightly-simmim pretrain --config simmim_vit_base_800ep "
            "--set data.root=/data/imagenet trainer.devices=8\n"
            "  lightly-simmim pretrain --config my.yaml --set trainer.strategy=ddp "
            "trainer.devices=2\n"
            "  lightly-simmim pretrain --resume runs/simmim\n"
            "shipped configs: see `lightly-simmim list`."
        ),
    )
    pretrain.add_argument(
        "--config",
        metavar="FILE_OR_NAME",
        default=None,
        help=f"a YAML file or the name of a shipped config (default: {DEFAULT_CONFIG})",
    )
    _add_overrides(pretrain)
    pretrain.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the run in RUN_DIR from its checkpoints/last.ckpt, with its "
        "config.yaml (plus any --set); not combinable with --config",
    )
    pretrain.set_defaults(func=_cmd_pretrain)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a pretrained run or checkpoint (kNN, linear probe, fine-tune)",
        formatter_class=formatter,
        description=(
            "Rebuilds the model from the run's config.yaml, loads the checkpoint\n"
            "(weights only) and evaluates its pooled features.\n\n"
            "knn: weighted kNN (eval.knn_k neighbours, eval.knn_temperature) of the\n"
            "test split against the training split, top-1 / top-5 in percent.\n"
            "linear: a linear layer (after a parameter-free BatchNorm, as in MAE)\n"
            "on frozen features of --layer / --pooling, 90 epochs by default.\n"
            "finetune: the whole encoder with a new head, SimMIM's recipe (AdamW,\n"
            "layer-wise LR decay, warmup + cosine, label smoothing), 100 epochs by\n"
            "default. Results also go to RUN/eval/<protocol>.json."
        ),
        epilog="examples:\n  lightly-simmim evaluate --protocol knn runs/simmim\n"
        "  lightly-simmim evaluate --protocol linear --epochs 20 --layer -2 "
        "--pooling avg runs/simmim\n"
        "  lightly-simmim evaluate --protocol finetune --epochs 10 runs/simmim",
    )
    evaluate.add_argument(
        "run",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (uses checkpoints/last.ckpt) or a .ckpt file in one",
    )
    evaluate.add_argument(
        "--protocol",
        choices=("knn", "linear", "finetune"),
        default="knn",
        help="evaluation protocol (default: knn)",
    )
    evaluate.add_argument(
        "--epochs", type=int, default=None, help="linear / finetune epochs"
    )
    evaluate.add_argument(
        "--warmup-epochs", type=float, default=None, help="linear / finetune warmup"
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=None, help="linear / finetune batch size"
    )
    evaluate.add_argument(
        "--lr",
        type=float,
        default=None,
        help="linear: learning rate (0.1); finetune: base_lr per 512 images (1.25e-3)",
    )
    evaluate.add_argument(
        "--layer",
        type=int,
        default=None,
        help="linear: block / stage index of the features (default: last; -2 is "
        "the one before)",
    )
    evaluate.add_argument(
        "--pooling",
        choices=("default", "avg", "cls"),
        default="default",
        help="linear: how tokens are pooled (default: the encoder's own)",
    )
    _add_overrides(evaluate)
    evaluate.add_argument(
        "--output", metavar="FILE", default=None, help="also write the result as JSON"
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    benchmark = sub.add_parser(
        "benchmark",
        help="pretrain and evaluate several methods alike, into one table",
        formatter_class=formatter,
        description=(
            "Pretrains every method a benchmark config lists (each in its own\n"
            "process, as `pretrain` would), evaluates each with kNN, linear probe\n"
            "and fine-tune, adds the baselines (from scratch, raw pixels, the\n"
            "single-token SimMIM ablation) and writes results.md / .csv / .json and\n"
            "PNG plots into the config's output_dir. Run the same command again to\n"
            "resume: finished runs and evaluations are reused."
        ),
    )
    benchmark.add_argument(
        "--config",
        required=True,
        metavar="YAML",
        help="benchmark config, e.g. benchmarks/configs/fashion_mnist_smoke.yaml",
    )
    benchmark.add_argument(
        "--output-dir", default=None, help="write here instead of the config's"
    )
    _add_overrides(
        benchmark,
        "override a benchmark config value, e.g. base.data.root=/data "
        "methods.mae.method.mask_ratio=0.5 linear.epochs=20",
    )
    benchmark.set_defaults(func=_cmd_benchmark)

    export = sub.add_parser(
        "export",
        help="export a pretrained encoder as a timm-loadable safetensors file",
        formatter_class=formatter,
        description=(
            "Writes the plain timm encoder of a run (no mask token, no head) as\n"
            "safetensors, plus a JSON file beside it with the timm model name and\n"
            "create_model kwargs. Load it with:\n\n"
            "  timm.create_model(name, pretrained=True,\n"
            "                    pretrained_cfg_overlay=dict(file=PATH),\n"
            "                    num_classes=N, **kwargs)"
        ),
        epilog="example:\n  lightly-simmim export runs/simmim --format timm",
    )
    export.add_argument(
        "run",
        metavar="RUN",
        help="a run folder (uses checkpoints/last.ckpt) or a .ckpt file in one",
    )
    export.add_argument(
        "--format",
        choices=("timm",),
        default="timm",
        help="output format (timm: safetensors + JSON)",
    )
    export.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        default=None,
        help="the .safetensors file (default: RUN/export/<run name>_timm.safetensors)",
    )
    export.set_defaults(func=_cmd_export)

    lister = sub.add_parser(
        "list",
        help="list the registered methods, encoders, transforms, heads, losses, the "
        "datasets and the shipped configs",
        description="Lists every component found through the lightly.* entry point "
        "groups (third-party plugins included), the datasets known by name and the "
        "configs shipped with the package.",
    )
    lister.set_defaults(func=_cmd_list)

    demo = sub.add_parser(
        "demo",
        help="pretrain a small ViT with SimMIM on the embedded Fashion-MNIST (CPU, "
        "minutes) in a plain PyTorch loop and print kNN accuracy before and after",
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
    return parser


def _quiet_lightning_tips() -> None:
    """Drops Lightning's advertisement lines ("💡 Tip: ...") from the CLI output."""

    def no_tips(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")

    for name in (
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).addFilter(no_tips)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightly-simmim`` console script.

    Returns:
        The exit status: 0, :data:`EXIT_USAGE` for user errors,
        :data:`EXIT_DIVERGED` for a NaN / inf loss.
    """
    args = build_parser().parse_args(argv)
    _quiet_lightning_tips()
    try:
        code: int = args.func(args)
    except ChildProcessError as error:
        # benchmark: a pretraining child failed (BenchmarkError); it printed its
        # own message above.
        if os.environ.get("LIGHTLY_SIMMIM_TRACEBACK"):
            raise
        print(f"lightly-simmim {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except FloatingPointError as error:
        # The loss diverged (NonFiniteLossError): not a usage error, exit 1.
        if os.environ.get("LIGHTLY_SIMMIM_TRACEBACK"):
            raise
        print(f"lightly-simmim {args.command}: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except (
        # ConfigError, CorruptImageError, CheckpointError, UnknownComponentError
        ValueError,
        FileNotFoundError,  # DatasetNotFoundError, missing run / checkpoint
        FileExistsError,  # a new run into a folder that holds a checkpoint
        registry.PluginLoadError,  # a registered plugin fails to import
    ) as error:
        # User-facing problems: a message, not a traceback.
        if os.environ.get("LIGHTLY_SIMMIM_TRACEBACK"):
            raise
        print(f"lightly-simmim {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
