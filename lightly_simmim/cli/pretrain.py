"""``lightly-simmim pretrain``: pretrain the method a YAML config names."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightly_simmim.cli.common import (
    DEFAULT_CONFIG,
    HELP_FORMATTER,
    Subparsers,
    add_overrides,
)

DESCRIPTION = f"""\
Pretrains the method a config names on Lightning's Trainer and ends
with kNN accuracy of the pooled features (train vs test split).

Without --config the shipped '{DEFAULT_CONFIG}' config runs: SimMIM
with a small ViT on the Fashion-MNIST subset inside the package (no
data root, no network). Values come from the typed defaults < the YAML
file < --set overrides; a misspelt key is an error naming the nearest
valid one.

The run folder output_dir/name (name defaults to the method) gets
config.yaml (the resolved config), checkpoints/last.ckpt and
checkpoints/epoch=NNN.ckpt, reconstructions/*.png, logs/csv (and
logs/tensorboard if installed) and metrics.json. Checkpoints are written
atomically: a killed run continues with --resume RUN_DIR to the same
final epoch. A NaN / inf loss stops the run (exit status 1)."""

EPILOG = """\
examples:
  lightly-simmim pretrain
  lightly-simmim pretrain --set trainer.epochs=2 data.limit_train=2000
  lightly-simmim pretrain --config simmim_vit_base_800ep \
--set data.root=/data/imagenet trainer.devices=8
  lightly-simmim pretrain --config my.yaml --set trainer.strategy=ddp \
trainer.devices=2
  lightly-simmim pretrain --resume runs/simmim
shipped configs: see `lightly-simmim list`."""


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``pretrain`` command and its arguments.

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a method from a YAML config (default: SimMIM on the embedded "
        "Fashion-MNIST, about 10 minutes on 2 CPU cores)",
        formatter_class=HELP_FORMATTER,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "--config",
        metavar="FILE_OR_NAME",
        default=None,
        help=f"a YAML file or the name of a shipped config (default: {DEFAULT_CONFIG})",
    )
    add_overrides(parser)
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR_OR_CHECKPOINT",
        default=None,
        help="continue the run in RUN_DIR from its checkpoints/last.ckpt (or from a "
        "checkpoint file of the run, e.g. an intact epoch=NNN.ckpt), with its "
        "config.yaml plus any --set of the keys a resume may change (trainer.epochs, "
        "devices, optim.base_lr, schedule.*, data.root, ...; others are refused); "
        "not combinable with --config",
    )
    parser.add_argument(
        "--init-from",
        metavar="RUN_OR_CHECKPOINT",
        default=None,
        help="start from the weights of this run folder or checkpoint (continued "
        "pretraining, e.g. of `lightly-simmim convert --to run` output) with a new "
        "optimiser and schedule; the config must describe the same model (sets "
        "init_from)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Loads the config (or the resumed run's) and trains.

    Args:
        args: ``config``, ``overrides`` and ``resume`` from :func:`add_parser`.

    Returns:
        0 once training and the final kNN evaluation are done.

    Raises:
        ConfigError: ``--config`` together with ``--resume``, or a bad config.
    """
    # Imported here, not at the top: they pull in torch and Lightning, and
    # `lightly-simmim --help` should stay instant.
    from lightly_simmim.config import ConfigError, load_config
    from lightly_simmim.runs import load_config_for_resume
    from lightly_simmim.train import pretrain

    if args.resume is not None:
        if args.config is not None:
            raise ConfigError(
                "--config cannot be combined with --resume: a resumed run uses its "
                "own config.yaml (change single values with --set)."
            )
        if args.init_from is not None:
            raise ConfigError(
                "--init-from cannot be combined with --resume: a resumed run "
                "continues from its own checkpoint."
            )
        config = load_config_for_resume(args.resume, args.overrides)
    else:
        overrides = list(args.overrides)
        if args.init_from is not None:
            overrides.append(f"init_from={json.dumps(str(args.init_from))}")
        config = load_config(args.config or DEFAULT_CONFIG, overrides)
    resume = args.resume is not None
    # A checkpoint file (say an intact epoch=NNN.ckpt) instead of the run folder.
    checkpoint = args.resume if resume and Path(args.resume).is_file() else None
    pretrain(config, resume=resume, checkpoint=checkpoint)
    return 0
