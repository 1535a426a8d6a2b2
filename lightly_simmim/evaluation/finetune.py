"""End-to-end fine-tuning with SimMIM's recipe, on any device (Lightning).

The encoder's timm model gets a new linear classifier on its pooled pre-logits
features (the same features ``encoder(images)`` gives) and all weights are trained:

- AdamW (betas 0.9 / 0.999, eps 1e-8), weight decay 0.05 except 1-D parameters,
  biases and the model's ``no_weight_decay()`` names (position embeddings, class token,
  relative position tables);
- layer-wise learning-rate decay through timm (``create_optimizer_v2(...,
  layer_decay=d)``, grouped by the model's ``group_matcher``): a parameter in layer
  ``i`` of ``L + 2`` gets ``lr * d ** (L + 1 - i)``, where layer 0 is the patch
  embedding / stem (class token, position embedding), layers ``1..L`` are the blocks
  (transformer blocks for ViT / BEiT; every block of every stage for Swin and
  ConvNeXt, with a stage's downsampling grouped with its first block) and layer
  ``L + 1`` the new head (also ``fc_norm`` / the ConvNeXt head norm); timm groups the
  final ``norm`` with the last block. 0.65 is the paper's value for ViT-B, 0.9 for
  Swin-B;
- linear warmup then cosine learning rate, per step; ``lr = base_lr * global batch
  / 512`` (also for the warmup start and the final lr);
- cross-entropy with label smoothing 0.1 (or timm ``Mixup`` soft targets, if given),
  gradient clipping at norm 5.

Drop path (stochastic depth, 0.1 in the paper) is a property of the timm model and
must be set when it is created, e.g. ``from_timm(name, drop_path_rate=0.1)`` or
``timm.create_model(name, drop_path_rate=0.1)`` before loading pretrained weights
into it: a model created with rate 0 has no drop-path layers to switch on. The rate
found in the model is reported in the result's settings.

"From scratch" is the same recipe on a freshly created (randomly initialised)
model, which makes the "no pretraining" baseline of a benchmark::

    scratch = finetune(from_timm("vit_small_patch16_224", drop_path_rate=0.1),
                       train_set, val_set, num_classes=10)
    simmim = finetune(pretrained_encoder, train_set, val_set, num_classes=10)

Left out of the paper's recipe: RandAugment, random erasing and (by default) mixup /
cutmix; pass a timm ``Mixup`` and your own ``train_transform`` for them.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.layers import DropPath
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric, SumMetric

from lightly_simmim.data import TransformedDataset
from lightly_simmim.encoders.base import MaskedEncoder, TimmMaskedEncoder
from lightly_simmim.evaluation._rng import seeded
from lightly_simmim.evaluation.results import write_results
from lightly_simmim.evaluation.transforms import Transform, classification_transforms
from lightly_simmim.transforms import IMAGENET_NORMALIZE

LR_REFERENCE_BATCH = 512
"""Batch size at which ``base_lr`` is the actual learning rate (linear scaling)."""

VIT_LAYER_DECAY = 0.65
"""The paper's layer decay for ViT-B (used by ``"auto"`` for ViT / DeiT / BEiT)."""

HIERARCHICAL_LAYER_DECAY = 0.9
"""The paper's layer decay for Swin-B (used by ``"auto"`` for every other model)."""


@dataclass(frozen=True)
class FinetuneRecipe:
    """Optimisation settings of a fine-tune; defaults are SimMIM's ViT-B recipe.

    Attributes:
        epochs: Training epochs (100 in the paper).
        warmup_epochs: Epochs of linear warmup (20), at most ``epochs``.
        batch_size: Images per device and step (the paper's global batch is 2048).
        base_lr: Learning rate per 512 images: ``lr = base_lr * batch_size *
            devices / 512`` (1.25e-3).
        base_warmup_lr: Learning rate at the start of warmup, per 512 images.
        base_min_lr: Final learning rate of the cosine, per 512 images.
        weight_decay: AdamW weight decay (0.05), not applied to 1-D parameters,
            biases and the model's ``no_weight_decay()`` names.
        layer_decay: Layer-wise learning-rate decay, or ``"auto"``: 0.65 for ViT /
            DeiT / BEiT (ViT-B), 0.9 otherwise (Swin-B; also used for ConvNeXt,
            where the paper has no value). 1.0 disables it.
        betas: AdamW betas.
        eps: AdamW epsilon.
        label_smoothing: Label smoothing of the cross-entropy (0.1); with mixup
            it is the mixup's own ``label_smoothing`` that counts.
        clip_grad: Gradient norm clip (5.0), or None for none.
        head_init_std: Std of the trunc-normal init of the new classifier's weight
            (bias zero).
        crop_min_scale: Smallest area fraction of the default training crop
            (``RandomResizedCrop``): 0.08 as on ImageNet; small images and short
            schedules learn faster with a larger one.
    """

    epochs: int = 100
    warmup_epochs: float = 20.0
    batch_size: int = 128
    base_lr: float = 1.25e-3
    base_warmup_lr: float = 2.5e-7
    base_min_lr: float = 2.5e-7
    weight_decay: float = 0.05
    layer_decay: float | Literal["auto"] = "auto"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    label_smoothing: float = 0.1
    clip_grad: float | None = 5.0
    head_init_std: float = 0.02
    crop_min_scale: float = 0.08

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"Need epochs >= 1 and batch_size >= 1, got {self.epochs}, "
                f"{self.batch_size}."
            )
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"warmup_epochs must lie in [0, epochs={self.epochs}], got "
                f"{self.warmup_epochs}; lower it for short schedules."
            )
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(
                f"crop_min_scale must be in (0, 1], got {self.crop_min_scale}."
            )
        if self.layer_decay != "auto" and not 0 < self.layer_decay <= 1:
            raise ValueError(
                f"layer_decay must be 'auto' or in (0, 1], got {self.layer_decay!r}."
            )


class EpochRecord(TypedDict):
    """One epoch of a fine-tune.

    Attributes:
        epoch: 0-based epoch index.
        train_loss: Mean training loss of the epoch.
        lr: Learning rate of the head (the undecayed group) at the epoch's end.
        top1: Validation top-1 accuracy (percent) after the epoch.
        top5: Validation top-5 accuracy (percent; top-``min(5, classes)``).
    """

    epoch: int
    train_loss: float
    lr: float
    top1: float
    top5: float


class FinetuneResult(TypedDict):
    """What :func:`finetune` returns (and writes as JSON); a plain dict at runtime.

    Attributes:
        top1: Validation top-1 accuracy (percent) after the last epoch (no model
            selection on the validation set).
        top5: Top-5 (top-``min(5, classes)``) accuracy after the last epoch.
        history: One :class:`EpochRecord` per epoch.
        settings: The recipe with ``layer_decay`` resolved, the effective
            learning rates, the model's drop-path rate, the seed and the data sizes.
    """

    top1: float
    top5: float
    history: list[EpochRecord]
    settings: dict[str, Any]


def lr_scale_factor(recipe: FinetuneRecipe, world_size: int = 1) -> float:
    """``global batch / 512``, the factor of every ``base_*`` learning rate.

    Args:
        recipe: Gives the per-device batch size.
        world_size: Number of devices (processes) training together.
    """
    return recipe.batch_size * world_size / LR_REFERENCE_BATCH


def resolve_layer_decay(
    model: nn.Module, layer_decay: float | Literal["auto"]
) -> float:
    """The layer decay to use: ``layer_decay`` itself, or the family's for "auto".

    Args:
        model: The timm model (or a SimMIM encoder adapter wrapping it).
        layer_decay: A value in (0, 1], or ``"auto"``.

    Returns:
        0.65 for ViT / DeiT / BEiT and 0.9 for other models with ``"auto"``, else
        ``layer_decay``.
    """
    if layer_decay != "auto":
        return float(layer_decay)
    timm_model = _timm_model(model)
    if isinstance(timm_model, (VisionTransformer, Beit)):
        return VIT_LAYER_DECAY
    return HIERARCHICAL_LAYER_DECAY


def create_finetune_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.05,
    layer_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """AdamW with layer-wise learning-rate decay, through timm.

    Each parameter group carries ``lr_scale`` (``layer_decay ** (max_layer -
    layer)``, see the module docstring) and ``weight_decay`` (0 for 1-D parameters
    and the model's ``no_weight_decay()`` names). The groups' ``lr`` is ``lr``
    itself; a timm scheduler (as used by :class:`FinetuneModule`) multiplies it by
    ``lr_scale`` at every update.

    Args:
        model: A timm model with ``group_matcher`` (all supported families), with
            its classifier head.
        lr: Peak learning rate of the undecayed layers (the head).
        weight_decay: AdamW weight decay.
        layer_decay: Decay per layer in (0, 1]; None or 1.0 for none.
        betas: AdamW betas.
        eps: AdamW epsilon.

    Returns:
        The optimizer.
    """
    decay = None if layer_decay is None or layer_decay == 1.0 else layer_decay
    optimizer: torch.optim.Optimizer = create_optimizer_v2(
        model,
        opt="adamw",
        lr=lr,
        weight_decay=weight_decay,
        layer_decay=decay,
        betas=betas,
        eps=eps,
    )
    return optimizer


def timm_classifier(
    encoder: nn.Module,
    num_classes: int,
    *,
    copy_model: bool = True,
    head_init_std: float = 0.02,
) -> nn.Module:
    """The encoder's timm model with a new linear classifier on its pooled features.

    Args:
        encoder: A SimMIM encoder adapter (its ``timm_model`` is used; the mask token
            is not needed for fine-tuning) or a timm model.
        num_classes: Outputs of the new head.
        copy_model: Deep-copy the model first, so that the caller's encoder keeps
            its weights (False fine-tunes the shared model in place).
        head_init_std: Std of the trunc-normal init of the head's weight.

    Returns:
        The timm model; ``model(images)`` gives ``(B, num_classes)`` logits.

    Raises:
        TypeError: If ``encoder`` is neither an adapter nor a timm classifier model.
    """
    model = _timm_model(encoder)
    if copy_model:
        model = copy.deepcopy(model)
    reset: Any = model.reset_classifier  # checked by _timm_model
    reset(num_classes)
    get_classifier: Any = model.get_classifier
    head = get_classifier()
    if isinstance(head, nn.Linear):
        nn.init.trunc_normal_(head.weight, std=head_init_std)
        nn.init.zeros_(head.bias)
    return model


def drop_path_rate(model: nn.Module) -> float:
    """The largest drop-path probability in ``model`` (timm ``DropPath`` layers).

    timm spaces the rates linearly over the blocks, so this is the model's
    ``drop_path_rate``; 0.0 if the model has no drop-path layer.
    """
    return max(
        (float(m.drop_prob) for m in model.modules() if isinstance(m, DropPath)),
        default=0.0,
    )


class FinetuneModule(pl.LightningModule):
    """Lightning module of :func:`finetune`: optimiser, schedule, loss, metrics.

    The learning rate is set before every training step from timm's
    ``CosineLRScheduler`` (warmup then cosine over all steps), which also applies
    each group's layer-decay ``lr_scale``. Validation top-1 / top-5 hits are
    counted with torchmetrics (summed over devices) and kept, with the epoch's mean
    training loss and learning rate, in :attr:`history`.

    Args:
        model: A timm classifier (see :func:`timm_classifier`).
        num_classes: Number of classes (>= 2).
        recipe: Optimisation settings.
        mixup: Optional timm ``Mixup`` / cutmix applied to each training batch
            (needs an even batch size); the loss then uses its soft targets.

    Attributes:
        history: Epoch index -> :class:`EpochRecord` fields seen so far.
        layer_decay: The resolved layer decay.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        recipe: FinetuneRecipe,
        mixup: Mixup | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        self.model = model
        self.recipe = recipe
        self.mixup = mixup
        self.layer_decay = resolve_layer_decay(model, recipe.layer_decay)
        self.top = min(5, num_classes)
        # Hit counts rather than mean accuracies: exact percentages, summed over
        # devices by torchmetrics.
        self.val_hits1 = SumMetric()
        self.val_hits5 = SumMetric()
        self.val_count = SumMetric()
        self.train_loss = MeanMetric()
        self.history: dict[int, dict[str, float]] = {}
        self._schedule: CosineLRScheduler | None = None

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        logits: Tensor = self.model(images)
        return logits

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW with layer decay, and the per-step schedule (applied by hand)."""
        recipe = self.recipe
        scale = lr_scale_factor(recipe, self.trainer.world_size)
        optimizer = create_finetune_optimizer(
            self.model,
            lr=recipe.base_lr * scale,
            weight_decay=recipe.weight_decay,
            layer_decay=self.layer_decay,
            betas=recipe.betas,
            eps=recipe.eps,
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        warmup_steps = round(total_steps * recipe.warmup_epochs / recipe.epochs)
        # timm's scheduler, stepped per update in on_train_batch_start rather than by
        # Lightning (which only drives torch schedulers), so it sees global_step.
        self._schedule = CosineLRScheduler(
            optimizer,
            t_initial=total_steps,
            lr_min=recipe.base_min_lr * scale,
            warmup_t=warmup_steps,
            warmup_lr_init=recipe.base_warmup_lr * scale,
            t_in_epochs=False,
        )
        return optimizer

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Sets every group's learning rate for the coming step."""
        if self._schedule is not None:
            self._schedule.step_update(self.global_step)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy (label smoothing or mixup soft targets) of one batch."""
        images, labels = batch
        if self.mixup is not None:
            images, soft_targets = self.mixup(images, labels)  # (B, num_classes)
            loss = F.cross_entropy(self.model(images), soft_targets)
        else:
            loss = F.cross_entropy(
                self.model(images),
                labels,
                label_smoothing=self.recipe.label_smoothing,
            )
        self.train_loss.update(loss.detach(), weight=len(images))
        return loss

    def on_train_epoch_end(self) -> None:
        """Records the epoch's mean loss and the head's learning rate."""
        record = self.history.setdefault(self.current_epoch, {})
        record["train_loss"] = float(self.train_loss.compute())
        self.train_loss.reset()
        optimizer: Any = self.optimizers()
        record["lr"] = max(float(g["lr"]) for g in optimizer.param_groups)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Accumulates top-1 / top-5 hits of one validation batch."""
        images, labels = batch
        ranked = self.model(images).topk(self.top, dim=1).indices  # (B, top)
        correct = ranked == labels.unsqueeze(1)  # (B, top), one True at most
        self.val_hits1.update(correct[:, 0].sum())
        self.val_hits5.update(correct.any(dim=1).sum())
        self.val_count.update(len(labels))

    def on_validation_epoch_end(self) -> None:
        """Records the epoch's validation accuracy (percent)."""
        # A sanity check (with a user's own Trainer) is not an epoch's result.
        if not self.trainer.sanity_checking:
            count = float(self.val_count.compute())
            record = self.history.setdefault(self.current_epoch, {})
            record["top1"] = 100.0 * float(self.val_hits1.compute()) / count
            record["top5"] = 100.0 * float(self.val_hits5.compute()) / count
        for metric in (self.val_hits1, self.val_hits5, self.val_count):
            metric.reset()


def finetune(
    encoder: nn.Module,
    train_dataset: Dataset[tuple[Any, int]],
    val_dataset: Dataset[tuple[Any, int]],
    num_classes: int,
    recipe: FinetuneRecipe | None = None,
    *,
    train_transform: Transform | Literal["default"] | None = "default",
    eval_transform: Transform | Literal["default"] | None = "default",
    input_size: int | None = None,
    normalize: Mapping[str, Sequence[float]] | None = IMAGENET_NORMALIZE,
    mixup: Mixup | None = None,
    copy_model: bool = True,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int | str = 1,
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true",
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
    progress_bar: bool = False,
) -> FinetuneResult:
    """Fine-tunes ``encoder`` end to end with a new linear head (SimMIM's recipe).

    See the module docstring for the recipe, drop path and the from-scratch
    baseline. Training runs on a Lightning ``Trainer`` (no logger, no checkpoints);
    the validation set is evaluated after every epoch. The run is deterministic for
    a given seed on one device (up to the nondeterminism of GPU kernels), and does
    not change the caller's global random state.

    Args:
        encoder: A SimMIM encoder adapter or a timm model (pretrained, or freshly
            created for the from-scratch baseline).
        train_dataset: ``(image, label)`` pairs to train on.
        val_dataset: ``(image, label)`` pairs to evaluate on after every epoch.
        num_classes: Number of classes (>= 2).
        recipe: Optimisation settings; None for :class:`FinetuneRecipe` defaults.
        train_transform: Applied to each training image: a callable, ``"default"``
            (:func:`classification_transforms`' train transform), or None if the
            dataset already yields augmented tensors.
        eval_transform: The same for validation images (``"default"``: resize and
            center crop).
        input_size: Image side for the default transforms; None reads the model's
            ``img_size`` (ViT / BEiT / Swin; required for ConvNeXt).
        normalize: Normalisation of the default transforms; use the statistics the
            encoder was pretrained with (one value per input channel).
        mixup: Optional timm ``Mixup`` for mixup / cutmix (build it with this
            ``num_classes``; needs an even batch size).
        copy_model: Fine-tune a deep copy (the caller's encoder is unchanged); False
            trains the encoder's timm model in place.
        num_workers: Data loader workers.
        accelerator: Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        devices: Lightning devices; with more than one the learning rate scales
            with the global batch and the run must be started as a script (DDP).
        precision: Lightning precision.
        seed: Seed of the head init, the shuffling, augmentations and drop path.
        output_dir: If given, the result is written to ``<output_dir>/finetune.json``
            (by global rank 0).
        progress_bar: Show Lightning's progress bar.

    Returns:
        A :class:`FinetuneResult`: final ``top1`` / ``top5`` (percent), per-epoch
        ``history`` and the ``settings`` used.

    Raises:
        ValueError: If ``num_classes < 2``, the training set is smaller than one
            batch, or the default transforms cannot be built (unknown input size,
            ``normalize`` not matching the channels).
        TypeError: If ``encoder`` is neither an adapter nor a timm model.
    """
    recipe = FinetuneRecipe() if recipe is None else recipe
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    num_train = len(train_dataset)  # type: ignore[arg-type]
    num_val = len(val_dataset)  # type: ignore[arg-type]
    if num_train < recipe.batch_size:
        raise ValueError(
            f"The training set has {num_train} images, fewer than one batch of "
            f"{recipe.batch_size}; lower recipe.batch_size."
        )
    timm_model = _timm_model(encoder)
    train_tf, eval_tf = _transforms(
        timm_model,
        train_transform,
        eval_transform,
        input_size,
        normalize,
        recipe.crop_min_scale,
    )

    with seeded(seed):
        model = timm_classifier(
            encoder,
            num_classes,
            copy_model=copy_model,
            head_init_std=recipe.head_init_std,
        )
        module = FinetuneModule(model, num_classes, recipe, mixup=mixup)
        train_loader = DataLoader(
            TransformedDataset(train_dataset, train_tf),
            batch_size=recipe.batch_size,
            shuffle=True,
            # Full batches only: mixup needs even batches, and a last batch of a
            # few images would get a full step's weight.
            drop_last=True,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed),
            persistent_workers=num_workers > 0,
        )
        val_loader = DataLoader(
            TransformedDataset(val_dataset, eval_tf),
            batch_size=recipe.batch_size,
            shuffle=False,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )
        trainer = pl.Trainer(
            max_epochs=recipe.epochs,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            gradient_clip_val=recipe.clip_grad,
            gradient_clip_algorithm="norm",
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
        )
        # Lightning keeps each module's mode: an encoder handed over in eval mode
        # (as load_run returns it) would train with drop path and dropout off.
        module.train()
        with warnings.catch_warnings():
            # Lightning's own use of a deprecated torch API, nothing to act on.
            warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
            trainer.fit(module, train_loader, val_loader)

    history = [
        EpochRecord(
            epoch=epoch,
            train_loss=record.get("train_loss", math.nan),
            lr=record.get("lr", math.nan),
            top1=record.get("top1", math.nan),
            top5=record.get("top5", math.nan),
        )
        for epoch, record in sorted(module.history.items())
    ]
    scale = lr_scale_factor(recipe, trainer.world_size)
    settings: dict[str, Any] = {
        **asdict(recipe),
        "layer_decay": module.layer_decay,
        "lr": recipe.base_lr * scale,
        "min_lr": recipe.base_min_lr * scale,
        "warmup_lr": recipe.base_warmup_lr * scale,
        "global_batch_size": recipe.batch_size * trainer.world_size,
        "drop_path_rate": drop_path_rate(model),
        "mixup": mixup is not None,
        "model": type(model).__name__,
        "num_classes": num_classes,
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
    }
    last = history[-1]
    result = FinetuneResult(
        top1=last["top1"], top5=last["top5"], history=history, settings=settings
    )
    if output_dir is not None and trainer.is_global_zero:
        write_results(result, output_dir, "finetune")
    return result


def _timm_model(encoder: nn.Module) -> nn.Module:
    if isinstance(encoder, TimmMaskedEncoder):
        return encoder.timm_model
    if isinstance(encoder, MaskedEncoder):
        raise TypeError(
            f"{type(encoder).__name__} does not expose a timm model; fine-tuning "
            f"needs a TimmMaskedEncoder adapter or a timm model."
        )
    if callable(getattr(encoder, "reset_classifier", None)) and callable(
        getattr(encoder, "group_matcher", None)
    ):
        return encoder
    raise TypeError(
        f"finetune needs a SimMIM encoder adapter or a timm model (with "
        f"reset_classifier and group_matcher), got {type(encoder).__name__}."
    )


def _in_chans(model: nn.Module) -> int:
    # The first convolution is the patch embedding / stem in every timm family here.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    raise ValueError(f"Cannot find the input channels of {type(model).__name__}.")


def _model_input_size(model: nn.Module) -> int | None:
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is None:
        return None
    sides = {int(s) for s in size} if isinstance(size, (tuple, list)) else {int(size)}
    return sides.pop() if len(sides) == 1 else None


def _transforms(
    model: nn.Module,
    train_transform: Transform | Literal["default"] | None,
    eval_transform: Transform | Literal["default"] | None,
    input_size: int | None,
    normalize: Mapping[str, Sequence[float]] | None,
    min_scale: float,
) -> tuple[Transform | None, Transform | None]:
    """Resolves ``"default"`` to :func:`classification_transforms`' transforms."""
    train_is_default = isinstance(train_transform, str)
    eval_is_default = isinstance(eval_transform, str)
    for given in (train_transform, eval_transform):
        if isinstance(given, str) and given != "default":
            raise ValueError(
                f"A transform is a callable, 'default' or None, got {given!r}."
            )
    if not train_is_default and not eval_is_default:
        return _callable_or_none(train_transform), _callable_or_none(eval_transform)
    size = input_size if input_size is not None else _model_input_size(model)
    if size is None:
        raise ValueError(
            f"The default transforms need an image size and "
            f"{type(model).__name__} has no square img_size; pass input_size."
        )
    default_train, default_eval = classification_transforms(
        size, in_chans=_in_chans(model), normalize=normalize, min_scale=min_scale
    )
    return (
        default_train if train_is_default else _callable_or_none(train_transform),
        default_eval if eval_is_default else _callable_or_none(eval_transform),
    )


def _callable_or_none(transform: Transform | str | None) -> Transform | None:
    return None if isinstance(transform, str) else transform
