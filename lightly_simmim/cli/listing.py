"""``lightly-simmim list``: registered components, datasets and shipped configs.

The module is not called ``list`` so that it does not shadow the built-in.
"""

from __future__ import annotations

import argparse

from lightly_simmim.cli.common import DEFAULT_CONFIG, Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``list`` command (it has no arguments).

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "list",
        help="list the registered methods, encoders, transforms, heads, losses, the "
        "datasets and the shipped configs",
        description="Lists every component found through the lightly.* entry point "
        "groups (third-party plugins included), the datasets known by name and the "
        "configs shipped with the package.",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prints one section per entry point group, then datasets and configs.

    Args:
        args: Unused (the command has no arguments).

    Returns:
        0.
    """
    from lightly_simmim import registry
    from lightly_simmim.config import shipped_configs
    from lightly_simmim.data import DATASETS

    # describe() reads entry point metadata only: listing imports no plugin, so a
    # broken one cannot break the listing; `get` reports it when it is used. The
    # datasets, whose descriptions need their builders, come last.
    for short in registry.GROUPS:
        if short == "datasets":
            continue
        print(f"{short}:  ({registry.GROUPS[short]} entry points)")
        for name, dist, value in registry.describe(short):
            print(f"  {name:<12} {value}  [{dist}]")
    print("datasets:  (lightly.datasets entry points; data.dataset NAME)")
    for name, description in DATASETS.items():
        print(f"  {name:<24} {description}")
    print("configs:  (lightly-simmim pretrain --config NAME)")
    for name, path in sorted(shipped_configs().items()):
        default = "  (default)" if name == DEFAULT_CONFIG else ""
        print(f"  {name:<28} {path}{default}")
    return 0
