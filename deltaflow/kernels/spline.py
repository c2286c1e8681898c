"""Penalised smoothing splines (cubic, quintic or septic), with per-series GCV smoothing.

The estimate minimises ``sum_i (y_i - f(x_i))**2 + lam * integral f^(m)(x)**2 dx`` over all
functions: the natural spline of degree ``2m - 1`` (cubic for m = 2, quintic for m = 3,
septic for m = 4) with a knot at every sample. It is computed through its exact state-space
form (the posterior mean of an (m-1)-fold integrated Wiener process with a diffuse start,
see ``_statespace``): an O(n) recursion whose gains depend on x and ``lam`` only, computed
once and shared by every series of the batch. This replaces the banded normal equations of a
B-spline basis, whose rounding error grows like ``lam`` times the condition of the penalty
(relative errors of 1e-4 and worse at the smoothing that noisy series of 1,000 samples need,
and on irregular x with close samples); the recursion keeps ~1e-12 at any smoothing.

``smoothing`` is ``lam`` in sample units, ``lam = smoothing * mean_spacing**(2m - 1)``, so
the same value smooths the same whatever the unit of x; ``smoothing**(1/(2m))`` is roughly
the kernel's half width in samples. Left as None it is chosen per series (``criterion``),
each value of a grid one set of gains for the whole batch (``_gridsearch.grid_search``): by
default by maximum likelihood (the diffuse innovations likelihood of the spline's
state-space form profiled over the noise variance, ``kalman``'s criterion) times
``ML_FACTOR``, or by generalised cross-validation (GCV, with the hat matrix's trace from the
smoothed variances; the search skips the coarse values that a bound rules out and climbs
through the fine ones; the residual sums run 32 series at a time, ``fit_rss``) times
``DERIVATIVE_FACTOR``; both factors because the smoothing that fits the signal best is too
small for its derivatives. On the peers' noisy cases (benchmarks/peers.py, 1-10 % noise, 5
draws each, over the best oracle-tuned peer, geometric means interior / whole; quintic),
GCV: 1.99 / 2.36 (order 1), 3.40 / 4.54 (order 2), worst 31x (it undersmooths some
Black-Scholes draws); ML: 1.37 / 1.80, 1.85 / 2.94, worst 15x: the default since
2026-11-27. Orders below m are state components; higher orders (up to 3) come
from the spline's polynomial on each interval, exact for the spline. The septic spline
leaves cubics unpenalised: smooth signals whose higher derivatives do not vanish (exp,
Black-Scholes prices, damped oscillations) lose less to its smoothing bias; ``auto`` uses
it (measured there).

The natural spline's derivatives m ... 2m-2 vanish at the ends, which biases its
derivatives there (a boundary bias that grows with the smoothing). ``ends='corrected'``
adds Speckman's partial-spline correction, one coefficient per half of the range fitted to
the residuals and shrunk by its t statistic (``_statespace.end_correction``, ``END_SHRINK``):
it recovers a polynomial of degree m exactly, ends included. ``auto`` uses it (measured there); the
default stays the penalised natural spline, the criterion above.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from . import _gridsearch as gs
from . import _statespace as ss
from ._xp import to_numpy
from .registry import MethodParams, MethodSpec, Output, register

# log10 of the automatic smoothing grid (sample units): from about 0.3 samples of kernel
# half width to about n/4 samples; step in decades
GRID_BOTTOM = -2.0
GRID_STEP = 1.0  # coarse step; refined to a quarter of it around each series' best
CHOICE_RESOLUTION = 0.05  # decades; coarse enough that a batch needs few sets of gains
# the GCV choice is multiplied by DERIVATIVE_FACTOR[degree][order]: GCV picks the smoothing
# that predicts the signal, derivatives need more. Measured on noisy sin / exp / Black–Scholes
# / cubic (n = 101 ... 3,000, noise 0.1 %, 1 %, 5 % of the range, 6 series each): the truth-
# tuned optimum sits a median 0.6 decades above GCV for orders 1 and 2 (from -0.4 at n = 101
# with 5 % noise to +1.4 at low noise and large n), more for order 3. On the mean ratio of the
# RMSE to each series' own optimum: quintic 1.94 -> 1.67 (order 1), 3.34 -> ~2.3 (order 2),
# 5.89 -> ~2.0 (order 3); cubic 1.95 -> 1.40 (order 1), 4.03 -> 1.48 (order 2); cubic order 3
# was not measured. ``kalman``'s adjusted maximum likelihood does better (1.34, 1.50).
# Septic: fitted with benchmarks/auto_fit.py --offsets (ten signal families, 0.1-10 % noise,
# 101-401 samples, 6 series each; on held-out draws, the pooled RMSE over that of the best
# smoothing common to a case's series): orders 1 and 2 1.57 -> 1.50 (from 10**0.7 and
# 10**0.9), order 3 2.01 -> 1.72 (from 10**1.5). Maximum likelihood does better there too
# (kalman model 'cj': 1.17).
DERIVATIVE_FACTOR: dict[int, dict[int, float]] = {
    3: {1: 10**0.6, 2: 10**1.0, 3: 10**1.0},
    5: {1: 10**0.55, 2: 10**0.7, 3: 10**1.2},
    7: {1: 10**0.39, 2: 10**0.64, 3: 10**0.83},
}
# the maximum-likelihood choice (``criterion='ml'``, the default) is multiplied by
# ML_FACTOR[degree][order]; orders 1-2 of degrees 5 and 7 and order 1 of degree 3 are
# ``kalman``'s ML_DERIVATIVE_FACTOR (the same smoother and criterion); the others fitted on
# benchmarks/auto_fit.py's ten families (0.1-10 % noise, 101-401 samples, 4 series each; the
# pooled RMSE over the best common smoothing's, held-out draws, from a factor of 1): cubic
# order 2 4.96 -> 1.49, order 3 21.1 -> 1.54; quintic order 3 1.97 -> 1.24; septic order 3
# 1.44 -> 1.23 (quintic order 1, as a check: +0.55 decades fitted against kalman's 0.6)
ML_FACTOR: dict[int, dict[int, float]] = {
    3: {1: 10**1.5, 2: 10**1.45, 3: 10**2.25},
    5: {1: 10**0.6, 2: 10**0.85, 3: 10**1.05},
    7: {1: 10**0.35, 2: 10**0.5, 3: 10**0.65},
}


class SplineParams(MethodParams):
    """Parameters of ``spline``."""

    smoothing: float | None = Field(
        None,
        gt=0,
        description=(
            "penalty weight in sample units (lam = smoothing * mean_spacing**(2m-1)); "
            "None chooses it per series by ``criterion``, adjusted for the derivative order"
        ),
    )
    criterion: Literal["ml", "gcv"] = Field(
        "ml",
        description=(
            "how smoothing=None is chosen: 'ml' maximum likelihood of the spline's state-space "
            "form (as kalman), 'gcv' generalised cross-validation"
        ),
    )
    degree: Literal[3, 5, 7] = Field(
        5,
        description="spline degree: 3 penalises f'' (cubic), 5 penalises f''' (quintic), "
        "7 penalises f'''' (septic)",
    )
    ends: Literal["natural", "corrected"] = Field(
        "natural",
        description=(
            "'natural': the penalised spline as it is (its high derivatives vanish at the "
            "ends, which biases derivatives there); 'corrected': plus Speckman's boundary "
            "correction, one fitted coefficient per half of the range"
        ),
    )


def _dim(params: SplineParams) -> int:
    """State dimension m: the penalised derivative."""
    return (params.degree + 1) // 2


def _usable(nan: np.ndarray, params: SplineParams, m: int) -> np.ndarray:
    """Rows that get an estimate: NaN-free rows, and under 'omit' rows with enough samples."""
    return ss.usable_rows(nan, params.nan_policy == "omit", m)


def _grid(n: int, m: int) -> np.ndarray:
    """log10 smoothing values from GRID_BOTTOM to a kernel half width of about n/4 samples."""
    top = 2.0 * m * np.log10(max(n / 4.0, 2.0))
    return np.arange(GRID_BOTTOM, np.ceil(top / GRID_STEP) * GRID_STEP + 1e-9, GRID_STEP)


def _choose(y: Any, x: np.ndarray, order: int, params: SplineParams, xp: Any) -> dict[str, Any]:
    """Per-series smoothing (shape y.shape[:-1]): the given value, or the ML or GCV choice
    times the derivative order's factor."""
    ss.require_numpy("spline", xp)
    shape = y.shape[:-1]
    if params.smoothing is not None:
        return {"smoothing": np.full(shape, float(params.smoothing))}
    m = _dim(params)
    y2, nan = ss.rows_of(to_numpy(y))
    u, _ = ss.scaled(x)
    best = np.full(y2.shape[0], np.nan)
    lg = _grid(u.shape[0], m)
    idx = np.flatnonzero(_usable(nan, params, m))
    for group in ss.group_rows(np.zeros(idx.size), nan[idx]):
        rows = idx[group]
        obs = ~nan[rows[0]]
        ys = y2 if rows.size == y2.shape[0] else y2[rows]  # group rows are sorted
        if not obs.all():
            ys = np.where(obs, ys, 0.0)
        n_eff = float(obs.sum())
        if params.criterion == "ml":
            best[rows] = 10.0 ** _ml_choice(u, obs, m, ys, lg)
            continue

        cache: dict[float, tuple[ss.Gains, float]] = {}

        def gains(ls: float, obs=obs, n_eff=n_eff, cache=cache) -> tuple[ss.Gains, float]:
            if ls not in cache:  # rows reach a value in different rounds of the search
                gn = ss.gains(u, obs, m, 10.0**-ls, variance=True)
                cache[ls] = gn, max(n_eff - gn.hat_trace(), 1e-12)
            return cache[ls]

        def gcv(ls: float, sel: np.ndarray, ys=ys, n_eff=n_eff) -> tuple:
            gn, dof = gains(ls)
            rss = ss.fit_rss(gn, ys, sel)  # the rows in the order the search asks
            return -np.log(np.maximum(n_eff * rss / dof**2, 1e-300)), rss

        def bound(i: int, low: np.ndarray, n_eff=n_eff) -> np.ndarray:
            # the residual sum of squares grows with the smoothing (the eigenvalues of
            # I - S do), so the rss reached below bounds it from below here
            dof = gains(float(lg[i]))[1]
            return -np.log(np.maximum(n_eff * low / dof**2, 1e-300))

        chosen, _ = gs.grid_search(lg, rows.size, gcv, CHOICE_RESOLUTION, climb=True, bound=bound)
        best[rows] = 10.0**chosen
    factors = ML_FACTOR if params.criterion == "ml" else DERIVATIVE_FACTOR
    return {"smoothing": (best * factors[params.degree][order]).reshape(shape)}


def _ml_choice(
    u: np.ndarray, obs: np.ndarray, m: int, ys: np.ndarray, lg: np.ndarray
) -> np.ndarray:
    """log10 smoothing (rows,) maximising the diffuse innovations likelihood of rows ys (with
    zeros where not ``obs``), profiled over the noise variance: ``kalman``'s criterion."""
    chosen, _ = ss.ml_search(u, obs, m, ys, lg, CHOICE_RESOLUTION, lambda ls: 10.0**-ls)
    return chosen


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: SplineParams,
    chosen: dict[str, Any],
    xp: Any,
    smoothed: bool,
) -> Output:
    ss.require_numpy("spline", xp)
    shape = y.shape
    m = _dim(params)
    y2, nan = ss.rows_of(to_numpy(y))
    rows, n = y2.shape
    u, step = ss.scaled(x)
    if "smoothing" not in chosen:
        chosen = _choose(y, x, order, params, xp)
    lam = np.broadcast_to(np.asarray(chosen["smoothing"], dtype=np.float64), shape[:-1])
    with np.errstate(divide="ignore"):
        ratio = 1.0 / lam.reshape(rows)
    return ss.smooth_by_ratio(
        u,
        y2,
        nan,
        _usable(nan, params, m),
        ratio,
        m,
        order,
        step**-order,
        smoothed,
        y,
        correct_ends=params.ends == "corrected",
    )


def _min_samples(order: int, params: SplineParams) -> int:
    return max(order + 1, _dim(params) + 2)


SPEC = register(
    MethodSpec(
        name="spline",
        summary="Smoothing spline (cubic, quintic or septic) by a stable O(n) recursion, GCV "
        "smoothing.",
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
