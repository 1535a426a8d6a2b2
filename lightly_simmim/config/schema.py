"""The sections of a run config, as typed dataclasses with allowed ranges.

The component argument types are reused as sections, so each setting is defined once:
``optim`` is :class:`~lightly_simmim.optim.OptimizerSettings` (plus the trainer's
``accumulate_grad_batches``), ``schedule`` is
:class:`~lightly_simmim.schedule.ScheduleSettings` and ``finetune`` is
:class:`~lightly_simmim.evaluation.recipes.FinetuneRecipe`. Every numeric setting
carries its range (:func:`lightly_simmim.settings.setting`), checked when the config
is read.

The typed defaults are a runnable config: the CPU default (``fashion_mnist_cpu``), a
small ViT on the embedded Fashion-MNIST subset, so a config that leaves a section out
never combines, say, a 3-channel encoder with 1-channel data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lightly_simmim.evaluation.recipes import FinetuneRecipe
from lightly_simmim.optim import OptimizerSettings
from lightly_simmim.schedule import ScheduleSettings
from lightly_simmim.settings import Checked, SettingError, setting

__all__ = [
    "Config",
    "DataConfig",
    "EncoderConfig",
    "EvalConfig",
    "FinetuneConfig",
    "MethodConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainerConfig",
]

#: The small ViT of the CPU default: 4x4 px tokens on 32x32 grayscale images.
_CPU_VIT: dict[str, object] = {
    "img_size": 32,
    "patch_size": 4,
    "in_chans": 1,
    "embed_dim": 128,
    "depth": 4,
    "num_heads": 4,
    # SimMIM trains patch tokens only (the class token is never a target), so the
    # pooled features are the average of the patch tokens; the final LayerNorm
    # stays on every token before the head, as SimMIM pretrains.
    "global_pool": "avg",
    "fc_norm": False,
}


@dataclass
class EncoderConfig:
    """Which timm encoder to build (``lightly_simmim.encoders.from_timm`` names)."""

    name: str = "vit_tiny_patch16_224"
    #: Keyword arguments for ``timm.create_model`` (img_size, patch_size, depth, ...).
    kwargs: dict[str, object] = field(default_factory=lambda: dict(_CPU_VIT))
    #: "timm": timm's initialisation; "simmim": the official SimMIM pretraining
    #: initialisation of the paper's ViT (trunc-normal std 0.02 cut at +-1 std; see
    #: lightly_simmim.encoders.init).
    init: Literal["timm", "simmim"] = "timm"


@dataclass
class DataConfig(Checked):
    """Training data and its augmentation size."""

    #: A ``lightly.datasets`` entry point name (``lightly-simmim list``).
    dataset: str = "fashion-mnist-embedded"
    root: str | None = None
    download: bool = False
    #: "skip" corrupt / non-image files with a warning, or "error" on the first.
    on_corrupt: Literal["skip", "error"] = "skip"
    #: Decode every image of an image folder once at start-up to find corrupt ones.
    check_images: bool = True
    input_size: int = setting(32, ge=1)
    #: Channels the model sees: 1 keeps grayscale data native, 3 repeats channels.
    in_chans: Literal[1, 3] = 1
    #: Per-channel normalisation; None = ImageNet statistics (3 channels only).
    mean: list[float] | None = field(default_factory=lambda: [0.2860])
    std: list[float] | None = setting(default_factory=lambda: [0.3530], gt=0)
    #: Images per device and step.
    batch_size: int = setting(128, ge=1)
    #: Data loader workers of the per-image path (image folders, BYOL's colour
    #: augmentations); the in-memory path needs none.
    num_workers: int = setting(2, ge=0)
    #: Hold data that is one uint8 array (the embedded subset, MNIST, CIFAR) as a
    #: tensor and crop / flip / normalise each batch on the training device, for
    #: methods whose augmentation allows it (SimMIM, MAE); false: per-image PIL
    #: transforms in workers.
    in_memory: bool = True
    #: Use only N evenly spaced training images (quick runs, tests); None = all.
    limit_train: int | None = setting(None, ge=1)
    #: Use only N evenly spaced evaluation images; None = all.
    limit_eval: int | None = setting(None, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.mean is None) != (self.std is None):
            raise SettingError(
                "mean", self.mean, "and std must both be given, or both null (ImageNet)"
            )
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.in_chans:
                raise SettingError(
                    name,
                    values,
                    f"needs one value per channel (in_chans={self.in_chans})",
                )
        if self.mean is None and self.in_chans != 3:
            raise SettingError(
                "mean",
                None,
                "means ImageNet statistics, which have 3 channels, but in_chans=1; "
                "give the statistics of your data (Fashion-MNIST: mean [0.286], std "
                "[0.353])",
            )


@dataclass
class OptimConfig(OptimizerSettings):
    """The method's optimiser settings, plus gradient accumulation (the Trainer's)."""

    #: Batches whose gradients add up before one optimiser step.
    accumulate_grad_batches: int = setting(1, ge=1)


ScheduleConfig = ScheduleSettings
FinetuneConfig = FinetuneRecipe

Precision = Literal["auto", "32", "32-true", "bf16-mixed", "16-mixed"]


@dataclass
class TrainerConfig(Checked):
    """What goes to Lightning's Trainer, plus checkpoints and images."""

    epochs: int = setting(10, ge=1)
    #: Stop after this many optimiser steps; None = run all epochs.
    max_steps: int | None = setting(None, ge=1)
    #: "auto": bf16 mixed precision where the device computes bf16 natively (CUDA
    #: Ampere+, CPUs with AVX512-BF16 / AMX), fp32 elsewhere; printed at the start.
    precision: Precision = "auto"
    accelerator: str = "auto"
    #: Devices per node: a count, -1 / "auto" for all, or a list such as "0,1".
    devices: int | str = 1
    num_nodes: int = setting(1, ge=1)
    strategy: str = "auto"
    compile: bool = False
    #: Recompute block activations in the backward pass (less memory, more time),
    #: for encoders too large for the device otherwise.
    activation_checkpointing: bool = False
    #: Also write a checkpoint every N steps (besides every epoch); None = off.
    checkpoint_every_n_steps: int | None = setting(None, ge=1)
    #: Keep only the newest N ``epoch=NNN.ckpt`` files (``last.ckpt`` always stays);
    #: None keeps every epoch's file.
    keep_epoch_checkpoints: int | None = setting(None, ge=1)
    log_every_n_steps: int = setting(20, ge=1)
    #: Save a reconstruction PNG every N epochs (and at the end); 0 = only at the end.
    reconstruction_every_n_epochs: int = setting(1, ge=0)
    #: Train a linear classifier on detached features where labels exist.
    online_classifier: bool = True
    progress_bar: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        devices = self.devices
        if isinstance(devices, bool) or (
            isinstance(devices, int) and devices < 1 and devices != -1
        ):
            raise SettingError("devices", devices, "must be >= 1, -1 (all) or 'auto'")
        if isinstance(devices, str) and devices != "auto":
            parts = [part.strip() for part in devices.strip(",").split(",")]
            if not all(part.isdigit() for part in parts):
                raise SettingError(
                    "devices", devices, "must be a count, 'auto' or indices like '0,1'"
                )


@dataclass
class EvalConfig(Checked):
    """Evaluation run at the end of pretraining."""

    knn: bool = True
    knn_k: int = setting(20, ge=1)
    # lightly_simmim.evaluation.knn.MIN_TEMPERATURE (a test checks they agree):
    # exp(similarity / T) in lightly's knn_predict overflows float32 below it.
    knn_temperature: float = setting(0.07, ge=0.012)
    #: A ``lightly.datasets`` name; None = the training dataset's test split.
    dataset: str | None = None


@dataclass
class MethodConfig:
    """``name`` of a ``lightly.methods`` entry point, its components, its options.

    ``head``, ``loss`` and ``transform`` name entry points of the ``lightly.heads``,
    ``lightly.losses`` and ``lightly.transforms`` groups; None is the method's own.
    """

    name: str = "simmim"
    head: str | None = None
    loss: str | None = None
    transform: str | None = None
    #: The method's own options, checked against its Settings dataclass.
    options: dict[str, object] = field(
        default_factory=lambda: {"mask_patch_size": 8, "mask_ratio": 0.6}
    )


@dataclass
class Config(Checked):
    """A whole run."""

    method: MethodConfig = field(default_factory=MethodConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = setting(0, ge=0, lt=2**32)
    #: Start from the weights of this run folder or checkpoint (continued
    #: pretraining, e.g. of a converted official checkpoint); None = fresh init.
    init_from: str | None = None
    #: Run folder: ``output_dir/name``.
    output_dir: str = "runs"
    #: Name of the run folder; None = the method name. A plain folder name.
    name: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        name = self.name
        if name is not None and (not name or "/" in name or name in {".", ".."}):
            raise SettingError(
                "name", name, "must be a plain folder name (the run is output_dir/name)"
            )
