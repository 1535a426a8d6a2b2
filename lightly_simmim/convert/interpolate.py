"""Relative position bias tables resized the way the official SimMIM code does it.

When a checkpoint is used at another window size (Swin) or token grid (ViT), the
official ``utils.py::remap_pretrained_keys_swin`` / ``remap_pretrained_keys_vit``
resize every ``relative_position_bias_table``:

- A table for a ``wh x ww`` window holds one bias per relative offset, a
  ``(2 wh - 1) x (2 ww - 1)`` grid of offsets flattened row-major (row = vertical
  offset), plus, for the ViT, three extra rows (class-to-token, token-to-class,
  class-to-class) that are kept as they are.
- The old offsets are not placed on a uniform grid but spread geometrically: the
  offsets ``1, 2, ..., n`` of each half become ``1, 1 + q, 1 + q + q^2, ...`` with the
  ratio ``q`` found by bisection so that the outermost old offset lands on the
  outermost new one. Small offsets keep their spacing, large ones are stretched.
- The new table is sampled at the integer offsets of the new window from the
  bicubic interpolating spline of the old values (scipy's ``interp2d(kind="cubic")``
  there: FITPACK's tensor-product cubic spline with not-a-knot ends, evaluated
  clamped to the old range).

:func:`resize_bias_table` reproduces this with torch alone: the spline of one axis
is a linear map of the values, computed once as a matrix, and the tensor product
applies one matrix per axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["geometric_offsets", "resize_bias_table", "spline_matrix"]


def geometric_offsets(src_side: int, dst_side: int) -> Tensor:
    """Where the offsets of an old table side sit when it is stretched to a new one.

    Args:
        src_side: Old side length ``2 w - 1`` (odd).
        dst_side: New side length ``2 w' - 1`` (odd).

    Returns:
        Float64 (src_side,) increasing positions, symmetric around 0, the outermost
        close to ``+-(dst_side // 2)``.
    """
    half_src, half_dst = src_side // 2, dst_side // 2
    if half_src == 0:
        return torch.zeros(1, dtype=torch.float64)

    def geometric_sum(ratio: float) -> float:
        return (1.0 - ratio**half_src) / (1.0 - ratio)

    # The same bisection (interval, stopping rule, last midpoint kept) as the
    # official code, so the positions agree to the last bit that matters.
    left, right = 1.01, 1.5
    ratio = left
    while right - left > 1e-6:
        ratio = (left + right) / 2.0
        if geometric_sum(ratio) > half_dst:
            right = ratio
        else:
            left = ratio
    steps = ratio ** torch.arange(half_src, dtype=torch.float64)  # 1, q, q^2, ...
    half = torch.cumsum(steps, dim=0)  # 1, 1 + q, 1 + q + q^2, ...
    return torch.cat([-half.flip(0), torch.zeros(1, dtype=torch.float64), half])


def _second_derivative_map(knots: Tensor) -> Tensor:
    """The (n, n) matrix that maps knot values to the spline's second derivatives.

    Not-a-knot ends (the third derivative is continuous at the second and the
    next-to-last knot), the interpolating spline FITPACK builds with ``s=0``; three
    knots give the parabola through them, two a straight line.
    """
    n = knots.numel()
    h = knots[1:] - knots[:-1]  # (n - 1,) interval widths
    lhs = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, n, dtype=torch.float64)
    if n < 3:
        return rhs  # a line: no curvature
    for i in range(1, n - 1):
        # Continuity of the first derivative at knot i.
        lhs[i, i - 1], lhs[i, i], lhs[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        rhs[i, i - 1], rhs[i, i + 1] = 6 / h[i - 1], 6 / h[i]
        rhs[i, i] = -6 / h[i - 1] - 6 / h[i]
    if n == 3:
        # One polynomial over both intervals: equal second derivatives everywhere.
        lhs[0, :2] = torch.tensor([1.0, -1.0], dtype=torch.float64)
        lhs[2, 1:] = torch.tensor([1.0, -1.0], dtype=torch.float64)
    else:
        lhs[0, :3] = torch.stack([h[1], -(h[0] + h[1]), h[0]])
        lhs[n - 1, n - 3 :] = torch.stack([h[n - 2], -(h[n - 3] + h[n - 2]), h[n - 3]])
    curvature: Tensor = torch.linalg.solve(lhs, rhs)
    return curvature


def spline_matrix(knots: Tensor, points: Tensor) -> Tensor:
    """The linear map from values at ``knots`` to their cubic spline at ``points``.

    Args:
        knots: (n,) strictly increasing positions.
        points: (m,) where to evaluate; clamped to ``[knots[0], knots[-1]]``.

    Returns:
        Float64 (m, n) matrix ``A`` with ``spline(points) = A @ values``.
    """
    knots = knots.to(torch.float64)
    points = points.to(torch.float64).clamp(knots[0], knots[-1])
    n = knots.numel()
    if n == 1:
        return torch.ones(points.numel(), 1, dtype=torch.float64)
    curvature = _second_derivative_map(knots)  # (n, n): values -> M
    # Interval [knots[i], knots[i + 1]] of every point.
    index = (torch.searchsorted(knots, points, right=True) - 1).clamp(0, n - 2)
    width = knots[index + 1] - knots[index]
    after = (points - knots[index]) / width  # 0 at the left knot, 1 at the right
    before = 1.0 - after
    matrix = torch.zeros(points.numel(), n, dtype=torch.float64)
    rows = torch.arange(points.numel())
    # The spline on one interval: linear part plus the curvature correction
    # (before^3 - before) * h^2 / 6 * M_i + (after^3 - after) * h^2 / 6 * M_{i+1}.
    matrix[rows, index] += before
    matrix[rows, index + 1] += after
    bend = width.square() / 6.0
    matrix += ((before**3 - before) * bend)[:, None] * curvature[index]
    matrix += ((after**3 - after) * bend)[:, None] * curvature[index + 1]
    return matrix


def resize_bias_table(
    table: Tensor,
    src_window: tuple[int, int],
    dst_window: tuple[int, int],
    extra_tokens: int = 0,
) -> Tensor:
    """Resizes a relative position bias table to another window, as SimMIM does.

    Args:
        table: ((2 h - 1) * (2 w - 1) + extra_tokens, heads) with (h, w) =
            ``src_window``: the ``relative_position_bias_table`` of a Swin window
            attention or of a BEiT-style ViT (where the window is the token grid).
        src_window: (h, w) the table was made for.
        dst_window: (h', w') to make it for.
        extra_tokens: Trailing rows that are not offsets (3 for the ViT's class
            token rows), copied unchanged.

    Returns:
        ((2 h' - 1) * (2 w' - 1) + extra_tokens, heads), same dtype and device;
        ``table`` itself when the windows are equal.

    Raises:
        ValueError: If the table does not have the rows ``src_window`` implies.
    """
    src_sides = (2 * src_window[0] - 1, 2 * src_window[1] - 1)
    dst_sides = (2 * dst_window[0] - 1, 2 * dst_window[1] - 1)
    offsets = src_sides[0] * src_sides[1]
    if table.ndim != 2 or table.shape[0] != offsets + extra_tokens:
        raise ValueError(
            f"A bias table for a {src_window} window with {extra_tokens} extra rows "
            f"has {offsets + extra_tokens} rows, got shape {tuple(table.shape)}."
        )
    if src_sides == dst_sides:
        return table
    heads = table.shape[1]
    grid = table[:offsets].to(torch.float64).reshape(*src_sides, heads)  # (Sh, Sw, H)
    axis_maps = []
    for src_side, dst_side in zip(src_sides, dst_sides, strict=True):
        knots = geometric_offsets(src_side, dst_side)
        half = dst_side // 2
        points = torch.arange(-half, half + 1, dtype=torch.float64)
        axis_maps.append(spline_matrix(knots, points))  # (dst_side, src_side)
    # Tensor product: one spline per axis. (Sh, Sw, H) -> (Dh, Dw, H)
    resized = torch.einsum("ai,ijh,bj->abh", axis_maps[0], grid, axis_maps[1])
    resized = resized.reshape(-1, heads).to(table.dtype)  # (Dh * Dw, H)
    return torch.cat([resized.to(table.device), table[offsets:]], dim=0)
