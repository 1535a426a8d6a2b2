"""The per-step schedules on timm's schedulers, and linear LR scaling."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from lightly_simmim.optim import OptimizerSettings, create_optimizer, scaled_lr
from lightly_simmim.schedule import PerStepScheduler, ScheduleSettings, create_scheduler
from lightly_simmim.settings import SettingError


def _rates(scheduler: PerStepScheduler, steps: int) -> list[float]:
    """The first group's rate at each step 0..steps-1."""
    rates = []
    for step in range(steps):
        scheduler.step_update(step)
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
    return rates


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr)


def test_scaled_lr__is_linear_in_the_global_batch() -> None:
    assert scaled_lr(1e-4, 2048, 512) == pytest.approx(4e-4)
    assert scaled_lr(2e-3, 128, 512) == pytest.approx(5e-4)


@pytest.mark.parametrize("warmup_prefix", [True, False])
def test_create_scheduler__cosine_with_warmup(warmup_prefix: bool) -> None:
    peak, warmup_lr, min_lr, per_epoch = 0.1, 0.001, 0.01, 4
    settings = ScheduleSettings("cosine", 1.5, warmup_lr, min_lr)
    scheduler = create_scheduler(
        _optimizer(peak),
        settings,
        steps_per_epoch=per_epoch,
        total_steps=20,
        warmup_prefix=warmup_prefix,
    )
    warmup = 6  # 1.5 epochs of 4 steps
    # Written out: linear warmup; then the cosine over the steps after the warmup
    # (prefix) or over all steps with the warmup inside it (official SimMIM).
    span, offset = (14, warmup) if warmup_prefix else (20, 0)

    def expected(step: int) -> float:
        if step < warmup:
            return warmup_lr + (peak - warmup_lr) * step / warmup
        t = min(step - offset, span)
        return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * t / span))

    assert _rates(scheduler, 25) == pytest.approx([expected(s) for s in range(25)])


def test_create_scheduler__scale_applies_to_warmup_and_min_lr() -> None:
    settings = ScheduleSettings("cosine", 1, base_warmup_lr=1e-6, base_min_lr=1e-5)
    scheduler = create_scheduler(
        _optimizer(1.0), settings, steps_per_epoch=2, total_steps=4, scale=4.0
    )
    rates = _rates(scheduler, 5)
    assert rates[0] == pytest.approx(4e-6)  # base_warmup_lr x scale
    assert rates[4] == pytest.approx(4e-5)  # base_min_lr x scale at the end


def test_create_scheduler__multistep_decays_at_the_milestone_step() -> None:
    settings = ScheduleSettings("multistep", 0, milestones=[2, 3], gamma=0.5)
    scheduler = create_scheduler(
        _optimizer(1.0), settings, steps_per_epoch=10, total_steps=50
    )
    rates = _rates(scheduler, 40)
    # As the official code (and torch's MultiStepLR): decayed from step 20 on.
    assert rates[19] == 1.0 and rates[20] == 0.5 and rates[29] == 0.5
    assert rates[30] == 0.25


def test_create_scheduler__constant_after_warmup() -> None:
    settings = ScheduleSettings("constant", 1, base_warmup_lr=0.0, milestones=[1])
    scheduler = create_scheduler(
        _optimizer(0.2), settings, steps_per_epoch=5, total_steps=20
    )
    rates = _rates(scheduler, 20)
    assert rates[:5] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    assert rates[5:] == pytest.approx([0.2] * 15)  # milestones ignored


def test_per_step_scheduler__state_restores_nothing() -> None:
    # The rate is a function of settings and step: a checkpoint's scheduler state
    # must not bring back an old peak rate (a resume applies its config).
    old = create_scheduler(
        _optimizer(1.0),
        ScheduleSettings("constant", 0),
        steps_per_epoch=1,
        total_steps=10,
    )
    new = create_scheduler(
        _optimizer(0.5),
        ScheduleSettings("constant", 0),
        steps_per_epoch=1,
        total_steps=10,
    )
    new.load_state_dict(old.state_dict())
    assert _rates(new, 3) == [0.5, 0.5, 0.5]


def _vit_layer(name: str, depth: int) -> int:
    """BEiT's layer id, written out: stem 0, block i -> i + 1, final norm with the
    last block, head last."""
    block = re.match(r"blocks\.(\d+)\.", name)
    if block:
        return int(block[1]) + 1
    if name.startswith("norm."):
        return depth
    if name.startswith("head."):
        return depth + 1
    return 0  # patch_embed, cls_token, pos_embed


def test_layer_decay__rates_in_effect_after_a_step_follow_the_formula(
    tiny_timm_model: Callable[..., nn.Module],
) -> None:
    depth, decay, base = 3, 0.5, 0.08
    model = tiny_timm_model("vit", img_size=16, depth=depth, num_classes=4)
    optimizer = create_optimizer(model, lr=base, layer_decay=decay)
    scheduler = create_scheduler(
        optimizer,
        ScheduleSettings("constant", warmup_epochs=0),
        steps_per_epoch=1,
        total_steps=5,
    )
    scheduler.step_update(1)  # what the LightningModule does after a step
    names = {id(p): n for n, p in model.named_parameters()}
    checked = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            layer = _vit_layer(names[id(param)], depth)
            expected = base * decay ** (depth + 1 - layer)
            assert group["lr"] == pytest.approx(expected), names[id(param)]
            checked += 1
    assert checked == len(names)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_lr": 0.0}, "base_lr"),
        ({"betas": [0.9, 1.0]}, "betas"),
        ({"betas": [0.9]}, "betas"),
        ({"clip_grad": -1.0}, "clip_grad"),
        ({"optimizer": "adamx"}, "optimizer"),
    ],
)
def test_optimizer_settings__out_of_range_names_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(SettingError, match=f"'{field}'"):
        OptimizerSettings(**kwargs)  # type: ignore[arg-type]


def test_schedule_settings__out_of_range_names_the_field() -> None:
    with pytest.raises(SettingError, match="'warmup_epochs' = -1 must be >= 0"):
        ScheduleSettings(warmup_epochs=-1)
    with pytest.raises(SettingError, match="'gamma' = 0 must be > 0"):
        ScheduleSettings(gamma=0)
