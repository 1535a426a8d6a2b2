"""Precision without a Trainer: ``auto``, autocast, the optimiser step hook."""

from __future__ import annotations

import pytest
import torch

from lightly_simmim.devices import resolve_precision as resolve_auto
from lightly_simmim.throughput.precision import StepPrecision, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("given", "expected"), [("32", "32"), ("32-true", "32")])
def test_resolve_precision__lightning_aliases(given: str, expected: str) -> None:
    assert resolve_precision(given, CPU).name == expected


def test_resolve_precision__auto_follows_the_loops_resolution() -> None:
    resolved = resolve_precision("auto", CPU)
    loop = resolve_auto("auto", "cpu")
    assert resolved.name == ("32" if loop == "32-true" else loop)
    assert resolved.reason.startswith("auto: ")


def test_resolve_precision__fp16_on_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match="16-mixed needs CUDA"):
        resolve_precision("16-mixed", CPU)


def test_step_precision__bf16_autocasts_the_forward_pass_only() -> None:
    weight = torch.randn(4, 4, requires_grad=True)
    precision = StepPrecision("bf16-mixed", CPU)
    with precision.autocast():
        out = torch.randn(2, 4) @ weight
    assert out.dtype == torch.bfloat16
    precision.backward(out.float().sum())
    assert weight.grad is not None and weight.grad.dtype == torch.float32
    with StepPrecision("32", CPU).autocast():
        assert (torch.randn(2, 4) @ weight).dtype == torch.float32


def test_step_precision__stepper_runs_the_closure_then_steps() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    calls = []

    def closure() -> torch.Tensor:
        calls.append("closure")
        optimizer.zero_grad()
        loss = weight.sum()  # gradient 1 everywhere
        loss.backward()
        return loss

    StepPrecision("32", CPU).stepper(optimizer).step(closure)
    assert calls == ["closure"]
    torch.testing.assert_close(weight.detach(), torch.full((3,), 0.5))
