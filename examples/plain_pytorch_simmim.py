"""SimMIM in a plain PyTorch loop: no Lightning, no config file.

The framework-free path through lightly-simmim's building blocks:
``SimMIMTransform`` -> ``SimMIMMaskGenerator`` -> ``SimMIM(from_timm(...))`` -> AdamW
with warmup + cosine, on the Fashion-MNIST subset that ships inside the package (no
data root, no network). Before and after pretraining it prints the weighted kNN
accuracy of the pooled features, measured exactly as ``lightly-simmim pretrain``
measures it (``EvalTransform``'s bicubic resize, ``extract_features``,
``knn_accuracy`` with k=20, temperature 0.07), and at the end it writes a PNG of
reconstructions.

Run it from the repository root::

    python examples/plain_pytorch_simmim.py                  # about 5 min, 2 CPU cores
    python examples/plain_pytorch_simmim.py --max-steps 20 --limit-train 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader, Dataset, Subset

from lightly_simmim import SimMIM, SimMIMMaskGenerator, SimMIMTransform
from lightly_simmim.data import EmbeddedFashionMNIST
from lightly_simmim.encoders import from_timm
from lightly_simmim.evaluation import extract_features, knn_accuracy
from lightly_simmim.transforms import EvalTransform
from lightly_simmim.visualize import save_reconstruction_grid

#: Per-channel statistics of the Fashion-MNIST training images (as in the shipped
#: ``fashion_mnist_cpu`` config).
MEAN, STD = [0.2860], [0.3530]
#: 28x28 images are resized to 32x32: 8x8 tokens of 4x4 pixels, 4x4 mask cells.
INPUT_SIZE, MODEL_PATCH, MASK_PATCH, MASK_RATIO = 32, 4, 8, 0.6
#: kNN settings of the ``fashion_mnist_cpu`` config, so the numbers compare.
KNN_K, KNN_TEMPERATURE, NUM_CLASSES = 20, 0.07, 10

T = TypeVar("T")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The example's command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(
        description="SimMIM on the embedded Fashion-MNIST in a plain PyTorch loop."
    )
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N")
    parser.add_argument("--base-lr", type=float, default=1.5e-3, help="peak AdamW LR")
    parser.add_argument(
        "--limit-train",
        type=int,
        default=None,
        help="use N of the 10,000 training images (pretraining and kNN memory bank)",
    )
    parser.add_argument(
        "--limit-eval", type=int, default=None, help="use N of the 2,000 test images"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights, crops, masks")
    parser.add_argument("--log-every", type=int, default=20, help="loss every N steps")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/plain_pytorch"))
    args = parser.parse_args(argv)
    train_images = args.limit_train or 10_000
    if train_images < args.batch_size:
        parser.error(
            f"--limit-train {train_images} is smaller than --batch-size "
            f"{args.batch_size}: no full batch to train on; lower --batch-size."
        )
    return args


def spread_subset(dataset: Dataset[T], limit: int | None) -> Dataset[T]:
    """``limit`` items spread evenly over ``dataset`` (all of it for None).

    The same choice as the ``data.limit_train`` / ``data.limit_eval`` config keys.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= size:
        return dataset
    return Subset(dataset, [i * size // limit for i in range(limit)])


def build_model() -> SimMIM:
    """A small ViT (embed 128, depth 4) on 32x32 grayscale images, with its head."""
    encoder = from_timm(
        "vit_tiny_patch16_224",
        img_size=INPUT_SIZE,
        patch_size=MODEL_PATCH,
        in_chans=1,
        embed_dim=128,
        depth=4,
        num_heads=4,
        # SimMIM trains patch tokens only: the class token's output is never a
        # target, so the pooled features are the mean of the patch tokens.
        global_pool="avg",
    )
    return SimMIM(encoder)  # + SimMIMPredictionHead and the masked L1 SimMIMLoss


def knn_top1(model: SimMIM, args: argparse.Namespace) -> dict[str, float]:
    """kNN top-1 / top-5 of the pooled features: test split vs training split.

    The same evaluation as ``lightly-simmim pretrain``'s final kNN: deterministic
    :class:`EvalTransform` views, :func:`extract_features`, :func:`knn_accuracy`.
    """
    transform = EvalTransform(INPUT_SIZE, in_chans=1, mean=MEAN, std=STD)
    features = []
    for train, limit in ((True, args.limit_train), (False, args.limit_eval)):
        split = spread_subset(EmbeddedFashionMNIST(train, transform), limit)
        loader = DataLoader(split, batch_size=512)
        features.append(extract_features(model.encoder, loader))
    (bank, bank_labels), (queries, query_labels) = features
    return knn_accuracy(
        bank,
        bank_labels,
        queries,
        query_labels,
        num_classes=NUM_CLASSES,
        k=KNN_K,
        temperature=KNN_TEMPERATURE,
    )


def pretrain(
    model: SimMIM, masks: SimMIMMaskGenerator, args: argparse.Namespace
) -> float:
    """SimMIM pretraining with AdamW, warmup + cosine and gradient clipping.

    Returns:
        The loss of the last step.

    Raises:
        FloatingPointError: The loss became NaN or infinite.
    """
    # RandomResizedCrop(scale 0.67-1) + flip + normalise; a list [view] per image.
    transform = SimMIMTransform(
        INPUT_SIZE, in_chans=1, normalize={"mean": MEAN, "std": STD}
    )
    views = spread_subset(EmbeddedFashionMNIST(True, transform), args.limit_train)
    loader = DataLoader(views, batch_size=args.batch_size, shuffle=True, drop_last=True)
    # timm's optimiser factory builds the weight-decay groups: none on 1-D parameters,
    # biases and the names in model.no_weight_decay() (mask token, position tables).
    optimizer = create_optimizer_v2(
        model, "adamw", lr=args.base_lr, weight_decay=0.05, betas=(0.9, 0.999)
    )
    total = args.epochs * len(loader)
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    warmup = max(1, total // 10)
    # Per-step schedule: `warmup` linear steps, then cosine to 0 over the rest.
    schedule = CosineLRScheduler(
        optimizer,
        t_initial=max(1, total - warmup),
        warmup_t=warmup,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    step, loss_value = 0, float("nan")
    model.train()
    while step < total:
        for (images,), _labels in loader:  # images (B, 1, 32, 32)
            mask = masks(batch_size=len(images))  # bool (B, 8, 8), True = masked
            loss = model(images, mask)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"SimMIM loss is {loss.item()} at step {step}; lower --base-lr."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            step, loss_value = step + 1, loss.item()
            schedule.step_update(num_updates=step)
            if step % args.log_every == 0 or step == total:
                print(f"step {step}/{total}  loss {loss_value:.4f}", flush=True)
            if step >= total:
                break
    return loss_value


@torch.no_grad()
def save_reconstructions(model: SimMIM, masks: SimMIMMaskGenerator, path: Path) -> Path:
    """Writes original / masked / reconstructed rows for 8 test images."""
    model.eval()
    transform = EvalTransform(INPUT_SIZE, in_chans=1, mean=MEAN, std=STD)
    test = EmbeddedFashionMNIST(False, transform)
    images = torch.stack([test[i][0] for i in range(8)])  # (8, 1, 32, 32)
    mask = masks(batch_size=len(images))  # (8, 8, 8)
    reconstruction = model.reconstruct(images, mask)  # (8, 1, 32, 32)
    return save_reconstruction_grid(path, images, mask, reconstruction, MEAN, STD)


def main(argv: Sequence[str] | None = None) -> int:
    """Pretrains, evaluates before and after, writes the PNG.

    Args:
        argv: Command-line arguments; None reads ``sys.argv``.

    Returns:
        0 (the exit status).
    """
    args = parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(args.seed)  # the initial weights and the crops
    model = build_model()
    masks = SimMIMMaskGenerator(
        INPUT_SIZE, MASK_PATCH, model.encoder.patch_size, MASK_RATIO, seed=args.seed
    )
    before = knn_top1(model, args)
    print(
        f"kNN top-1 before pretraining (random init): {before['top1']:.2f}%",
        flush=True,
    )
    pretrain(model, masks, args)
    after = knn_top1(model, args)
    print(
        f"kNN top-1 after SimMIM pretraining: {after['top1']:.2f}% "
        f"(top-5 {after['top5']:.2f}%)"
    )
    png = save_reconstructions(model, masks, args.output_dir / "reconstruction.png")
    print(f"reconstructions: {png}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
