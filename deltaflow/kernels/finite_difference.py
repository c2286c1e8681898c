"""Finite differences of any order 1–4 and accuracy order 2–8, uniform or irregular x.

Interior points use a centred stencil; the points nearer an end than its half width use a
one-sided stencil of ``order + accuracy`` samples from that end, which keeps the accuracy
order there too (no padding, no lower-order fallback). Weights come from Fornberg's
recursion, computed once per call from x and shared by every series.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ._stencil import (
    Stencil,
    apply_stencil,
    banded_stencil,
    cached_stencil,
    fornberg_weights,
    grid_key,
    local_window_starts,
)
from .api import uniform_step
from .registry import MethodParams, MethodSpec, Output, kernel_checks_nan, register


class FiniteDifferenceParams(MethodParams):
    """Parameters of ``finite_difference``."""

    accuracy: Literal[2, 4, 6, 8] = Field(
        2, description="accuracy order of the stencils (error ~ spacing**accuracy)"
    )


def _widths(order: int, accuracy: int) -> tuple[int, int, int]:
    """(uniform centred width, irregular centred width, one-sided edge width) in samples."""
    w_uniform = 2 * ((order + 1) // 2) - 1 + accuracy
    w_irregular = order + accuracy
    if w_irregular % 2 == 0:
        w_irregular += 1
    w_edge = order + accuracy
    return w_uniform, w_irregular, w_edge


def build_stencil(x: np.ndarray, order: int, accuracy: int) -> Stencil:
    """The finite-difference stencil for increasing x of n samples (kept per grid)."""
    key = ("finite_difference", order, accuracy, *grid_key(x))
    return cached_stencil(key, lambda: _build_stencil(x, order, accuracy))


def _build_stencil(x: np.ndarray, order: int, accuracy: int) -> Stencil:
    n = x.shape[0]
    w_uni, w_irr, w_edge = _widths(order, accuracy)
    h_step = uniform_step(x)
    if h_step is not None:
        h = (w_uni - 1) // 2
        offsets = np.arange(-h, h + 1, dtype=np.float64)
        center = fornberg_weights(np.zeros(1), offsets[None, :], order)[0] / h_step**order
        edge = np.arange(w_edge, dtype=np.float64)
        left = fornberg_weights(np.arange(h, dtype=np.float64), np.tile(edge, (h, 1)), order)
        right_at = np.arange(w_edge - h, w_edge, dtype=np.float64)
        right = fornberg_weights(right_at, np.tile(edge, (h, 1)), order)
        scale = h_step**order
        return Stencil(n=n, center=center, left=left / scale, right=right / scale)
    h = (w_irr - 1) // 2
    idx = np.arange(n)
    inner = (idx >= h) & (idx < n - h)
    groups = []
    for points, begins, width in (
        (idx[inner], local_window_starts(n, h, w_irr)[inner], w_irr),
        (idx[:h], np.zeros(h, dtype=np.int64), w_edge),
        (idx[n - h :], np.full(h, n - w_edge, dtype=np.int64), w_edge),
    ):
        nodes = x[begins[:, None] + np.arange(width)]
        groups.append((points, begins, fornberg_weights(x[points], nodes, order)))
    return banded_stencil(n, groups)


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: FiniteDifferenceParams,
    chosen: dict[str, Any],
    xp: Any,
    smoothed: bool,
) -> Output:
    st = build_stencil(x, order, params.accuracy)
    return Output(apply_stencil(st, y, xp, check_nan=kernel_checks_nan(params)))


def _footprint(order: int, params: FiniteDifferenceParams) -> int:
    w_uni, w_irr, _ = _widths(order, params.accuracy)
    return (max(w_uni, w_irr) - 1) // 2


def _min_samples(order: int, params: FiniteDifferenceParams) -> int:
    return max(_widths(order, params.accuracy))


SPEC = register(
    MethodSpec(
        name="finite_difference",
        summary="Finite differences (Fornberg weights), one-sided at the ends, any spacing.",
        params=FiniteDifferenceParams,
        max_order=4,
        apply=_apply,
        footprint=_footprint,
        min_samples=_min_samples,
        irregular=True,
        nan_omit=False,
        gpu=True,
        checks_nan=True,
    )
)
