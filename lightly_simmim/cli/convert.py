"""``lightly-simmim convert``: an official SimMIM checkpoint for timm or as a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightly_simmim.cli.common import HELP_FORMATTER, Subparsers

DESCRIPTION = """\
Reads a checkpoint of the official microsoft/SimMIM code (ViT, Swin, SwinV2;
pretraining or fine-tuning) without running anything from the file, detects the
architecture from its tensors and maps every tensor onto timm's model; a
tensor that fits nowhere is an error naming it.

--to timm: the backbone as .safetensors plus a JSON file beside it with the timm
           name, kwargs and pretrained_cfg; load it with
             timm.create_model(NAME, pretrained=True,
                 pretrained_cfg_overlay=dict(file=FILE, **pretrained_cfg), **kwargs)
--to run:  a run folder (config.yaml + checkpoints/last.ckpt) that `evaluate` and
           `export` take, and `pretrain --init-from` continues pretraining from."""

EPILOG = """\
examples:
  lightly-simmim convert simmim_pretrain__swin_base__img192_window6__100ep.pth \\
      --to timm --output swin_b.safetensors
  lightly-simmim convert simmim_pretrain__vit_base__img224__800ep.pth \\
      --to run --output runs/simmim_vit_b_official
  lightly-simmim evaluate --protocol knn runs/simmim_vit_b_official \\
      --set data.root=/data/imagenet"""


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Adds the ``convert`` command and its arguments.

    Args:
        subparsers: The sub-command group of the ``lightly-simmim`` parser.

    Returns:
        The command's parser (its handler is :func:`run`).
    """
    parser = subparsers.add_parser(
        "convert",
        help="convert an official microsoft/SimMIM checkpoint to timm or a run folder",
        formatter_class=HELP_FORMATTER,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("source", metavar="SRC", help="the official .pth checkpoint")
    parser.add_argument(
        "--to", choices=("timm", "run"), required=True, help="what to write"
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        type=Path,
        required=True,
        help="the .safetensors file (--to timm) or the new run folder (--to run)",
    )
    parser.add_argument(
        "--img-size",
        type=int,
        default=None,
        help="use the weights at this image size (position tables resized bicubically)",
    )
    parser.add_argument(
        "--window-size", type=int, default=None, help="Swin / SwinV2 window size"
    )
    parser.add_argument(
        "--split-rel-pos-bias",
        action="store_true",
        help="ViT: one relative position table per block, copied from the shared "
        "one (as the official fine-tuning does)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="--to timm: replace existing files",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Converts the checkpoint and prints what was written and how to use it.

    Args:
        args: The arguments of :func:`add_parser`.

    Returns:
        0 once the files are written.
    """
    # Lazy imports: converting needs torch and timm.
    from lightly_simmim.convert import export_official_to_timm
    from lightly_simmim.convert.run_folder import write_run_folder

    sizes = {
        "img_size": args.img_size,
        "window_size": args.window_size,
        "split_rel_pos_bias": args.split_rel_pos_bias,
    }
    if args.to == "timm":
        path = export_official_to_timm(
            args.source, args.output, overwrite=args.overwrite, **sizes
        )
        info = json.loads(path.with_suffix(".json").read_text())
        print(f"wrote {path} and {path.with_suffix('.json')}")
        print(
            f"timm.create_model({info['model_name']!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file={str(path)!r}, **pretrained_cfg), "
            f"**{info['kwargs']!r})"
        )
        return 0
    folder, conversion = write_run_folder(args.source, args.output, **sizes)
    print(f"wrote the run folder {folder} ({conversion.target.timm_name})")
    for note in conversion.notes:
        print(f"  {note}")
    print(
        f"next: lightly-simmim evaluate {folder} --set data.root=...; "
        f"lightly-simmim pretrain --config {folder / 'config.yaml'} "
        f"--init-from {folder} --set name=NEW data.root=..."
    )
    return 0
