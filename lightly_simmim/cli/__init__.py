"""The ``lightly-simmim`` command line.

Sub-commands, one module each (its parser beside its handler): ``pretrain``,
``evaluate``, ``benchmark``, ``export`` and ``list``. User errors (a bad config,
missing or corrupt data, an unknown component, a missing run folder, a folder the OS
refuses) print ``lightly-simmim <command>: error: <message>`` to stderr and exit with
status 2, as argparse does for bad arguments; a run stopped because its loss became
NaN or infinite, or a benchmark whose pretraining failed, exits with status 1 (the
table is :data:`lightly_simmim.cli.errors.EXIT_RULES`). Set
``LIGHTLY_SIMMIM_TRACEBACK=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lightly_simmim.cli import (
    benchmark,
    convert,
    evaluate,
    export,
    listing,
    pretrain,
    throughput,
)
from lightly_simmim.cli.common import (
    DEFAULT_CONFIG,
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_USAGE,
)
from lightly_simmim.cli.errors import describe, find_rule

__all__ = [
    "DEFAULT_CONFIG",
    "EXIT_DIVERGED",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "TRACEBACK_VARIABLE",
    "build_parser",
    "main",
]

#: Environment variable that, when set, lets user errors raise with a traceback.
TRACEBACK_VARIABLE = "LIGHTLY_SIMMIM_TRACEBACK"

# In the order `lightly-simmim --help` lists them.
_COMMANDS = (pretrain, evaluate, benchmark, throughput, export, convert, listing)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lightly-simmim`` and its sub-commands.

    Returns:
        The parser; a parsed command line has ``command`` (its name) and ``func``
        (its handler, ``func(args) -> exit status``).
    """
    parser = argparse.ArgumentParser(
        prog="lightly-simmim",
        description="SimMIM masked image modeling for lightly: pretrain SimMIM, MAE "
        "or BYOL from a YAML config, evaluate, export to timm.",
        epilog="Run `lightly-simmim COMMAND --help` for the options of a command.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(subparsers)
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

    Args:
        argv: The arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0, or what :data:`lightly_simmim.cli.errors.EXIT_RULES`
        gives the exception a command raised (2 for user errors, 1 for a NaN / inf
        loss or a failed benchmark row).

    Raises:
        SystemExit: From argparse, for ``--help`` and invalid arguments.
        Exception: An exception the table does not cover (a bug), and every one
            when ``LIGHTLY_SIMMIM_TRACEBACK`` is set.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    # The benchmark records the command line that produced its results.
    args.argv = arguments
    _quiet_lightning_tips()
    try:
        status: int = args.func(args)
    except Exception as error:
        rule = find_rule(error)
        if rule is None or os.environ.get(TRACEBACK_VARIABLE):
            raise
        message = f"{rule.prefix}{describe(error)}"
        print(f"lightly-simmim {args.command}: error: {message}", file=sys.stderr)
        return rule.status
    finally:
        _close_process_group()
    return status


def _close_process_group() -> None:
    """Destroys the process group a command's DDP Trainer left behind.

    Lightning's DDP strategy leaves it initialised after ``fit`` / ``predict``; left
    to the interpreter's exit, gloo's threads can abort the process ("terminate
    called without an active exception", status -6) after the work is done. Every
    process of the run calls this on its way out. torch is not imported for it.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available():
        return
    if distributed.is_initialized():
        distributed.destroy_process_group()
