"""FLOPs of a training step, and the device's matmul peak measured in the same run.

FLOPs are counted by torch's ``FlopCounterMode`` (matrix multiplications,
convolutions and attention; one multiply-add = 2 FLOPs; element-wise work is not
counted, as in every MFU figure). The MFU of a row is its counted FLOPs per second
divided by the rate of large matrix multiplications timed on the same device, in the
same dtype, in the same process: a peak the machine actually reaches today, not the
data-sheet number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from lightly_simmim.throughput.timing import synchronize

__all__ = ["MatmulPeak", "count_flops", "measure_matmul_peak"]

#: Side of the square matrices timed for the peak: large enough to saturate the
#: device's matrix units, small enough to take well under a second per product.
PEAK_MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}

_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _attention_flops(
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: object,
    out_shape: object = None,
    **kwargs: object,
) -> int:
    # (B, H, Sq, D) queries against (B, H, Sk, D) keys: scores = q @ k^T is
    # 2 * B * H * Sq * Sk * D FLOPs, out = softmax(scores) @ v another Sq * Sk * Dv.
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * (d + d_v)


def _attention_backward_flops(
    grad_out_shape: torch.Size,
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: object,
    out_shape: object = None,
    **kwargs: object,
) -> int:
    # Four products of the forward's size: dV = P^T dO, dP = dO V^T, dQ = dS K,
    # dK = dS^T Q (torch's convention for its fused kernels: no recomputation).
    return 2 * _attention_flops(query_shape, key_shape, value_shape)


def _cpu_attention_formulas() -> dict[object, Callable[..., int]]:
    """Formulas for the CPU's fused attention kernels, which torch does not count.

    Without them, ``scaled_dot_product_attention`` on the CPU counts as 0 FLOPs and
    every CPU ViT would look cheaper than it is. They are passed per counter
    (``custom_mapping``), never registered globally.
    """
    aten = torch.ops.aten
    # aten operator (overload packet) -> its FLOPs formula
    formulas: dict[object, Callable[..., int]] = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(
        aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None
    )
    if forward is not None:
        formulas[forward] = _attention_flops
    if backward is not None:
        formulas[backward] = _attention_backward_flops
    return formulas


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of one call of ``function`` (run it eagerly: compiled code is opaque).

    Args:
        function: Runs the work to count, e.g. a forward and backward pass.

    Returns:
        Matrix-multiply, convolution and attention FLOPs (2 per multiply-add).
    """
    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())
    with counter:
        function()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class MatmulPeak:
    """The device's measured matrix-multiply rate.

    Attributes:
        flops_per_second: The best rate of ``trials`` timed products.
        dtype: ``fp32``, ``bf16`` or ``fp16``: the dtype the rows' matmuls run in.
        size: Side of the square matrices.
    """

    flops_per_second: float
    dtype: str
    size: int

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (the JSON report's ``matmul_peak``)."""
        return asdict(self)


def measure_matmul_peak(
    device: torch.device,
    dtype: torch.dtype,
    size: int | None = None,
    trials: int = 5,
) -> MatmulPeak:
    """Times ``size x size`` matrix products on ``device`` and keeps the best rate.

    Args:
        device: Where to multiply.
        dtype: The dtype of the run's matmuls (fp32 for ``32``, bf16 for
            ``bf16-mixed``, fp16 for ``16-mixed``).
        size: Matrix side; None = :data:`PEAK_MATMUL_SIZE` for the device type.
        trials: Timed trials after one warm-up product.

    Returns:
        The peak.
    """
    side = size or PEAK_MATMUL_SIZE.get(device.type, PEAK_MATMUL_SIZE["cpu"])
    # One trial multiplies long enough to swamp the clock and launch latency.
    products = 10 if device.type == "cuda" else 1
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(side, side, device=device, generator=generator).to(dtype)
    b = torch.randn(side, side, device=device, generator=generator).to(dtype)
    out = torch.empty(side, side, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: kernel selection, caches
    best = 0.0
    for _ in range(trials):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(products):
            torch.mm(a, b, out=out)
        synchronize(device)
        seconds = time.perf_counter() - start
        best = max(best, products * 2 * side**3 / seconds)
    return MatmulPeak(best, _DTYPE_NAMES.get(dtype, str(dtype)), side)
