"""A short SimMIM run on the embedded Fashion-MNIST, in a plain PyTorch loop.

This is the framework-free path: ``SimMIMTransform`` -> ``SimMIMMaskGenerator`` ->
``SimMIM(from_timm(...))`` -> AdamW, then kNN accuracy of the pooled features before
and after pretraining and a PNG of reconstructions. It is what
``lightly-simmim demo`` runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightly_simmim.data import load_embedded_fashion_mnist
from lightly_simmim.encoders import from_timm
from lightly_simmim.evaluation import extract_features, knn_accuracy
from lightly_simmim.masking import SimMIMMaskGenerator
from lightly_simmim.model import SimMIM
from lightly_simmim.transforms import SimMIMTransform
from lightly_simmim.visualize import save_reconstruction_grid

#: Per-channel statistics of the Fashion-MNIST training images.
FASHION_MNIST_NORMALIZE = {"mean": [0.2860], "std": [0.3530]}


@dataclass
class DemoResult:
    """What a demo run produced."""

    knn_before: dict[str, float]
    knn_after: dict[str, float]
    final_loss: float
    reconstruction_png: Path
    seconds: float


class _Views(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """uint8 images (N, 28, 28) -> (SimMIM view (1, 32, 32), mask)."""

    def __init__(self, images: Tensor, transform: SimMIMTransform) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        view, mask = self.transform(self.images[index].unsqueeze(0))
        return view, mask


def _eval_batches(
    images: Tensor, labels: Tensor, batch_size: int
) -> DataLoader[tuple[Tensor, ...]]:
    # Evaluation view: resize 28 -> 32 and normalise, no augmentation.
    x = images.float().div(255).unsqueeze(1)  # (N, 1, 28, 28)
    x = torch.nn.functional.interpolate(
        x, size=32, mode="bilinear", align_corners=False
    )
    mean, std = FASHION_MNIST_NORMALIZE["mean"][0], FASHION_MNIST_NORMALIZE["std"][0]
    return DataLoader(TensorDataset((x - mean) / std, labels), batch_size=batch_size)


def _knn(
    model: SimMIM, data: dict[str, tuple[Tensor, Tensor]], batch_size: int
) -> dict[str, float]:
    train = extract_features(model.encoder, _eval_batches(*data["train"], batch_size))
    test = extract_features(model.encoder, _eval_batches(*data["test"], batch_size))
    return knn_accuracy(*train, *test, num_classes=10, k=20, temperature=0.07)


def run_demo(
    epochs: int = 3,
    batch_size: int = 128,
    base_lr: float = 1.5e-3,
    output_dir: str | Path = "runs/demo",
    seed: int = 0,
    max_steps: int | None = None,
    log_every: int = 20,
) -> DemoResult:
    """Pretrains a small ViT with SimMIM on the embedded Fashion-MNIST.

    Args:
        epochs: Passes over the 10,000 training images.
        batch_size: Images per step.
        base_lr: AdamW learning rate after warmup (cosine decay to 0).
        output_dir: Folder for ``reconstruction.png``.
        seed: Seeds weights, augmentation and masks.
        max_steps: Stop early after this many steps (for tests).
        log_every: Print the loss every this many steps.

    Returns:
        kNN accuracy before and after, the last loss, the PNG path and the time.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    data = {
        "train": load_embedded_fashion_mnist(train=True),
        "test": load_embedded_fashion_mnist(train=False),
    }
    # A ViT with 4x4-pixel tokens on 32x32 images: 64 tokens, masked in 8x8 cells.
    encoder = from_timm(
        "vit_tiny_patch16_224",
        img_size=32,
        patch_size=4,
        in_chans=1,
        embed_dim=128,
        depth=4,
        num_heads=4,
        # SimMIM trains patch tokens only: the class token's output is never a
        # target, so pooled features are the mean of the patch tokens.
        global_pool="avg",
    )
    model = SimMIM(encoder)
    masks = SimMIMMaskGenerator(32, 8, encoder.patch_size, 0.6, seed=seed)
    transform = SimMIMTransform(
        input_size=32,
        in_chans=1,
        normalize=FASHION_MNIST_NORMALIZE,
        mask_generator=masks,
    )
    loader = DataLoader(
        _Views(data["train"][0], transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
    )
    knn_before = _knn(model, data, 512)
    print(
        f"kNN top-1 before pretraining (random init): {knn_before['top1']:.2f}%",
        flush=True,
    )

    # timm's optimiser factory builds the weight-decay groups: none on 1-D parameters,
    # biases and the names in model.no_weight_decay() (mask token, position tables).
    optimizer = create_optimizer_v2(
        model, "adamw", lr=base_lr, weight_decay=0.05, betas=(0.9, 0.999)
    )
    total = epochs * len(loader)
    if max_steps is not None:
        total = min(total, max_steps)
    warmup = max(1, total // 10)
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
        for images, mask in loader:
            loss = model(images, mask)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"SimMIM loss is {loss.item()} at step {step}; lower base_lr."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            step, loss_value = step + 1, loss.item()
            schedule.step_update(num_updates=step)
            if step % log_every == 0 or step == total:
                print(f"step {step}/{total}  loss {loss_value:.4f}", flush=True)
            if step >= total:
                break

    knn_after = _knn(model, data, 512)
    print(
        f"kNN top-1 after SimMIM pretraining: {knn_after['top1']:.2f}% "
        f"(top-5 {knn_after['top5']:.2f}%)"
    )
    model.eval()
    with torch.no_grad():
        images, mask = next(
            iter(DataLoader(_Views(data["test"][0][:8], transform), batch_size=8))
        )
        png = save_reconstruction_grid(
            Path(output_dir) / "reconstruction.png",
            images,
            mask,
            model.reconstruct(images, mask),
            FASHION_MNIST_NORMALIZE["mean"],
            FASHION_MNIST_NORMALIZE["std"],
        )
    print(f"reconstructions: {png}")
    return DemoResult(
        knn_before, knn_after, loss_value, png, time.perf_counter() - start
    )
