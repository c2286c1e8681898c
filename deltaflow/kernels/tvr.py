"""Total-variation regularised differentiation (Chartrand's method), batched with numba.

Chartrand (2011) finds the derivative u minimising ``alpha * TV(u) + 1/2 ||A u - (y - y0)||^2``
with A the integration operator. Writing the fit as s = y0 + A u turns this into a problem
on s alone: ``1/2 ||s - y||^2 + alpha * sum_j |g_j(s)|``, where g_j is the difference of the
first derivative of s between neighbouring points (a second difference). The same holds one
level up: ``tv_order`` says which derivative's total variation is penalised (1: Chartrand's,
a piecewise-constant first derivative; 2: a piecewise-linear one; 3: piecewise-linear second
derivative). The problem is solved by lagged diffusivity (iteratively reweighted least
squares): each iteration solves ``(I + D^T W D) s = y`` with W = alpha / |D s| on the
previous fit, a banded symmetric system of half-bandwidth tv_order + 1. A numba kernel does
the iterations for each series on its own thread (no Python loop over series); D is built
once per call from x, with the real spacing, so irregular x works natively. The derivative
is then the finite difference of the fit.

With ``alpha=None`` each series gets its own alpha by two-fold cross-validation (even samples
predict odd ones and back) over a log grid scaled by the noise level, shifted towards more
smoothing because the derivative needs more than the signal (see :func:`choose_alpha`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numba
import numpy as np
from pydantic import Field

from ._noise import noise_sigma
from ._stencil import apply_stencil, fornberg_weights, run_rows
from ._xp import asarray_like, is_numpy, to_numpy
from .finite_difference import build_stencil
from .registry import MethodParams, MethodSpec, Output, register


class TVRParams(MethodParams):
    """Parameters of ``tvr``."""

    alpha: float | None = Field(
        None,
        gt=0.0,
        description="regularisation weight, in units of y: the penalty is alpha times the "
        "sum of absolute differences of the tv_order-th derivative between neighbouring "
        "points, scaled by the local spacing to the power tv_order (None: chosen per series "
        "by cross-validation)",
    )
    tv_order: Literal[1, 2, 3] | None = Field(
        None,
        description="derivative whose total variation is penalised: 1 = Chartrand's TV of "
        "the first derivative (piecewise-constant derivative), 2 or 3 give smoother "
        "derivatives (None: order + 1)",
    )
    iterations: int = Field(
        20, ge=1, le=1000, description="maximum reweighting iterations per solve"
    )
    tol: float = Field(
        1e-6,
        gt=0.0,
        lt=1.0,
        description="stop reweighting when the fit changes by less than tol times its range",
    )


# alpha=None: the cross-validation grid, relative to the noise level
_REL_ALPHA = np.geomspace(1e-1, 1e6, 10)
# the grid's fits need less precision than the final one: fewer reweighting steps
_CV_ITERATIONS = 8
_CV_TOL = 1e-4
# cross-validation picks the alpha that best predicts the signal; the derivative's error is
# least with more smoothing: this factor, by tv_order (measured on sin, exp, Black-Scholes
# and two-tone series at 1-10 % noise against the best alpha in hindsight)
CV_TO_DERIVATIVE = {1: 10**0.67, 2: 10**0.67, 3: 10**1.4}


def tv_order_for(order: int, params: TVRParams) -> int:
    """The penalised derivative's order: the parameter, or order + 1 by default."""
    return params.tv_order if params.tv_order is not None else min(order + 1, 3)


def difference_rows(x: np.ndarray, q: int) -> np.ndarray:
    """Weights (n - q, q + 1): row j is the q-th derivative over points j..j+q, times
    (span / q)**q, so that on uniform x it is the plain q-th difference."""
    n = x.shape[0]
    m = n - q
    idx = np.arange(m)[:, None] + np.arange(q + 1)
    nodes = x[idx]
    mid = 0.5 * (nodes[:, 0] + nodes[:, -1])
    w = fornberg_weights(mid, nodes, q)
    span = (nodes[:, -1] - nodes[:, 0]) / q
    return w * span[:, None] ** q


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _solve(y, s, rows, alpha, iters, tol, band, chol, g, z):  # pragma: no cover - compiled
    """IRLS for one series: s <- argmin 1/2|s - y|^2 + alpha sum |rows . s| (s in/out)."""
    n = y.shape[0]
    m, w = rows.shape
    q = w - 1
    lo = y[0]
    hi = y[0]
    for i in range(n):
        lo = min(lo, y[i])
        hi = max(hi, y[i])
    rng = hi - lo
    if rng == 0.0:
        rng = 1.0
    for _ in range(iters):
        big = 0.0
        for j in range(m):
            acc = 0.0
            for a in range(w):
                acc += rows[j, a] * s[j + a]
            g[j] = abs(acc)
            big = max(big, g[j])
        # floor of |D s| in the weights: keeps the system well conditioned where the fit
        # is flat (the weights span at most 1e6)
        eps = max(1e-6 * big, 1e-10 * alpha, 1e-300)
        for j in range(m):
            g[j] = alpha / max(g[j], eps)
        for i in range(n):
            band[i, 0] = 1.0
            for d in range(1, w):
                band[i, d] = 0.0
        for j in range(m):
            wj = g[j]
            for a in range(w):
                ra = wj * rows[j, a]
                for b in range(a + 1):
                    band[j + a, a - b] += ra * rows[j, b]
        # banded Cholesky: chol[i, d] = L[i, i - d]
        for i in range(n):
            for d in range(min(i, q), 0, -1):
                c = i - d
                acc = band[i, d]
                for k in range(max(i - q, 0), c):
                    acc -= chol[i, i - k] * chol[c, c - k]
                chol[i, d] = acc / chol[c, 0]
            acc = band[i, 0]
            for k in range(max(i - q, 0), i):
                acc -= chol[i, i - k] * chol[i, i - k]
            chol[i, 0] = np.sqrt(acc)
        for i in range(n):
            acc = y[i]
            for k in range(max(i - q, 0), i):
                acc -= chol[i, i - k] * z[k]
            z[i] = acc / chol[i, 0]
        change = 0.0
        for i in range(n - 1, -1, -1):
            acc = z[i]
            for k in range(i + 1, min(i + q + 1, n)):
                acc -= chol[k, k - i] * z[k]
            z[i] = acc / chol[i, 0]
            change = max(change, abs(z[i] - s[i]))
        for i in range(n):
            s[i] = z[i]
        if change <= tol * rng:
            break


# series solved together in lockstep, one per lane (a vectorised loop over the lanes in
# every step): up to this many, and at most _LANE_BYTES of band and factor per thread
_LANES = 32
_LANE_BYTES = 16 << 20


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _solve_lanes(y, s, rows, alpha, iters, tol, band, chol, g, z, acc):  # pragma: no cover
    """:func:`_solve` for L series at once, in lockstep, one per lane: y, s (n, L), alpha
    (L,), band and chol (n, w, L), g (m, L), z (n, L), acc (L,) scratch.

    Every lane does exactly the arithmetic of :func:`_solve` on its series (the same
    operations in the same order, so the same result to the last bit); a lane whose fit
    has converged keeps its fit while the others iterate on. The lanes are the innermost,
    contiguous axis and every innermost loop runs over them, so the compiler vectorises
    the divisions and square roots that one series' chain of dependent steps serialises.
    """
    n = y.shape[0]
    m, w = rows.shape
    q = w - 1
    lanes = y.shape[1]
    rng = np.empty(lanes)
    big = np.empty(lanes)
    eps = np.empty(lanes)
    change = np.empty(lanes)
    ra = np.empty(lanes)
    done = np.zeros(lanes, dtype=np.bool_)
    for k in range(lanes):
        lo = y[0, k]
        hi = y[0, k]
        for i in range(n):
            lo = min(lo, y[i, k])
            hi = max(hi, y[i, k])
        rng[k] = hi - lo
        if rng[k] == 0.0:
            rng[k] = 1.0
    for _ in range(iters):
        for k in range(lanes):
            big[k] = 0.0
        for j in range(m):
            for k in range(lanes):
                acc[k] = 0.0
            for a in range(w):
                rja = rows[j, a]
                for k in range(lanes):
                    acc[k] += rja * s[j + a, k]
            for k in range(lanes):
                g[j, k] = abs(acc[k])
                big[k] = max(big[k], g[j, k])
        for k in range(lanes):
            eps[k] = max(1e-6 * big[k], 1e-10 * alpha[k], 1e-300)
        for j in range(m):
            for k in range(lanes):
                g[j, k] = alpha[k] / max(g[j, k], eps[k])
        for i in range(n):
            for k in range(lanes):
                band[i, 0, k] = 1.0
            for d in range(1, w):
                for k in range(lanes):
                    band[i, d, k] = 0.0
        for j in range(m):
            for a in range(w):
                rja = rows[j, a]
                for k in range(lanes):
                    ra[k] = g[j, k] * rja
                for b in range(a + 1):
                    rjb = rows[j, b]
                    for k in range(lanes):
                        band[j + a, a - b, k] += ra[k] * rjb
        # banded Cholesky: chol[i, d] = L[i, i - d]
        for i in range(n):
            for d in range(min(i, q), 0, -1):
                c = i - d
                for k in range(lanes):
                    acc[k] = band[i, d, k]
                for t in range(max(i - q, 0), c):
                    for k in range(lanes):
                        acc[k] -= chol[i, i - t, k] * chol[c, c - t, k]
                for k in range(lanes):
                    chol[i, d, k] = acc[k] / chol[c, 0, k]
            for k in range(lanes):
                acc[k] = band[i, 0, k]
            for t in range(max(i - q, 0), i):
                for k in range(lanes):
                    acc[k] -= chol[i, i - t, k] * chol[i, i - t, k]
            for k in range(lanes):
                chol[i, 0, k] = np.sqrt(acc[k])
        for i in range(n):
            for k in range(lanes):
                acc[k] = y[i, k]
            for t in range(max(i - q, 0), i):
                for k in range(lanes):
                    acc[k] -= chol[i, i - t, k] * z[t, k]
            for k in range(lanes):
                z[i, k] = acc[k] / chol[i, 0, k]
        for k in range(lanes):
            change[k] = 0.0
        for i in range(n - 1, -1, -1):
            for k in range(lanes):
                acc[k] = z[i, k]
            for t in range(i + 1, min(i + q + 1, n)):
                for k in range(lanes):
                    acc[k] -= chol[t, t - i, k] * z[t, k]
            for k in range(lanes):
                z[i, k] = acc[k] / chol[i, 0, k]
                change[k] = max(change[k], abs(z[i, k] - s[i, k]))
        running = False
        for k in range(lanes):
            if done[k]:
                continue
            for i in range(n):
                s[i, k] = z[i, k]
            if change[k] <= tol * rng[k]:
                done[k] = True
            else:
                running = True
        if not running:
            break


@numba.njit(nogil=True, cache=True)
def _fit_rows(y, rows, alpha, iters, tol, out):  # pragma: no cover - compiled
    """Fit every series of y (r, n) with its own alpha (r,); out (r, n). Groups of up to
    _LANES series go through :func:`_solve_lanes`, a lone series through :func:`_solve`."""
    r, n = y.shape
    m, w = rows.shape
    per = max(1, min(_LANES, _LANE_BYTES // (16 * n * w)))
    for k0 in range(0, r, per):
        lanes = min(per, r - k0)
        if lanes == 1:
            band = np.empty((n, w))
            chol = np.empty((n, w))
            s = np.empty(n)
            yr = np.empty(n)
            for i in range(n):
                yr[i] = y[k0, i]
                s[i] = yr[i]
            _solve(yr, s, rows, alpha[k0], iters, tol, band, chol, np.empty(m), np.empty(n))
            for i in range(n):
                out[k0, i] = s[i]
            continue
        yl = np.empty((n, lanes))
        sl = np.empty((n, lanes))
        for k in range(lanes):
            for i in range(n):
                yl[i, k] = y[k0 + k, i]
                sl[i, k] = y[k0 + k, i]
        _solve_lanes(
            yl,
            sl,
            rows,
            alpha[k0 : k0 + lanes].copy(),
            iters,
            tol,
            np.empty((n, w, lanes)),
            np.empty((n, w, lanes)),
            np.empty((m, lanes)),
            np.empty((n, lanes)),
            np.empty(lanes),
        )
        for k in range(lanes):
            for i in range(n):
                out[k0 + k, i] = sl[i, k]


def _as_rows(y: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    yh = np.ascontiguousarray(to_numpy(y), dtype=np.float64)
    return yh.reshape(-1, yh.shape[-1]), yh.shape


def _check_order(q: int, order: int) -> None:
    if order > q:
        raise ValueError(
            f"method 'tvr': tv_order must be >= order (the fit's derivatives above tv_order "
            f"are zero or spikes), got tv_order={q} for order {order}"
        )


def _choose(y: Any, x: np.ndarray, order: int, params: TVRParams, xp: ModuleType) -> dict[str, Any]:
    shape = y.shape[:-1]
    if params.alpha is not None:
        return {"alpha": xp.full(shape, params.alpha, dtype=xp.float64)}
    q = tv_order_for(order, params)
    y2, full = _as_rows(y)
    alpha = choose_alpha(y2, x, q, params)
    return {"alpha": asarray_like(alpha.reshape(full[:-1]), xp, dtype=xp.float64)}


def choose_alpha(y2: np.ndarray, x: np.ndarray, tv_order: int, params: TVRParams) -> np.ndarray:
    """Per-series alpha (r,) for rows y2 (r, n): two-fold cross-validation, then a shift.

    Each half (even / odd samples) is fitted for every alpha on a log grid relative to the
    noise level and predicts the other half by linear interpolation; the alpha with the
    least prediction error (refined by a parabola in log alpha) is the signal-optimal one,
    and derivatives want more smoothing: it is multiplied by ``CV_TO_DERIVATIVE[tv_order]``.
    """
    r, n = y2.shape
    sigma = noise_sigma(y2, np, x=x)
    scale = np.where(sigma > 0, sigma, np.maximum(np.ptp(y2, axis=-1), 1.0) * 1e-12)
    grid = np.log(_REL_ALPHA)
    cv = np.zeros((grid.shape[0], r))
    halves = []
    for part in (0, 1):
        xs, xo = x[part::2], x[1 - part :: 2]
        inside = (xo > xs[0]) & (xo < xs[-1])
        right = np.searchsorted(xs, xo[inside])
        t = (xo[inside] - xs[right - 1]) / (xs[right] - xs[right - 1])
        halves.append((part, xs, np.flatnonzero(inside), right, t))
    coarse = params.model_copy(
        update={
            "iterations": min(params.iterations, _CV_ITERATIONS),
            "tol": max(params.tol, _CV_TOL),
        }
    )
    for k, la in enumerate(grid):
        a = scale * np.exp(la)
        for part, xs, inside, right, t in halves:
            s = fit(y2[:, part::2], xs, a, tv_order, coarse)
            pred = s[:, right - 1] * (1.0 - t) + s[:, right] * t
            held = y2[:, 1 - part :: 2][:, inside]
            cv[k] += np.sum((pred - held) ** 2, axis=1)
    best = np.argmin(cv, axis=0)
    # parabola through the minimum and its neighbours, in log alpha
    i = np.clip(best, 1, grid.shape[0] - 2)
    cols = np.arange(r)
    c0, c1, c2 = cv[i - 1, cols], cv[i, cols], cv[i + 1, cols]
    den = c0 - 2.0 * c1 + c2
    step = grid[1] - grid[0]
    off = np.where(den > 0, 0.5 * (c0 - c2) / np.where(den > 0, den, 1.0), 0.0)
    la = np.where(best == i, grid[i] + np.clip(off, -1.0, 1.0) * step, grid[best])
    # rounded to 8 significant digits: the fit's stopping test would turn a last-bit
    # difference in alpha (summation order over a batch) into a 1e-6 difference in the fit
    alpha = scale * np.exp(la) * CV_TO_DERIVATIVE[tv_order]
    return _round(alpha)


def _round(a: np.ndarray, digits: int = 8) -> np.ndarray:
    """Round to ``digits`` significant digits (vectorized)."""
    safe = np.where(a > 0, a, 1.0)
    mag = 10.0 ** (digits - 1 - np.floor(np.log10(safe)))
    return np.where(a > 0, np.round(safe * mag) / mag, a)


def fit(y: Any, x: np.ndarray, alpha: Any, tv_order: int, params: TVRParams) -> np.ndarray:
    """The TV-regularised fit s of every series (float64 host array of y's shape)."""
    y2, full = _as_rows(y)
    rows = difference_rows(x, tv_order + 1)
    a = np.broadcast_to(np.asarray(to_numpy(alpha), dtype=np.float64), full[:-1]).reshape(-1)
    out = np.empty_like(y2)
    stacked = np.concatenate([y2, a[:, None]], axis=1)
    run_rows(_fit_kernel, stacked, out, rows, params.iterations, params.tol)
    return out.reshape(full)


def _fit_kernel(ys, rows, iters, tol, out):
    """run_rows adaptor: the last column of ys carries each series' alpha."""
    _fit_rows(
        np.ascontiguousarray(ys[:, :-1]),
        rows,
        np.ascontiguousarray(ys[:, -1]),
        iters,
        tol,
        out,
    )


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: TVRParams,
    chosen: dict[str, Any],
    xp: ModuleType,
    smoothed: bool,
) -> Output:
    q = tv_order_for(order, params)
    _check_order(q, order)
    alpha = chosen.get("alpha", params.alpha)
    if alpha is None:
        alpha = _choose(y, x, order, params, xp)["alpha"]
    s = fit(y, x, alpha, q, params)
    d = apply_stencil(build_stencil(x, order, 2), s, np)
    dt = y.dtype
    d = asarray_like(d.astype(dt, copy=False), xp) if not is_numpy(xp) else d.astype(dt)
    sm = None
    if smoothed:
        sm = s.astype(dt) if is_numpy(xp) else asarray_like(s.astype(dt), xp)
    return Output(d, sm)


def _footprint(order: int, params: TVRParams) -> None:
    return None


def _min_samples(order: int, params: TVRParams) -> int:
    return tv_order_for(order, params) + 3


SPEC = register(
    MethodSpec(
        name="tvr",
        summary="Total-variation regularised derivative (Chartrand), IRLS with banded "
        "solves per series in numba; alpha by cross-validation.",
        params=TVRParams,
        max_order=3,
        apply=_apply,
        footprint=_footprint,
        choose=_choose,
        min_samples=_min_samples,
        irregular=True,
        nan_omit=False,
        gpu=False,
        has_smoothed=True,
    )
)
