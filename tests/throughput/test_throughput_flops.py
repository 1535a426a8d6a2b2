"""FLOP counting and the measured matmul peak."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightly_simmim.throughput.flops import count_flops, measure_matmul_peak

CPU = torch.device("cpu")


def test_count_flops__matmul_is_two_m_n_k() -> None:
    m, k, n = 7, 5, 3
    a, b = torch.randn(m, k), torch.randn(k, n)
    assert count_flops(lambda: a @ b) == 2 * m * n * k


def test_count_flops__fused_attention_counts_as_its_matmuls() -> None:
    # (B, H, S, D) = (2, 3, 5, 4): the fused kernel against the same attention
    # written out as two batched matmuls, forward and backward.
    shape = (2, 3, 5, 4)
    q = torch.randn(shape, requires_grad=True)
    k = torch.randn(shape, requires_grad=True)
    v = torch.randn(shape, requires_grad=True)

    def fused() -> None:
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    def written_out() -> None:
        scores = q @ k.transpose(-2, -1) / shape[-1] ** 0.5  # (B, H, S, S)
        (scores.softmax(-1) @ v).sum().backward()  # (B, H, S, D)

    b, h, s, d = shape
    forward = 2 * (2 * b * h * s * s * d)  # q @ k^T and p @ v
    assert count_flops(written_out) == 3 * forward  # backward: 2 products each
    assert count_flops(fused) == 3 * forward


def test_measure_matmul_peak__positive_and_names_the_dtype() -> None:
    peak = measure_matmul_peak(CPU, torch.bfloat16, size=64, trials=2)
    assert peak.flops_per_second > 0
    assert (peak.dtype, peak.size) == ("bf16", 64)
