"""What the sub-commands of ``lightly-simmim`` share: exit statuses and ``--set``."""

from __future__ import annotations

import argparse
from typing import TypeAlias

#: Shipped config that ``lightly-simmim pretrain`` runs without ``--config``.
DEFAULT_CONFIG = "fashion_mnist_cpu"

#: Exit status of a run stopped by a NaN / inf loss (user errors exit with 2).
EXIT_DIVERGED = 1
#: Exit status of a benchmark whose pretraining child process failed.
EXIT_FAILED = 1
#: Exit status of user errors (bad config, data, arguments), as argparse's.
EXIT_USAGE = 2

#: Help of ``--set`` for the commands that read a run config.
OVERRIDE_HELP = (
    "override one config value, dotted key = YAML value, e.g. optim.base_lr=2e-4 "
    "trainer.epochs=5 encoder.kwargs.depth=2 method.mask_ratio=0.5 (repeatable, "
    "several per --set; applied after the file)"
)

#: What ``ArgumentParser.add_subparsers`` returns; each command adds its parser to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: Layout of the help texts: descriptions and epilogs keep their line breaks.
HELP_FORMATTER = argparse.RawDescriptionHelpFormatter


def add_overrides(
    parser: argparse.ArgumentParser, help_text: str = OVERRIDE_HELP
) -> None:
    """Adds ``--set KEY=VALUE ...`` to a sub-command, collected in ``args.overrides``.

    ``--set`` may be repeated and take several values each time; all of them end up
    in one list, in command-line order, so a later value wins.

    Args:
        parser: The sub-command's parser.
        help_text: The option's help (the default describes run-config keys).
    """
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help=help_text,
    )
