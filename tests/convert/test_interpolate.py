"""Bias-table resizing against independent statements of the official recipe.

The official ``remap_pretrained_keys_*`` places the old offsets at geometrically
spread positions and samples scipy's ``interp2d(kind="cubic")`` (FITPACK's
interpolating tensor-product cubic spline, knots at the data points except the
second and next-to-last) at the new integer offsets. The references here are a
polynomial root for the positions and a B-spline collocation (Cox-de Boor) for the
spline, so they share no code with the converter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from lightly_simmim.convert.interpolate import (
    geometric_offsets,
    resize_bias_table,
    spline_matrix,
)


def _reference_offsets(src_side: int, dst_side: int) -> Tensor:
    """Offsets 1, 1 + q, ... with 1 + q + ... + q^(n-1) = dst // 2, q by root."""
    n, m = src_side // 2, dst_side // 2
    # (q^n - 1) / (q - 1) = m  <=>  q^n - m q + (m - 1) = 0, q != 1.
    roots = np.roots([1.0] + [0.0] * (n - 2) + [-m, m - 1.0])
    q = min(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > 1.0 + 1e-6)
    half = np.cumsum(q ** np.arange(n))
    return torch.tensor(np.concatenate([-half[::-1], [0.0], half]))


def _bspline_basis(knots: list[float], x: float, degree: int = 3) -> list[float]:
    """Cox-de Boor: the values of all degree-3 B-splines of ``knots`` at ``x``."""
    last = max(i for i in range(len(knots) - 1) if knots[i] < knots[i + 1])
    basis = [
        1.0 if knots[i] <= x < knots[i + 1] or (i == last and x == knots[-1]) else 0.0
        for i in range(len(knots) - 1)
    ]
    for k in range(1, degree + 1):
        nxt = []
        for i in range(len(knots) - k - 1):
            left = knots[i + k] - knots[i]
            right = knots[i + k + 1] - knots[i + 1]
            value = (x - knots[i]) / left * basis[i] if left else 0.0
            value += (knots[i + k + 1] - x) / right * basis[i + 1] if right else 0.0
            nxt.append(value)
        basis = nxt
    return basis


def _fitpack_spline(xs: Tensor, ys: Tensor, points: Tensor) -> Tensor:
    """FITPACK's s=0 cubic: B-splines on x0 (4 times), x2..x(n-3), x(n-1) (4 times)."""
    x = xs.tolist()
    knots = [x[0]] * 4 + x[2:-2] + [x[-1]] * 4
    colloc = torch.tensor([_bspline_basis(knots, xi) for xi in x], dtype=torch.float64)
    coeffs = torch.linalg.solve(colloc, ys.to(torch.float64))
    clamped = points.clamp(x[0], x[-1]).tolist()
    at = torch.tensor([_bspline_basis(knots, p) for p in clamped], dtype=torch.float64)
    return at @ coeffs


@pytest.mark.parametrize(("src", "dst"), [(11, 13), (23, 27), (9, 13), (27, 47)])
def test_geometric_offsets__match_the_official_progression(src: int, dst: int) -> None:
    offsets = geometric_offsets(src, dst)

    assert offsets.shape == (src,)
    torch.testing.assert_close(offsets, -offsets.flip(0))
    assert offsets[src // 2] == 0
    torch.testing.assert_close(offsets, _reference_offsets(src, dst), rtol=0, atol=1e-4)
    assert abs(float(offsets[-1]) - dst // 2) < 1e-4


def test_geometric_offsets__ratio_capped_at_one_and_a_half() -> None:
    # The official bisection searches q in [1.01, 1.5]: a stretch beyond what q = 1.5
    # reaches (3 -> 7 offsets a side: 1 + q + q^2 = 7 needs q = 2) stops at 1.5, and
    # the outer new offsets are then clamped to the old range.
    torch.testing.assert_close(
        geometric_offsets(7, 15),
        torch.tensor([-4.75, -2.5, -1.0, 0.0, 1.0, 2.5, 4.75], dtype=torch.float64),
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.parametrize("src", [5, 11, 13])
def test_spline_matrix__matches_fitpack_bspline_collocation(src: int) -> None:
    knots = geometric_offsets(src, src + 6)
    half = (src + 6) // 2
    points = torch.arange(-half, half + 1, dtype=torch.float64)
    values = torch.randn(src, 4, dtype=torch.float64)

    result = spline_matrix(knots, points) @ values

    torch.testing.assert_close(result, _fitpack_spline(knots, values, points))


def test_spline_matrix__reproduces_cubics_and_is_not_linear() -> None:
    knots = geometric_offsets(11, 15)
    points = torch.linspace(-7, 7, 29, dtype=torch.float64)

    def cubic(x: Tensor) -> Tensor:
        return 0.2 * x**3 - x**2 + 3 * x - 1

    torch.testing.assert_close(
        spline_matrix(knots, points) @ cubic(knots), cubic(points)
    )
    # Piecewise linear interpolation would miss the curvature by far more.
    linear = torch.from_numpy(np.interp(points, knots, cubic(knots)))
    assert (linear - cubic(points)).abs().max() > 0.1


def test_resize_bias_table__tensor_product_with_class_rows() -> None:
    heads, src, dst = 3, 5, 7  # token grids, as for a ViT at 80 -> 112 px / 16
    offsets = geometric_offsets(2 * src - 1, 2 * dst - 1)
    scale = torch.arange(1, heads + 1, dtype=torch.float64)

    def surface(rows: Tensor, cols: Tensor) -> Tensor:
        # A product of cubics per head: reproduced exactly by a bicubic spline.
        return (
            (rows**3 - 2 * rows)[:, None, None]
            * (cols**2 + cols)[None, :, None]
            * scale
        )

    table = surface(offsets, offsets).reshape(-1, heads)
    class_rows = torch.randn(3, heads, dtype=torch.float64)
    resized = resize_bias_table(
        torch.cat([table, class_rows]), (src, src), (dst, dst), extra_tokens=3
    )

    new = torch.arange(-(dst - 1), dst, dtype=torch.float64)
    assert resized.shape == ((2 * dst - 1) ** 2 + 3, heads)
    # The outermost new offsets sit within the bisection's 1e-6 of the old range.
    torch.testing.assert_close(
        resized[:-3], surface(new, new).reshape(-1, heads), rtol=1e-5, atol=1e-3
    )
    torch.testing.assert_close(resized[-3:], class_rows, rtol=0, atol=0)


def test_resize_bias_table__same_window_is_unchanged() -> None:
    table = torch.randn(49, 2)
    assert resize_bias_table(table, (4, 4), (4, 4)) is table


def test_resize_bias_table__wrong_rows() -> None:
    with pytest.raises(ValueError, match="has 49 rows, got shape"):
        resize_bias_table(torch.randn(50, 2), (4, 4), (5, 5))


def test_resize_bias_table__matches_scipy_like_the_official_code() -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    table = torch.randn(11 * 11, 2, dtype=torch.float64)
    offsets = geometric_offsets(11, 13).numpy()
    new = np.arange(-6, 7, dtype=np.float64)

    result = resize_bias_table(table, (6, 6), (7, 7))

    for head in range(2):
        grid = table[:, head].reshape(11, 11).numpy()
        spline = interpolate.RectBivariateSpline(
            offsets, offsets, grid, kx=3, ky=3, s=0
        )
        expected = torch.from_numpy(spline(new, new)).reshape(-1)
        torch.testing.assert_close(result[:, head], expected)
