"""Penalised smoothing splines: one banded factorization shared by every series of a batch.

The estimate minimises ``sum_i w_i (y_i - f(x_i))**2 + lam * integral f^(m)(x)**2 dx``:
a natural spline of degree ``2m - 1`` (cubic for m = 2, quintic for m = 3) with a knot at
every sample, written in a B-spline basis so that the normal equations are banded
(bandwidth = degree) and solved by a banded Cholesky factorization. Everything that
depends on x alone (basis values, the penalty, the factorization for one smoothing value)
is built once per call and shared by all series; the series enter only as right-hand sides.

``smoothing`` is ``lam`` in sample units, ``lam = smoothing * mean_spacing**(2m - 1)``, so
the same value means the same amount of smoothing whatever the unit of x. Left as None it
is chosen per series by generalised cross-validation (GCV) on a grid of values, each a
single factorization for the whole batch (the trace of the hat matrix comes from the band
of the inverse, by selected inversion), then raised by a factor for derivatives, because
the smoothing that predicts the signal best is too small for its derivatives.

Numerical limits: the B-spline coefficients of a very smooth fit cancel in the penalty,
so the relative rounding error grows like ``smoothing * 1e-16`` (quintic) and somewhat
less (cubic); each series' low-order polynomial trend (which the smoother keeps exactly)
is removed before the solve and added back after it, and the automatic grid stops where
that error would reach ~1e-4 (``GRID_LOG10``); for long, densely sampled, low-noise series
this cap under-smooths, and ``kalman`` (the same estimator, computed by a stable recursion)
is the better choice there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy.linalg import cho_solve_banded, cholesky_banded

from . import _banded as bd
from ._xp import asarray_like, to_numpy
from .registry import MethodParams, MethodSpec, Output, register

# log10 of the automatic smoothing grid (sample units) per degree, and its step; the top is
# where rounding (relative error ~ smoothing * 1e-16 * n) stays below ~1e-4
GRID_LOG10 = {3: (-2.0, 11.0), 5: (-2.0, 9.5)}
GRID_STEP = 0.5
# chosen values are rounded to this many decades, so that a series gets the same value
# alone or in any batch (the refined minimum is otherwise only reproducible to rounding)
CHOICE_RESOLUTION = 0.01
# the GCV choice is multiplied by DERIVATIVE_FACTOR[degree][order] (measured, see README)
DERIVATIVE_FACTOR: dict[int, dict[int, float]] = {
    3: {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0},
    5: {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0},
}


class SplineParams(MethodParams):
    """Parameters of ``spline``."""

    smoothing: float | None = Field(
        None,
        gt=0,
        description=(
            "penalty weight in sample units (lam = smoothing * mean_spacing**(2m-1)); "
            "None chooses it per series by GCV, adjusted for the derivative order"
        ),
    )
    degree: Literal[3, 5] = Field(
        5,
        description="spline degree: 3 penalises f'' (cubic), 5 penalises f''' (quintic)",
    )


@dataclass(frozen=True)
class _Basis:
    """Everything about x that every series shares: scaled x, basis values, the penalty."""

    u: np.ndarray  # samples in units of the mean spacing, starting at 0
    step: float  # mean spacing in x units
    k: int  # degree
    m: int  # penalised derivative
    vals: np.ndarray  # (nder+1, n, k+1) basis derivatives at the samples (u units)
    penalty: np.ndarray  # (k+1, n+k-1) upper banded

    @property
    def n(self) -> int:
        return self.u.shape[0]


def _basis(x: np.ndarray, degree: int, nder: int) -> _Basis:
    n = x.shape[0]
    step = (x[-1] - x[0]) / (n - 1)
    u = (x - x[0]) / step
    m = (degree + 1) // 2
    vals = bd.basis_at_samples(u, degree, max(nder, 0))
    gx, gw = np.polynomial.legendre.leggauss(m)
    pen = bd.penalty_banded(u, degree, m, gx, gw)
    return _Basis(u=u, step=float(step), k=degree, m=m, vals=vals, penalty=pen)


def _trend_design(b: _Basis) -> np.ndarray:
    """Polynomials of degree < m on [-1, 1] at the samples (n, m): the penalty's null space."""
    t = 2.0 * b.u / b.u[-1] - 1.0
    return np.stack([t**p for p in range(b.m)], axis=1)


def _detrend(b: _Basis, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares polynomial trend of degree m-1 per row: (residual, coefficients).

    The smoother reproduces such polynomials exactly, so smoothing the residual and adding
    the trend back gives the same estimate with far smaller coefficients (less rounding).
    """
    v = _trend_design(b)
    gram = (v * w[:, None]).T @ v
    yw = np.where(w > 0, y, 0.0) * w
    coef = np.linalg.solve(gram, (yw @ v).T).T  # (rows, m)
    resid = y - coef @ v.T
    return resid, coef


def _trend_derivative(b: _Basis, coef: np.ndarray, order: int) -> np.ndarray:
    """The order-th derivative (u units) of the trend polynomials, (rows, n)."""
    t = 2.0 * b.u / b.u[-1] - 1.0
    dt_du = 2.0 / b.u[-1]
    out = np.zeros((coef.shape[0], b.n))
    for p in range(order, b.m):
        fall = float(np.prod(np.arange(p - order + 1, p + 1)))
        out += np.outer(coef[:, p], fall * t ** (p - order))
    return out * dt_du**order


class _Solver:
    """One factorization of B^T W B + lam P for a weight pattern; solves for many series."""

    def __init__(self, b: _Basis, gram: np.ndarray, lam: float):
        self.ab = gram + lam * b.penalty
        self.factor = cholesky_banded(self.ab, lower=False, check_finite=False)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Coefficients (rows, n+k-1) for right-hand sides rhs (rows, n+k-1)."""
        c = cho_solve_banded((self.factor, False), rhs.T, check_finite=False)
        return np.ascontiguousarray(c.T)

    def trace(self, gram: np.ndarray) -> float:
        """Trace of the hat matrix, tr((B^T W B + lam P)^-1 B^T W B)."""
        return bd.trace_product(bd.selected_inverse(self.factor), gram)


def _row_groups(keys: np.ndarray) -> list[np.ndarray]:
    """Indices of rows sharing a key (rows of a 2-D key array), in first-seen order."""
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def _prepare(y: Any, params: SplineParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host float64 rows (rows, n), the NaN mask and the rows that are all-usable or omitted."""
    y2 = np.asarray(to_numpy(y), dtype=np.float64).reshape(-1, y.shape[-1])
    nan = np.isnan(y2)
    return y2, nan, nan.any(axis=1)


def _usable(nan: np.ndarray, has_nan: np.ndarray, params: SplineParams, m: int) -> np.ndarray:
    """Rows that get an estimate: NaN-free rows, and under 'omit' rows with enough samples."""
    if params.nan_policy == "omit":
        return (~nan).sum(axis=1) >= m + 1
    return ~has_nan


def _choose(y: Any, x: np.ndarray, order: int, params: SplineParams, xp: Any) -> dict[str, Any]:
    """Per-series smoothing (shape y.shape[:-1]): the given value, or GCV times a factor."""
    shape = y.shape[:-1]
    if params.smoothing is not None:
        return {"smoothing": np.full(shape, float(params.smoothing))}
    y2, nan, has_nan = _prepare(y, params)
    b = _basis(x, params.degree, 0)
    usable = _usable(nan, has_nan, params, b.m)
    best = np.full(y2.shape[0], np.nan)
    lo, hi = GRID_LOG10[params.degree]
    grid = 10.0 ** np.arange(lo, hi + 1e-9, GRID_STEP)
    rows_all = np.flatnonzero(usable)
    if rows_all.size:
        masks = nan[rows_all]
        for group in _row_groups(masks):
            rows = rows_all[group]
            w = (~nan[rows[0]]).astype(np.float64)
            best[rows] = _gcv_choice(b, y2[rows], w, grid)
    factor = DERIVATIVE_FACTOR[params.degree][order]
    return {"smoothing": (best * factor).reshape(shape)}


def _gcv_choice(b: _Basis, y: np.ndarray, w: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The GCV-minimising smoothing for each row of y (rows, n) sharing weights w (n,)."""
    resid, _ = _detrend(b, np.where(w > 0, y, 0.0), w)
    vals0 = b.vals[0]
    gram = bd.gram_banded(vals0, w)
    rhs = np.empty((y.shape[0], b.n + b.k - 1))
    bd.basis_transpose_apply(vals0, w, resid, rhs)
    n_eff = float(w.sum())
    score = np.empty((grid.shape[0], y.shape[0]))
    fit = np.empty_like(resid)
    for g, lam in enumerate(grid):
        solver = _Solver(b, gram, lam)
        c = solver.solve(rhs)
        bd.basis_apply(vals0, c, fit)
        rss = ((resid - fit) ** 2 * w).sum(axis=1)
        dof = n_eff - solver.trace(gram)
        score[g] = n_eff * rss / max(dof, 1e-12) ** 2
    return _refine_log_min(np.log10(grid), np.log(np.maximum(score, 1e-300)))


def _refine_log_min(lg: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per column of score (grid, rows): the minimiser, refined by a parabola through 3 points."""
    idx = np.argmin(score, axis=0)
    cols = np.arange(score.shape[1])
    inner = np.clip(idx, 1, lg.shape[0] - 2)
    s0, s1, s2 = score[inner - 1, cols], score[inner, cols], score[inner + 1, cols]
    curv = s0 - 2.0 * s1 + s2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curv > 0, 0.5 * (s0 - s2) / curv, 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    step = lg[1] - lg[0]
    at = np.where(idx == inner, lg[inner] + shift * step, lg[idx])
    return 10.0 ** (np.round(at / CHOICE_RESOLUTION) * CHOICE_RESOLUTION)


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: SplineParams,
    chosen: dict[str, Any],
    xp: Any,
    smoothed: bool,
) -> Output:
    shape = y.shape
    dtype = y.dtype
    y2, nan, has_nan = _prepare(y, params)
    rows = y2.shape[0]
    b = _basis(x, params.degree, order)
    if "smoothing" in chosen:
        lam = np.broadcast_to(np.asarray(chosen["smoothing"], dtype=np.float64), shape[:-1])
        lam = lam.reshape(rows)
    elif params.smoothing is not None:
        lam = np.full(rows, float(params.smoothing))
    else:
        lam = np.asarray(_choose(y, x, order, params, xp)["smoothing"]).reshape(rows)
    usable = _usable(nan, has_nan, params, b.m) & np.isfinite(lam)
    deriv = np.full((rows, b.n), np.nan)
    fitted = np.full((rows, b.n), np.nan) if smoothed else None
    idx = np.flatnonzero(usable)
    if idx.size:
        keys = np.concatenate([lam[idx, None], nan[idx]], axis=1)
        for group in _row_groups(keys):
            r = idx[group]
            w = (~nan[r[0]]).astype(np.float64)
            d, f = _smooth_rows(b, y2[r], w, float(lam[r[0]]), order, smoothed)
            deriv[r] = d
            if smoothed:
                fitted[r] = f
    out = deriv.reshape(shape).astype(dtype, copy=False)
    sm = fitted.reshape(shape).astype(dtype, copy=False) if smoothed else None
    return Output(asarray_like(out, xp), None if sm is None else asarray_like(sm, xp))


def _smooth_rows(
    b: _Basis, y: np.ndarray, w: np.ndarray, lam: float, order: int, smoothed: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Derivative of ``order`` (x units) and optionally the fit, for rows sharing w and lam."""
    resid, coef = _detrend(b, np.where(w > 0, y, 0.0), w)
    gram = bd.gram_banded(b.vals[0], w)
    rhs = np.empty((y.shape[0], b.n + b.k - 1))
    bd.basis_transpose_apply(b.vals[0], w, resid, rhs)
    c = _Solver(b, gram, lam).solve(rhs)
    d = np.empty_like(resid)
    bd.basis_apply(b.vals[order], c, d)
    d += _trend_derivative(b, coef, order)
    d /= b.step**order
    f = None
    if smoothed:
        f = np.empty_like(resid)
        bd.basis_apply(b.vals[0], c, f)
        f += _trend_derivative(b, coef, 0)
    return d, f


def _min_samples(order: int, params: SplineParams) -> int:
    return max(order + 1, (params.degree + 1) // 2 + 1)


SPEC = register(
    MethodSpec(
        name="spline",
        summary="Penalised smoothing spline (cubic or quintic), banded solve, GCV smoothing.",
        params=SplineParams,
        max_order=3,
        apply=_apply,
        footprint=lambda order, params: None,
        choose=_choose,
        min_samples=_min_samples,
        irregular=True,
        nan_omit=True,
        gpu=False,
        has_smoothed=True,
    )
)
