"""Kalman (Rauch–Tung–Striebel) smoother with a constant-velocity, -acceleration or -jerk model.

The signal is modelled as an integrated white noise: the state is (value, slope) for
``model='cv'``, (value, slope, curvature) for ``model='ca'`` or those and the third
derivative for ``model='cj'``, the highest derivative is
driven by white noise of spectral density ``process_noise`` and each sample carries white
noise of variance ``measurement_noise``. Transitions and process noise come from each
step's dt, so irregular x is native. The initial state is diffuse (de Jong's augmented
filter: the filter starts from a fixed unknown state that is estimated by generalised least
squares), which makes the smoother exactly the natural cubic ('cv'), quintic ('ca') or
septic ('cj') smoothing spline with ``lam = measurement_noise / process_noise``.

Only the noise ratio moves the estimate, and the gains depend on x, the ratio and which
samples are observed, never on the values: they are computed once per ratio and shared by
every series, which then only run the linear mean recursion (a numba loop over time per
series, series split over threads). Left as None the noises are chosen per series by
maximum likelihood (the diffuse innovations likelihood, profiled over the measurement noise)
on a grid of ratios refined by a parabola, then adjusted for the derivative order
(``ML_DERIVATIVE_FACTOR``). NaN samples under ``nan_policy='omit'`` skip
the update step.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from . import _gridsearch as gs
from . import _statespace as ss
from ._xp import to_numpy
from .registry import MethodParams, MethodSpec, Output, register

# log10 of the noise-ratio grid (process/measurement, sample units): from a bandwidth of
# about n/2 samples to under one sample; step in decades
GRID_TOP = 4.0
GRID_STEP = 1.0  # coarse step; refined to a quarter of it around each series' best
CHOICE_RESOLUTION = 0.05  # decades; coarse enough that a batch needs few sets of gains
_DIM = {"cv": 2, "ca": 3, "cj": 4}
# The ML noise ratio (process / measurement) fits the signal; its derivatives need a smaller
# ratio (more smoothing). The chosen ratio is divided by ML_DERIVATIVE_FACTOR[model][order]:
# the chosen noise carries it (process_noise / factor, or measurement_noise * factor when
# only that one is chosen). Measured on noisy sin / exp / Black–Scholes (n = 201 and 1,000,
# noise 0.1 %, 1 %, 5 % of the range, 6 series each) as the factor minimising the mean ratio
# of the RMSE to each series' truth-tuned optimum: 'ca' 1.65 -> 1.34 (order 1),
# 2.24 -> 1.50 (order 2); 'cv' 4.95 -> 1.71 (order 1). 'cj': fitted with
# benchmarks/auto_fit.py --offsets (ten signal families, 0.1-10 % noise, 101-401 samples, 6
# series each; held-out draws, pooled RMSE over that of the best smoothing common to a
# case's series, orders 1 and 2): 1.29 (at 10**0.8 and 10**1.1) -> 1.17.
ML_DERIVATIVE_FACTOR = {
    "cv": {1: 10**1.5},
    "ca": {1: 10**0.6, 2: 10**0.85},
    "cj": {1: 10**0.35, 2: 10**0.5},
}


class KalmanParams(MethodParams):
    """Parameters of ``kalman``."""

    model: Literal["cv", "ca", "cj"] = Field(
        "ca",
        description=(
            "'cv' constant velocity (state: value, slope; orders up to 1), "
            "'ca' constant acceleration (value, slope, curvature; orders up to 2) or "
            "'cj' constant jerk (value and derivatives 1-3; orders up to 2)"
        ),
    )
    process_noise: float | None = Field(
        None,
        gt=0,
        description=(
            "spectral density of the white noise driving the highest state derivative "
            "(y**2 / x**3 for 'cv', y**2 / x**5 for 'ca', y**2 / x**7 for 'cj'); None chooses "
            "it by maximum likelihood"
        ),
    )
    measurement_noise: float | None = Field(
        None,
        gt=0,
        description="variance of the noise on each sample (y**2); None: maximum likelihood",
    )


def _check_order(order: int, params: KalmanParams) -> int:
    d = _DIM[params.model]
    if order > d - 1:
        raise ValueError(
            f"method 'kalman': order {order} needs model='ca' (model={params.model!r} gives "
            f"orders up to {d - 1})"
        )
    return d


def _usable(nan: np.ndarray, params: KalmanParams, d: int) -> np.ndarray:
    """Rows that get an estimate: NaN-free rows, and under 'omit' rows with enough samples."""
    return ss.usable_rows(nan, params.nan_policy == "omit", d)


def _grid(n: int, d: int) -> np.ndarray:
    """log10 ratios from a bandwidth of about n/4 samples (ratio ~ bw**(-2d)) to GRID_TOP."""
    lo = -2.0 * d * np.log10(max(n / 4.0, 2.0))
    lo = np.floor(lo / GRID_STEP) * GRID_STEP
    return np.arange(lo, GRID_TOP + 1e-9, GRID_STEP)


def _choose(y: Any, x: np.ndarray, order: int, params: KalmanParams, xp: Any) -> dict[str, Any]:
    """Per-series process and measurement noise (shape y.shape[:-1]), given or by ML."""
    ss.require_numpy("kalman", xp)
    d = _check_order(order, params)
    shape = y.shape[:-1]
    u, step = ss.scaled(x)
    unit = step ** (2 * d - 1)  # process noise in sample units = process_noise * unit
    q_given, r_given = params.process_noise, params.measurement_noise
    if q_given is not None and r_given is not None:
        return {
            "process_noise": np.full(shape, float(q_given)),
            "measurement_noise": np.full(shape, float(r_given)),
        }
    y2, nan = ss.rows_of(to_numpy(y))
    rows = y2.shape[0]
    q_out = np.full(rows, np.nan)
    r_out = np.full(rows, np.nan)
    lg = _grid(u.shape[0], d)
    factor = ML_DERIVATIVE_FACTOR[params.model][order]
    idx = np.flatnonzero(_usable(nan, params, d))
    for group in ss.group_rows(np.zeros(idx.size), nan[idx]):
        r_idx = idx[group]
        obs = ~nan[r_idx[0]]
        ys = np.where(obs, y2[r_idx], 0.0)
        n_eff = int(obs.sum())
        dof = n_eff - d

        def loglik(lrho: float, sel: np.ndarray, obs=obs, ys=ys, dof=dof) -> tuple:
            # one noise given: the other follows from the ratio, nothing to profile
            rho = 10.0**lrho
            gn = ss.gains(u, obs, d, rho, smoother=False)
            rss = np.maximum(ss.innovation_rss(gn, ys, sel), 1e-300)
            r = r_given if r_given is not None else q_given * unit / rho
            return -0.5 * (dof * np.log(r) + rss / r + gn.log_det_innovations()), rss

        if q_given is None and r_given is None:
            best, rss_best = ss.ml_search(u, obs, d, ys, lg, CHOICE_RESOLUTION, lambda v: 10.0**v)
        else:
            best, rss_best = gs.grid_search(lg, r_idx.size, loglik, CHOICE_RESOLUTION)
        rho = 10.0**best / factor
        if r_given is not None:
            r = np.full(r_idx.size, float(r_given))
        elif q_given is not None:
            r = q_given * unit / rho
        else:
            r = rss_best / dof
        q = q_given if q_given is not None else rho * r / unit
        q_out[r_idx] = q
        r_out[r_idx] = r
    return {"process_noise": q_out.reshape(shape), "measurement_noise": r_out.reshape(shape)}


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: KalmanParams,
    chosen: dict[str, Any],
    xp: Any,
    smoothed: bool,
) -> Output:
    ss.require_numpy("kalman", xp)
    d = _check_order(order, params)
    shape = y.shape
    y2, nan = ss.rows_of(to_numpy(y))
    rows, n = y2.shape
    u, step = ss.scaled(x)
    unit = step ** (2 * d - 1)
    if "process_noise" not in chosen:
        chosen = _choose(y, x, order, params, xp)
    q = np.broadcast_to(np.asarray(chosen["process_noise"], dtype=np.float64), shape[:-1])
    r = np.broadcast_to(np.asarray(chosen["measurement_noise"], dtype=np.float64), shape[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (q.reshape(rows) * unit) / r.reshape(rows)
    return ss.smooth_by_ratio(
        u, y2, nan, _usable(nan, params, d), rho, d, order, step**-order, smoothed, y
    )


def _min_samples(order: int, params: KalmanParams) -> int:
    return _DIM[params.model] + 2


SPEC = register(
    MethodSpec(
        name="kalman",
        summary="RTS smoother, constant velocity, acceleration or jerk model, ML noise variances.",
        params=KalmanParams,
        max_order=2,
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
