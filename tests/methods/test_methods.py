"""Every registered pretraining method, built through the registry on tiny CPU shapes.

The tests parametrised over ``registry.list_names("methods")`` run for each method this
package registers; a third-party method without a tiny configuration here is skipped.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
import pytorch_lightning as pl
import timm
import torch
from PIL import Image
from pytorch_lightning.callbacks import Callback
from torch import nn

from lightly_simmim import registry
from lightly_simmim.config import ConfigError, from_dict
from lightly_simmim.methods import Method, PretrainMethod
from lightly_simmim.optim import OptimizerSettings
from lightly_simmim.schedule import ScheduleSettings
from lightly_simmim.settings import SettingError
from lightly_simmim.transforms import EvalTransform

pytestmark = pytest.mark.filterwarnings(
    # Lightning's advice for real runs (workers, few batches, tips) is noise here.
    "ignore::UserWarning:pytorch_lightning.*",
    "ignore::UserWarning:lightning_fabric.*",
    "ignore:.*LeafSpec",
)

INPUT_SIZE = 32
BATCH = 4
NUM_CLASSES = 3
MEAN, STD = [0.286], [0.353]

# name -> (encoder family of the shared tiny models (conftest.py), small method
#          options, number of views, parameters without weight decay, parameters
#          with weight decay)
TINY: dict[str, dict[str, Any]] = {
    "simmim": {
        "encoder": "vit",
        "options": {"mask_patch_size": 16},
        "views": 1,
        "no_decay": [
            "model.encoder.mask_token",
            "model.encoder.encoder.vit.pos_embed",
            "model.encoder.encoder.vit.cls_token",
        ],
        "decay": [
            "model.head.conv.weight",
            "model.encoder.encoder.vit.patch_embed.proj.weight",
        ],
    },
    "mae": {
        "encoder": "vit",
        "options": {"decoder_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
        "views": 1,
        "no_decay": ["decoder.mask_token", "backbone.vit.cls_token"],
        "decay": ["decoder_pred.weight", "backbone.vit.patch_embed.proj.weight"],
    },
    "byol": {
        "encoder": "resnet",
        "options": {
            "projection_hidden_dim": 32,
            "projection_dim": 16,
            "prediction_hidden_dim": 32,
        },
        "views": 2,
        "no_decay": ["backbone.bn1.weight", "backbone.bn1.bias"],
        "decay": ["backbone.conv1.weight", "projection_head.layers.0.weight"],
    },
}

METHODS = registry.list_names("methods")


def _spec(name: str) -> dict[str, Any]:
    if name not in TINY:
        pytest.skip(f"no tiny configuration for third-party method {name!r}")
    return TINY[name]


# tiny_timm_kwargs(family, *, img_size=32, in_chans=3, **overrides) -> (name, kwargs)
TinyKwargs = Callable[..., tuple[str, dict[str, Any]]]
# build(name, *, num_classes=3, optim=None, schedule=None, batch_size=4, seed=0,
#       **method options) -> the method on a tiny grayscale encoder
Build = Callable[..., PretrainMethod]


@pytest.fixture
def build(tiny_timm_kwargs: TinyKwargs) -> Build:
    def create(
        name: str,
        *,
        num_classes: int | None = NUM_CLASSES,
        optim: OptimizerSettings | None = None,
        schedule: ScheduleSettings | None = None,
        batch_size: int = BATCH,
        seed: int = 0,
        **options: Any,
    ) -> PretrainMethod:
        spec = _spec(name)
        cls = registry.get("methods", name)
        encoder = cls.build_encoder(
            *tiny_timm_kwargs(spec["encoder"], img_size=INPUT_SIZE, in_chans=1)
        )
        settings = from_dict(cls.Settings, {**spec["options"], **options}, "method.")
        method: PretrainMethod = cls(
            encoder,
            settings,
            input_size=INPUT_SIZE,
            in_chans=1,
            batch_size_per_device=batch_size,
            mean=MEAN,
            std=STD,
            num_classes=num_classes,
            optimizer=optim,
            schedule=schedule,
            seed=seed,
        )
        return method

    return create


def _images(count: int, mode: str = "L") -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shape = (28, 28) if mode == "L" else (28, 28, 3)
    return [
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
        for _ in range(count)
    ]


class _PILDataset(torch.utils.data.Dataset[tuple[list[torch.Tensor], int]]):
    """(default_transform(PIL image), label) like the training loop's datasets."""

    def __init__(self, transform: Any, labels: list[int]) -> None:
        self.transform = transform
        self.images = _images(len(labels))
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], int]:
        return self.transform(self.images[index]), self.labels[index]


class _Recorder(Callback):
    """Losses and rates of every step, and the parameters without a gradient."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.rates: list[list[float]] = []
        self.no_grad: set[str] = set()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        self.rates.append([group["lr"] for group in optimizer.param_groups])

    def on_after_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        self.no_grad |= {
            n
            for n, p in pl_module.named_parameters()
            if p.requires_grad and (p.grad is None or not p.grad.any())
        }

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.losses.append(float(outputs["loss"]))


def _trainer(callbacks: list[Callback], **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kwargs,
    )


def _fit(method: PretrainMethod, labels: list[int], **trainer_kwargs: Any) -> _Recorder:
    loader = torch.utils.data.DataLoader(
        _PILDataset(method.default_transform(), labels), batch_size=BATCH
    )
    recorder = _Recorder()
    _trainer([recorder], **({"max_steps": 2} | trainer_kwargs)).fit(method, loader)
    return recorder


def _optimizer_of(method: PretrainMethod) -> torch.optim.Optimizer:
    """The optimiser a method configures, after one step on a Trainer."""
    trainer = _trainer([], max_steps=1)
    loader = torch.utils.data.DataLoader(
        _PILDataset(method.default_transform(), [0] * BATCH), batch_size=BATCH
    )
    trainer.fit(method, loader)
    return trainer.optimizers[0]


def test_methods__builtins_registered() -> None:
    assert {"simmim", "mae", "byol"} <= set(METHODS)
    for name in ("simmim", "mae", "byol"):
        assert issubclass(registry.get("methods", name), PretrainMethod)


@pytest.mark.parametrize("name", METHODS)
def test_method__two_trainer_steps_update_every_parameter(
    name: str, build: Build
) -> None:
    torch.manual_seed(0)
    # Constant rate without warmup so every update is visible after two steps.
    method = build(name, schedule=ScheduleSettings(name="constant", warmup_epochs=0))
    before = {n: p.detach().clone() for n, p in method.named_parameters()}

    recorder = _fit(method, labels=[i % NUM_CLASSES for i in range(2 * BATCH)])

    assert len(recorder.losses) == 2
    assert all(math.isfinite(loss) for loss in recorder.losses)
    # Every trainable parameter (online classifier included) got a gradient: no
    # unused parameters, which DDP would reject.
    assert recorder.no_grad == set()
    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    unchanged = {n for n in trainable if torch.equal(before[n], method.state_dict()[n])}
    assert unchanged == set()
    frozen_changed = {
        n
        for n, p in method.named_parameters()
        if not p.requires_grad and not torch.equal(before[n], p)
    }
    if name == "byol":  # the target network follows the online one by momentum
        assert any(n.startswith("backbone_momentum.") for n in frozen_changed)
    else:  # fixed position tables / unused mask tokens stay as they are
        assert frozen_changed == set()


@pytest.mark.parametrize("name", METHODS)
def test_method__forward_features_and_timm_encoder(name: str, build: Build) -> None:
    method = build(name).eval()
    images = torch.randn(BATCH, 1, INPUT_SIZE, INPUT_SIZE)
    features = method(images)
    assert features.shape == (BATCH, method.feature_dim)
    encoder = method.timm_encoder()
    assert type(encoder).__module__.startswith("timm.")
    # The features are the exported timm model's own pooled features.
    assert torch.allclose(encoder(images), features, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_method__default_transform_views(name: str, build: Build) -> None:
    method = build(name)
    transform = method.default_transform()
    for image in (_images(1)[0], _images(1, mode="RGB")[0]):  # RGB -> 1 channel
        views = transform(image)
        assert len(views) == _spec(name)["views"]
        assert all(v.shape == (1, INPUT_SIZE, INPUT_SIZE) for v in views)
        assert all(v.dtype == torch.float32 for v in views)


@pytest.mark.parametrize("name", METHODS)
def test_method__eval_transform_resizes_and_normalises(name: str, build: Build) -> None:
    transform = build(name).eval_transform()
    assert isinstance(transform, EvalTransform)
    black = Image.new("RGB", (40, 56))  # RGB, non-square -> (1, 32, 32)
    out = transform(black)
    assert out.shape == (1, INPUT_SIZE, INPUT_SIZE)
    assert torch.allclose(out, torch.full_like(out, (0.0 - MEAN[0]) / STD[0]))


@pytest.mark.parametrize("name", METHODS)
def test_method__reconstruct_batch(name: str, build: Build) -> None:
    method = build(name).eval()
    images = torch.randn(BATCH, 1, INPUT_SIZE, INPUT_SIZE)
    result = method.reconstruct_batch(images)
    if name == "byol":
        assert result is None
        return
    assert result is not None
    out_images, mask, reconstruction = result
    assert torch.equal(out_images, images)
    grid = INPUT_SIZE // 8  # the tiny ViT's 8 px patches
    assert mask.shape == (BATCH, grid, grid) and mask.dtype == torch.bool
    assert mask.any() and not mask.all()
    assert reconstruction.shape == images.shape
    # The same masks every call: grids of different epochs are comparable.
    again = method.reconstruct_batch(images)
    assert again is not None and torch.equal(again[1], mask)


@pytest.mark.parametrize("name", METHODS)
def test_method__weight_decay_groups(name: str, build: Build) -> None:
    spec = _spec(name)
    optim = OptimizerSettings(weight_decay=0.05)
    method = build(name, optim=optim)
    optimizer = _optimizer_of(method)
    params = dict(method.named_parameters())
    decay_of = {
        id(p): group["weight_decay"]
        for group in optimizer.param_groups
        for p in group["params"]
    }
    for n in spec["no_decay"]:
        assert decay_of[id(params[n])] == 0.0, n
    for n in spec["decay"]:
        assert decay_of[id(params[n])] == 0.05, n
    for n in ("online_classifier.classification_head.weight",):
        assert decay_of[id(params[n])] == 0.0, n
    # Frozen parameters (momentum copies, fixed position tables) are not optimised.
    for n, p in params.items():
        assert (id(p) in decay_of) == p.requires_grad, n


@pytest.mark.parametrize("name", METHODS)
def test_method__schedule_and_batch_scaling_come_from_the_trainer(
    name: str, build: Build
) -> None:
    base_lr, base_batch, base_warmup, base_min = 1e-3, 2, 1e-6, 1e-5
    method = build(
        name,
        optim=OptimizerSettings(base_lr=base_lr, base_batch_size=base_batch),
        schedule=ScheduleSettings(
            name="cosine",
            warmup_epochs=1.5,
            base_warmup_lr=base_warmup,
            base_min_lr=base_min,
        ),
    )
    labels = [i % NUM_CLASSES for i in range(4 * BATCH)]  # 4 batches per epoch
    # 2 batches per optimiser step: 2 steps per epoch, 6 in 3 epochs, 3 of warmup.
    recorder = _fit(
        method, labels, max_epochs=3, max_steps=-1, accumulate_grad_batches=2
    )
    assert method.global_batch_size == BATCH * 1 * 2  # per device x devices x acc.
    # All three rates scale with the global batch, as in the official code.
    scale = method.global_batch_size / base_batch
    peak, warmup_lr, min_lr = base_lr * scale, base_warmup * scale, base_min * scale
    assert method.learning_rate == pytest.approx(peak)
    assert (method.steps_per_epoch, method.total_steps) == (2, 6)

    # The formulas, written out: linear warmup, and the cosine to min_lr over all
    # six steps with the warmup inside it (timm's CosineLRScheduler, as official).
    def expected(step: int) -> float:
        if step < 3:
            return warmup_lr + (peak - warmup_lr) * step / 3
        return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * step / 6))

    # Lightning logs a rate per accumulated batch; one per optimiser step counts.
    per_step = recorder.rates
    assert len(per_step) == 6
    for step, rates in enumerate(per_step):
        assert rates == pytest.approx([expected(step)] * len(rates)), step


def test_method__multistep_and_constant_schedules(build: Build) -> None:
    labels = [0] * (10 * BATCH)  # 10 steps per epoch
    schedule = ScheduleSettings(
        name="multistep", warmup_epochs=0, milestones=[2, 4], gamma=0.5
    )
    method = build("simmim", schedule=schedule)
    rates = _fit(method, labels, max_epochs=5, max_steps=-1).rates
    peak = OptimizerSettings().base_lr * BATCH / OptimizerSettings().base_batch_size
    head = [step[0] for step in rates]
    assert head[0] == pytest.approx(peak) and head[19] == pytest.approx(peak)
    assert head[20] == pytest.approx(peak * 0.5) and head[39] == pytest.approx(
        peak * 0.5
    )
    assert head[40] == pytest.approx(peak * 0.25)
    constant = build("simmim", schedule=ScheduleSettings(name="constant"))
    head = [
        step[0] for step in _fit(constant, labels, max_epochs=2, max_steps=-1).rates
    ]
    assert head[10:] == pytest.approx([peak] * 10)  # after one epoch of warmup
    scale = BATCH / OptimizerSettings().base_batch_size
    assert head[0] == pytest.approx(ScheduleSettings().base_warmup_lr * scale)


@pytest.mark.parametrize("name", METHODS)
def test_method__online_classifier_only_with_classes(name: str, build: Build) -> None:
    assert build(name, num_classes=None).online_classifier is None
    method = build(name, num_classes=NUM_CLASSES)
    assert method.online_classifier is not None
    head = method.online_classifier.classification_head
    assert (head.in_features, head.out_features) == (method.feature_dim, NUM_CLASSES)


@pytest.mark.parametrize("name", ["simmim", "byol"])
def test_method__unlabelled_samples_skip_the_classifier(
    name: str, build: Build
) -> None:
    torch.manual_seed(0)
    method = build(name)
    views = [
        torch.randn(BATCH, 1, INPUT_SIZE, INPUT_SIZE)
        for _ in range(_spec(name)["views"])
    ]
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer attached
        loss_none = method.training_step((views, torch.full((BATCH,), -1)), 0)
    loss_none.backward()
    head = method.online_classifier.classification_head  # type: ignore[union-attr]
    # No labels: the classifier adds nothing but still gets a (zero) gradient.
    assert head.weight.grad is not None and not head.weight.grad.any()
    method.zero_grad()
    labels = torch.tensor([0, -1, 2, -1])
    with pytest.warns(UserWarning, match="self.log"):
        method.training_step((views, labels), 0).backward()
    assert head.weight.grad is not None and head.weight.grad.any()


def test_method__online_classifier_loss_equals_lightlys_on_the_labelled_samples(
    build: Build,
) -> None:
    # The masked sums (no host synchronisation) against lightly's own training_step
    # run on the labelled subset only.
    torch.manual_seed(0)
    method = build("simmim", num_classes=10)
    classifier = method.online_classifier
    assert classifier is not None and classifier.topk == (1, 5)
    logged: dict[str, torch.Tensor] = {}
    method.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign,assignment]
    features = torch.randn(12, method.feature_dim)
    for labels in (
        torch.randint(0, 10, (12,)),  # fully labelled
        torch.tensor([0, -1, 2, -1, 9, 9, -1, 3, 4, -1, 1, 7]),  # mixed
    ):
        known = labels >= 0
        ours = method._online_classifier_loss(features, labels)
        theirs, log = classifier.training_step((features[known], labels[known]), 0)
        torch.testing.assert_close(ours, theirs)
        assert logged.keys() == log.keys()
        for key, value in log.items():
            torch.testing.assert_close(logged[key].float(), value.float())
    # No labels at all: zero, and finite (a plain mean would be 0 / 0).
    loss = method._online_classifier_loss(features, torch.full((12,), -1))
    assert loss.item() == 0.0


@pytest.mark.parametrize("name", METHODS)
def test_method__unknown_setting_names_nearest_key(name: str) -> None:
    cls = registry.get("methods", name)
    first = dataclasses.fields(cls.Settings)[0].name
    with pytest.raises(ConfigError, match=f"method.{first}x'.*Did you mean '{first}'"):
        from_dict(cls.Settings, {f"{first}x": 1}, prefix="method.")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mask_patch_size": 12}, "input_size .* multiple of mask_patch_size \\(12\\)"),
        ({"mask_patch_size": 4}, "mask_patch_size \\(4\\) must be a multiple of"),
        ({"mask_ratio": 1.5}, "'method.mask_ratio' = 1.5 must be in \\[0, 1\\]"),
        # One 32 px cell on a 32 px image: masking it leaves nothing visible.
        ({"mask_patch_size": 32}, "masks 1 of the 1 cell.* some visible"),
        ({"mask_ratio": 0.0}, "masks 0 of the 4 cell.*some cells masked"),
        ({"mask_ratio": 1.0}, "masks 4 of the 4 cell"),
    ],
)
def test_simmim__impossible_mask_settings_raise(
    options: dict[str, Any], match: str, build: Build
) -> None:
    with pytest.raises(ValueError, match=match):
        build("simmim", **options)


def test_mae__impossible_settings_raise(
    build: Build, tiny_timm_kwargs: TinyKwargs
) -> None:
    with pytest.raises(ValueError, match=re.escape("mask_ratio=0.99 keeps 0 of 16")):
        build("mae", mask_ratio=0.99)
    with pytest.raises(ConfigError, match=re.escape("'method.mask_ratio' = 1.0 must")):
        build("mae", mask_ratio=1.0)
    with pytest.raises(
        ValueError, match=r"decoder_dim \(16\) .* decoder_num_heads \(3\)"
    ):
        build("mae", decoder_num_heads=3)
    with pytest.raises(ValueError, match="VisionTransformer"):
        registry.get("methods", "mae").build_encoder(*tiny_timm_kwargs("resnet"))


def test_method__masks_follow_the_seed(build: Build) -> None:
    images = [torch.randn(BATCH, 1, INPUT_SIZE, INPUT_SIZE)]

    def first_loss(name: str, seed: int) -> float:
        torch.manual_seed(0)  # same weights; only the mask seed differs
        method = build(name, seed=seed).eval()
        with torch.no_grad():
            return float(method.method_loss(images)[0])

    for name in ("simmim", "mae"):
        assert first_loss(name, 0) == first_loss(name, 0)
        assert first_loss(name, 0) != first_loss(name, 1)


def test_method__resumed_run_does_not_replay_the_first_masks(build: Build) -> None:
    images = [torch.randn(BATCH, 1, INPUT_SIZE, INPUT_SIZE)]

    def first_loss(name: str, start_step: int) -> float:
        torch.manual_seed(0)  # same weights; only the stream differs
        method = build(name).eval()
        method.reseed_masks(start_step)  # what on_train_start does
        with torch.no_grad():
            return float(method.method_loss(images)[0])

    for name in ("simmim", "mae"):
        fresh = first_loss(name, 0)
        assert first_loss(name, 0) == fresh  # a fresh run keeps the seed's stream
        assert first_loss(name, 40) == first_loss(name, 40)  # deterministic resume
        assert first_loss(name, 40) != fresh  # but not a replay of step 0


def test_byol__momentum_rises_from_base_to_one(build: Build) -> None:
    method = build("byol", momentum_base=0.9)
    labels = [0] * (3 * BATCH)
    _fit(method, labels, max_epochs=1, max_steps=-1)  # the schedule is 3 steps long
    assert method.total_steps == 3
    # lightly's cosine_schedule from 0.9 at step 0 to 1.0 at the last step (2).
    assert method.momentum == pytest.approx(1.0)  # type: ignore[attr-defined]
    for step in (0, 1):
        expected = 1.0 - 0.1 * (math.cos(math.pi * step / 2) + 1) / 2
        with mock.patch.object(
            type(method), "global_step", new_callable=mock.PropertyMock
        ) as global_step:
            global_step.return_value = step
            assert method.momentum == pytest.approx(expected)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"'method.momentum_base' = 1.5 must be in"):
        build("byol", momentum_base=1.5)


def test_byol__lars_from_timm(build: Build) -> None:
    optim = OptimizerSettings(optimizer="lars", weight_decay=1.5e-6)
    optimizer = _optimizer_of(build("byol", optim=optim))
    assert type(optimizer).__name__ == "Lars"


def test_method__bad_shared_arguments_raise(tiny_timm_kwargs: TinyKwargs) -> None:
    with pytest.raises(SettingError, match="'optimizer' = 'adamx' must be a timm"):
        OptimizerSettings(optimizer="adamx")
    cls = registry.get("methods", "simmim")
    encoder = cls.build_encoder(*tiny_timm_kwargs("vit", in_chans=1))
    kwargs: dict[str, Any] = {
        "input_size": INPUT_SIZE,
        "in_chans": 1,
        "batch_size_per_device": BATCH,
    }
    with pytest.raises(ValueError, match="ImageNet statistics, which have 3 channels"):
        cls(encoder, None, mean=None, std=None, **kwargs)
    with pytest.raises(ValueError, match="in_chans=1; give one value per channel"):
        cls(encoder, None, mean=[0.5] * 3, std=[0.5] * 3, **kwargs)
    with pytest.raises(TypeError, match="settings of type SimMIMSettings"):
        cls(encoder, {"mask_ratio": 0.5}, mean=MEAN, std=STD, **kwargs)
    with pytest.raises(ValueError, match="has no pluggable head"):
        registry.get("methods", "mae")(
            registry.get("methods", "mae").build_encoder(
                *tiny_timm_kwargs("vit", in_chans=1)
            ),
            head=nn.Identity,
            mean=MEAN,
            std=STD,
            **kwargs,
        )


def test_method__every_builtin_is_a_method(build: Build) -> None:
    for name in ("simmim", "mae", "byol"):
        assert isinstance(build(name), Method)


def test_method__imagenet_statistics_for_rgb(tiny_timm_kwargs: TinyKwargs) -> None:
    cls = registry.get("methods", "mae")
    encoder = cls.build_encoder(*tiny_timm_kwargs("vit", in_chans=3))
    method = cls(
        encoder,
        cls.Settings(decoder_dim=16, decoder_depth=1, decoder_num_heads=2),
        input_size=INPUT_SIZE,
        in_chans=3,
        batch_size_per_device=BATCH,
    )
    assert method.mean == pytest.approx([0.485, 0.456, 0.406])
    views = method.default_transform()(_images(1)[0])  # grayscale PIL -> RGB
    assert views[0].shape == (3, INPUT_SIZE, INPUT_SIZE)
    assert isinstance(method.timm_encoder(), timm.models.VisionTransformer)
    assert isinstance(method.timm_encoder(), nn.Module)


def test_method__clipping_leaves_the_online_classifier_out(build: Build) -> None:
    method = build("simmim")
    for param in method.parameters():
        param.grad = torch.full_like(param, 10.0)
    classifier = method.online_classifier
    assert classifier is not None
    before = [p.grad.clone() for p in classifier.parameters()]  # type: ignore[union-attr]
    trainer = _trainer([])  # the hook reads the strategy from a Trainer
    method.trainer = trainer  # type: ignore[assignment]
    method.configure_gradient_clipping(
        torch.optim.SGD(method.parameters()), gradient_clip_val=1.0
    )
    own = [p.grad for n, p in method.named_parameters() if "online_classifier" not in n]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in own]))  # type: ignore[union-attr]
    assert float(norm) == pytest.approx(1.0, rel=1e-4)  # the model's own: clipped
    after = [p.grad for p in classifier.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
