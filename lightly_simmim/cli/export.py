"""``lightly-simmim export``: a run's encoder as a timm-loadable safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path

from lightly_simmim.cli.common import HELP_FORMATTER, Subparsers

DESCRIPTION = """\
Writes the plain timm encoder of a run (no mask token, no head) as
safetensors, plus a JSON file beside it with the timm model name and
create_model kwargs. Load it with:

  timm.create_model(name, pretrained=True,
                    pretrained_cfg_overlay=dict(file=PATH),
                    num_classes=N, **kwargs)"""

EPILOG = "example:\n  lightly-simmim export runs/simmim --format timm"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``export`` command and its arguments.

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "export",
        help="export a pretrained encoder as a timm-loadable safetensors file",
        formatter_class=HELP_FORMATTER,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        help="a run folder (uses checkpoints/last.ckpt) or a .ckpt file in one",
    )
    parser.add_argument(
        "--format",
        choices=("timm",),
        default="timm",
        help="output format (timm: safetensors + JSON)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE_OR_DIR",
        type=Path,
        default=None,
        help="the .safetensors file, or a folder to write it into (default: "
        "RUN/export/<run name>_timm.safetensors)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files even if an export did not write them (an "
        "export's own earlier files are always replaced)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Exports the run's encoder and prints the files written.

    Args:
        args: The arguments of :func:`add_parser`.

    Returns:
        0 once the files are written.
    """
    # Lazy import: exporting needs torch, timm and safetensors.
    from lightly_simmim.export import export_timm

    path = export_timm(args.run, args.output, overwrite=args.overwrite)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0
