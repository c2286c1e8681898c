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
One compiled kernel (:func:`_cv_rows`) does the whole search for groups of series: each half
walks up the grid from its data, each alpha's reweighting continuing from the previous
alpha's fit (2 steps per alpha instead of 8 from the data), the solves are one fused LDL^T
pass (written out for tv_order 2, order 1's default; Givens rotations for tv_order 3, see
below), and a series stops 3 alphas past its best.

The fit itself (alpha given) with tv_order 2 runs on the same written-out kernel,
:func:`_fit_rows4`: _solve's fits up to rounding (~3e-5 of the range at worst, where the
reweighting's weights span 1e6), a series' fit independent of its batch.

Measured (2-core machine shared with other jobs, 1,000-2,000 series of length 1,000,
sin + 1 % noise, order 1, best of 3-7 runs, before and after in the same session): the
choice 1.9-2.6 -> 0.18-0.28 ms/series (the general LDL^T kernel alone 0.40-0.47; the
noise level, :func:`_noise.noise_sigma`, 0.028 -> 0.007 of it); the fit at a given alpha
0.42-0.43 -> 0.23-0.24; end to end with alpha=None 2.2-2.4 -> 0.47 ms/series, against
PyNumDiff's tvrdiff in the same runs (62-74 ms/series) 28-30x -> 133-159x.

Accuracy of the derivative, RMSE against the truth over sin, exp, a Black-Scholes call and
a damped oscillator, 201 and 1,000 samples, noise 0 / 0.1 / 1 / 5 / 10 %, orders 1 and 2,
12 draws each (new / old, geometric mean over the 80 cases): uniform x 0.90 interior, 0.89
whole range (worst case 1.05, the damped oscillator's whole range at order 2, 5 %);
jittered x 0.92 / 0.88, with noise >= 0.1 % worst 1.04; noise-free order 2 on jittered x
moves both ways (0.08-7x, at 1e-6-1e-2 of the derivative's RMS). Continuation picks
somewhat larger alphas (median +0.1-0.8 decades where the old 8-step fits from the data
had not converged), which helps most signals.

Second derivatives (tv_order 3, order 2's default) use another solve of each reweighting
step (:mod:`._tvr_kernels`, Givens rotations of the stacked least squares [I; sqrt(W) D]).
There the fit's fourth difference vanishes almost everywhere and the weights alpha / |D s|
must grow far beyond what the normal equations above can carry (they follow the exact
solve to ~1e12 and break beyond: 0.12 of the signal off at 1e13, not positive definite at
1e16), while the Givens solve is exact at any weight; its weights are floored at 1e-6 of
the largest |D s| only (an overflow guard at 1e100), no longer capped at 1e10, which had
left a Whittaker smoother of weight 1e10 where a second derivative of 1,000 samples needs
1e13-1e20. The chooser's grid reaches 10^8.3 instead of 10^6 for it (the same steps; the
optimum on 1,000 samples is 10^5-10^7 of the noise level) and its shift, re-measured with
the new solve over sin, exp, Black-Scholes and two-tone series, 201 and 1,000 samples, 1 /
5 / 10 % noise, 3 draws (geometric mean of the error over the best alpha in hindsight
1.31 at 10^1.4, 1.31 at 10^1.2, 1.38 at 10^1.8; two more sets of 72 series: 10^1.4 the
best, 1.34 / 1.38), stays 10^1.4; taking the largest alpha within 0.2-5 % of the least
prediction error instead helped one set and hurt the other. tv_order 1 and 2 keep their
solves and are unchanged to the bit: order 1 (tv_order 2) does not need the heavier
weights (the best alpha in hindsight, capped / not capped, 1,000 samples: exp 0.0093 /
0.0100 and 0.046 / 0.023 at 1 / 5 %, sin 0.012 / 0.017 and 0.026 / 0.039; 201 samples
alike).

Measured (2026-11-27, f'' relative RMSE interior / whole range, mean of 5 draws, alpha
chosen, before -> after; the septic ``spline`` on the same data): 1,000 samples, exp at
1 % 0.81 / 1.04 -> 0.034 / 0.066 (spline 0.050 / 0.12), at 5 % 4.0 / 5.2 -> 0.11 / 0.18
(0.13 / 0.22); sin at 1 % 0.11 / 0.17 -> 0.039 / 0.098 (0.030 / 0.13), at 5 % 0.55 / 0.86
-> 0.069 / 0.19 (0.057 / 0.24). 201 samples: sin unchanged (0.053 / 0.090 at 1 / 5 %),
exp at 5 % 0.26 -> 0.17 (spline 0.22), exp at 1 % 0.056 -> 0.079 (spline 0.091).
Jittered x alike (exp, 1,000 samples, 1 / 5 %, 3 draws: 0.82 / 4.1 -> 0.030 / 0.094);
third derivatives (tv_order 3 too) on 1,000 samples at 1 %: sin 1.04 -> 0.20, exp 19.9 ->
0.21 (201 samples and noise-free series unchanged). A given
alpha reaches the TV solution now (alpha -> infinity: the least-squares cubic) where it
stopped at the capped smoother (exp, 1,000 samples, 1 %: 0.81 for every alpha from 1e3
up; now 0.50 / 0.10 at 1e3 / 1e4, 5 draws, and 0.038 / 0.033 / 0.089 at 1e5 / 1e6 / 1e7,
20 draws).
Left: the cross-validation's choice scatters on long series (exp, 1,000 samples, 1 %, 20
draws: median 0.031, 3 draws above 0.1, up to 0.38, the spline's median 0.041 and worst
0.078; the two-fold prediction error is flat over three decades of alpha and its minimum
sits low on those; at 10 % noise 0.64 against 0.14 for the best alpha in hindsight).
Time (order 2, 1,000 series of 1,000 samples, sin at 1 %, best of 3, before -> after in
one session on the shared 2-core machine): alpha chosen 0.76-0.91 -> 1.15 ms/series;
alpha given, 1e2 0.53 -> 0.56, 1e4 0.19 -> 0.62 (the capped steps had settled on the
smoother in a few iterations; the TV fit uses the 20 allowed). Order 1 unchanged (0.46 /
0.23 chosen / given).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numba
import numpy as np
from numba import uint64 as _u
from pydantic import Field

from ._noise import noise_sigma
from ._stencil import apply_stencil, fornberg_weights, run_rows
from ._tvr_kernels import _CV_V, _fit_rows_qr, _irls_qr, _lanes_running, _load_lanes
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
# tv_order 3 (order 2's default) on long series wants more: the same steps, three more
# (up to 10^8.3; on 1,000 samples the optimum is 10^5-10^7, measured)
_REL_ALPHA3 = _REL_ALPHA[0] * (_REL_ALPHA[1] / _REL_ALPHA[0]) ** np.arange(13)
# the grid's fits need less precision than the final one: fewer reweighting steps per
# alpha, each alpha starting from the previous one's fit
_CV_ITERATIONS = 2
_CV_TOL = 1e-4
# a series' walk up the grid stops once this many alphas in a row predict worse than its best
_CV_PATIENCE = 3
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


@numba.njit(nogil=True, cache=True, inline="always")
def _weight_floor(big, alpha):  # pragma: no cover - compiled
    """The floor of |D s| in the reweighting's weights alpha / |D s| (one series): keeps the
    system well conditioned where the fit is flat, the weights spanning at most 1e6 of the
    largest difference ``big`` and never above 1e10 (tv_order 1 and 2; tv_order 3's Givens
    step has no such cap: :func:`._tvr_kernels._qr_weight_floor`)."""
    return max(1e-6 * big, 1e-10 * alpha, 1e-300)


@numba.njit(nogil=True, cache=True, inline="always")
def _lane_weights(rows, s, alpha, g, big, eps, acc):  # pragma: no cover - compiled
    """The reweighting's weights of every lane: g[j, k] = alpha[k] / max(|(D s)[j, k]|,
    eps[k]) for difference rows (m, w) and fits s (n, lanes), eps the floor of
    :func:`_weight_floor` from big (lanes,), the largest |D s|; acc (lanes,) is scratch.
    The sums run over each row's points in order."""
    m, w = rows.shape
    lanes = big.shape[0]
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
            v = abs(acc[k])
            g[j, k] = v
            big[k] = max(big[k], v)
    for k in range(lanes):
        eps[k] = _weight_floor(big[k], alpha[k])
    for j in range(m):
        for k in range(lanes):
            g[j, k] = alpha[k] / max(g[j, k], eps[k])


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
        eps = _weight_floor(big, alpha)
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
        _lane_weights(rows, s, alpha, g, big, eps, acc)
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
    """Fit every series of y (r, n) with its own alpha (r,); out (r, n). Four-point rows
    (tv_order 2) go through :func:`_fit_rows4`, five-point rows (tv_order 3) through the
    Givens kernel :func:`._tvr_kernels._fit_rows_qr`; otherwise (tv_order 1) groups of up
    to _LANES series through :func:`_solve_lanes`, a lone series through :func:`_solve`."""
    r, n = y.shape
    m, w = rows.shape
    if w == 4:
        _fit_rows4(y, rows, alpha, iters, tol, out)
        return
    if w == 5:
        _fit_rows_qr(y, rows, alpha, iters, tol, out)
        return
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


@numba.njit(nogil=True, cache=True)
def _fit_rows4(y, rows, alpha, iters, tol, out):  # pragma: no cover - compiled
    """:func:`_fit_rows` for four-point rows: groups of _CV_V series (the last padded with
    copies of its last series) through the written-out :func:`_irls_ldl3`, each stopping
    once a step changes its fit by at most tol times its range. A series' fit depends on
    that series alone; it is :func:`_solve`'s up to rounding (differently ordered sums)."""
    r, n = y.shape
    m = rows.shape[0]
    lanes = _CV_V
    rrp = _padded(_pair_products(rows))
    yl = np.empty((n, lanes))
    sl = np.empty((n, lanes))
    al = np.empty(lanes)
    stop = np.empty(lanes)
    gp = np.zeros((m + 6, lanes))
    ldp = np.empty((n + 6) * 4 * lanes)
    zp = np.empty((n + 6) * lanes)
    buf = np.empty((3, lanes))
    for k0 in range(0, r, lanes):
        used = _load_lanes(y, alpha, tol, k0, yl, sl, al, stop)
        _irls_ldl3(yl, sl, rows, rrp, al, iters, stop, gp, ldp, zp, buf)
        for k in range(used):
            for i in range(n):
                out[k0 + k, i] = sl[i, k]


# ---- alpha=None: the whole cross-validation of a group of series in one compiled call ----


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _pair_products(rows):  # pragma: no cover - compiled
    """rr (m, w, w): rr[j, d, b] = rows[j, b + d] * rows[j, b], the products that form the
    normal matrix's diagonals d = 0..w-1 from difference row j."""
    m, w = rows.shape
    rr = np.zeros((m, w, w))
    for j in range(m):
        for d in range(w):
            for b in range(w - d):
                rr[j, d, b] = rows[j, b + d] * rows[j, b]
    return rr


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _padded(rr):  # pragma: no cover - compiled
    """rr (m, w, w) with three rows of zeros before and after: (m + 6, w, w)."""
    out = np.zeros((rr.shape[0] + 6, rr.shape[1], rr.shape[2]))
    out[3 : rr.shape[0] + 3] = rr
    return out


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _irls_ldl(y, s, rows, rr, alpha, iters, stop, g, ld, z, buf):  # pragma: no cover
    """Reweighting steps of the TV fit for L = _CV_V series at once (lanes innermost):
    y, s (n, L) with s the starting fit, updated in place; alpha (L,); stop (L,) the
    largest change of the fit at which a lane stops (keeps its fit); g (m, L),
    ld (n, w, L), z (n, L), buf (w + 4, L) scratch.

    The same lagged-diffusivity step as :func:`_solve`, in fewer passes over memory: the
    normal matrix is formed row by row inside an LDL^T factorisation (no square roots, one
    division per sample) fused with the forward substitution. ld[i, 0] holds 1 / D_i and
    ld[i, d] the factor's entry L[i, i - d]. Rounding differs from :func:`_solve`; the
    cross-validation that uses it only ranks alphas.
    """
    n = y.shape[0]
    m, w = rows.shape
    q = w - 1
    big = buf[q + 1]
    eps = buf[q + 2]
    act = buf[q + 3]
    u = buf[: q + 1]
    for k in range(_CV_V):
        act[k] = 1.0
    for _ in range(iters):
        _lane_weights(rows, s, alpha, g, big, eps, z[0])
        # factor row by row; u[d] = A[i, i - d] - sum_t u_t L[i - d, t]  (= L[i, i-d] D)
        for i in range(n):
            dmax = min(i, q)
            for d in range(dmax + 1):
                for k in range(_CV_V):
                    u[d, k] = 0.0
                for b in range(q - d + 1):
                    j = i - d - b
                    if 0 <= j < m:
                        c = rr[j, d, b]
                        for k in range(_CV_V):
                            u[d, k] += g[j, k] * c
            for k in range(_CV_V):
                u[0, k] += 1.0
            for d in range(dmax, 0, -1):
                c = i - d
                # subtract sum over t in [i - q, c) of L[i, t] D_t L[c, t]
                for e in range(dmax, d, -1):
                    # t = i - e; L[c, t] = ld[c, e - d]
                    for k in range(_CV_V):
                        u[d, k] -= u[e, k] * ld[c, e - d, k]
            for d in range(dmax, 0, -1):
                c = i - d
                for k in range(_CV_V):
                    u[0, k] -= u[d, k] * u[d, k] * ld[c, 0, k]
                    u[d, k] *= ld[c, 0, k]
                    ld[i, d, k] = u[d, k]
            for k in range(_CV_V):
                ld[i, 0, k] = 1.0 / u[0, k]
                z[i, k] = y[i, k]
            for d in range(1, dmax + 1):
                for k in range(_CV_V):
                    z[i, k] -= ld[i, d, k] * z[i - d, k]
        for k in range(_CV_V):
            big[k] = 0.0  # now: the largest change
        for i in range(n - 1, -1, -1):
            for k in range(_CV_V):
                z[i, k] *= ld[i, 0, k]
            for d in range(1, min(q, n - 1 - i) + 1):
                for k in range(_CV_V):
                    z[i, k] -= ld[i + d, d, k] * z[i + d, k]
            for k in range(_CV_V):
                big[k] = max(big[k], abs(z[i, k] - s[i, k]))
                s[i, k] = z[i, k] if act[k] > 0.0 else s[i, k]
        if not _lanes_running(act, big, stop):
            break


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _irls_ldl3(y, s, rows, rrp, alpha, iters, stop, gp, ld, z, buf):  # pragma: no cover
    """:func:`_irls_ldl` for four-point difference rows (tv_order 2, the default of order
    1), written out: every loop over the lanes is one straight-line body, about 1.6x faster
    than the general kernel (measured, 500 samples x 8 lanes). Three virtual rows pad each
    end of the factor (L = 0, 1 / D = 1, z = 0) and of the weights (0), so no row needs a
    bounds test: rrp (m + 6, 4, 4) and gp (m + 6, L) are padded, ld ((n + 6) * 4 * L) and
    z ((n + 6) * L) are flat with row i at offset i + 3; buf (3, L) scratch.
    """
    n = y.shape[0]
    m = rows.shape[0]
    V = _CV_V
    # flat indices go in as unsigned: no negative-index wraparound per access (~15-20 %
    # faster, the same arithmetic)
    big = buf[0]
    eps = buf[1]
    act = buf[2]
    for i in range(3):
        top = n + 3 + i
        for k in range(V):
            gp[_u(i), k] = 0.0
            gp[_u(m + 3 + i), k] = 0.0
            z[_u(i * V + k)] = 0.0
            z[_u(top * V + k)] = 0.0
            ld[_u(4 * i * V + k)] = 1.0
            ld[_u(4 * top * V + k)] = 1.0
            for d in range(1, 4):
                ld[_u((4 * i + d) * V + k)] = 0.0
                ld[_u((4 * top + d) * V + k)] = 0.0
        # (z and ld at the padded rows stay as set: the passes write rows 3 .. n + 2 only)
    for k in range(V):
        act[k] = 1.0
    for _ in range(iters):
        for k in range(V):
            big[k] = 0.0
        for j in range(m):
            r0 = rows[j, 0]
            r1 = rows[j, 1]
            r2 = rows[j, 2]
            r3 = rows[j, 3]
            for k in range(V):
                v = abs(
                    r0 * s[_u(j), k]
                    + r1 * s[_u(j + 1), k]
                    + r2 * s[_u(j + 2), k]
                    + r3 * s[_u(j + 3), k]
                )
                gp[_u(j + 3), k] = v
                big[k] = max(big[k], v)
        for k in range(V):
            eps[k] = _weight_floor(big[k], alpha[k])
        for j in range(3, m + 3):
            for k in range(V):
                gp[_u(j), k] = alpha[k] / max(gp[_u(j), k], eps[k])
        for i in range(n):
            p = i + 3
            c00 = rrp[p, 0, 0]
            c01 = rrp[p - 1, 0, 1]
            c02 = rrp[p - 2, 0, 2]
            c03 = rrp[p - 3, 0, 3]
            c10 = rrp[p - 1, 1, 0]
            c11 = rrp[p - 2, 1, 1]
            c12 = rrp[p - 3, 1, 2]
            c20 = rrp[p - 2, 2, 0]
            c21 = rrp[p - 3, 2, 1]
            c30 = rrp[p - 3, 3, 0]
            b0 = 4 * p * V
            b1 = b0 - 4 * V
            b2 = b1 - 4 * V
            b3 = b2 - 4 * V
            for k in range(V):
                g0 = gp[_u(p), k]
                g1 = gp[_u(p - 1), k]
                g2 = gp[_u(p - 2), k]
                g3 = gp[_u(p - 3), k]
                a0 = 1.0 + g0 * c00 + g1 * c01 + g2 * c02 + g3 * c03
                a1 = g1 * c10 + g2 * c11 + g3 * c12
                a2 = g2 * c20 + g3 * c21
                u3 = g3 * c30
                u2 = a2 - u3 * ld[_u(b2 + V + k)]
                u1 = a1 - u3 * ld[_u(b1 + 2 * V + k)] - u2 * ld[_u(b1 + V + k)]
                l3 = u3 * ld[_u(b3 + k)]
                l2 = u2 * ld[_u(b2 + k)]
                l1 = u1 * ld[_u(b1 + k)]
                ld[_u(b0 + V + k)] = l1
                ld[_u(b0 + 2 * V + k)] = l2
                ld[_u(b0 + 3 * V + k)] = l3
                ld[_u(b0 + k)] = 1.0 / (a0 - u3 * l3 - u2 * l2 - u1 * l1)
                z[_u(p * V + k)] = (
                    y[i, k]
                    - l1 * z[_u((p - 1) * V + k)]
                    - l2 * z[_u((p - 2) * V + k)]
                    - l3 * z[_u((p - 3) * V + k)]
                )
        for k in range(V):
            big[k] = 0.0
        for i in range(n - 1, -1, -1):
            p = i + 3
            b0 = 4 * p * V
            e1 = b0 + 5 * V
            e2 = b0 + 10 * V
            e3 = b0 + 15 * V
            for k in range(V):
                v = (
                    z[_u(p * V + k)] * ld[_u(b0 + k)]
                    - ld[_u(e1 + k)] * z[_u((p + 1) * V + k)]
                    - ld[_u(e2 + k)] * z[_u((p + 2) * V + k)]
                    - ld[_u(e3 + k)] * z[_u((p + 3) * V + k)]
                )
                z[_u(p * V + k)] = v
                big[k] = max(big[k], abs(v - s[i, k]))
                s[i, k] = v if act[k] > 0.0 else s[i, k]
        if not _lanes_running(act, big, stop):
            break


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _cv_rows(  # pragma: no cover - compiled
    ys, rows0, rows1, held0, right0, t0, held1, right1, t1, lg, iters, tol, patience, out
):
    """Two-fold cross-validation error of every series over the alpha grid.

    ys (r, n + 1): the series, their alpha scale in the last column; rows0/rows1 the
    difference rows on the even / odd samples; heldP (h,) the positions in the series of
    the samples that half P predicts, rightP the half's sample right of each, tP the
    interpolation weight; lg (G,) log alpha relative to the scale, increasing;
    out (r, G) the summed squared prediction errors of both halves (inf where skipped).

    Each half's fit starts from the half's data and walks up the grid, each alpha's
    ``iters`` reweighting steps starting from the previous alpha's fit (continuation);
    a step changing the fit by at most ``tol`` times the half's range ends that alpha's
    steps. A series stops once ``patience`` consecutive alphas have predicted worse than
    its best so far. Series go in groups of _CV_V lanes (the last group padded with copies
    of its last series); every lane's arithmetic is its own, so a series' errors do not
    depend on the other series of its batch.
    """
    r = ys.shape[0]
    n = ys.shape[1] - 1
    w = rows0.shape[1]
    G = lg.shape[0]
    rr0 = _pair_products(rows0)
    rr1 = _pair_products(rows1)
    rrp0 = _padded(rr0)
    rrp1 = _padded(rr1)
    lanes = _CV_V
    n0 = (n + 1) // 2
    n1 = n // 2
    alpha = np.empty(lanes)
    stop0 = np.empty(lanes)
    stop1 = np.empty(lanes)
    buf = np.empty((max(w + 4, 9), lanes))
    err = np.empty(lanes)
    best = np.empty(lanes)
    worse = np.empty(lanes, dtype=np.int64)
    src = np.empty(lanes, dtype=np.int64)
    y0 = np.empty((n0, lanes))
    s0 = np.empty((n0, lanes))
    y1 = np.empty((n1, lanes))
    s1 = np.empty((n1, lanes))
    g = np.empty((n0, lanes))
    ld = np.empty((n0, w, lanes))
    z = np.empty((n0, lanes))
    # the Givens kernel's (tv_order 3)
    q5 = n0 if w == 5 else 0
    rfq = np.empty((5, q5, lanes))
    bq = np.empty((q5 + 4, lanes))
    # the written-out kernel's arrays (tv_order 2): padded by three rows at each end
    gp = np.zeros((n0 + 6, lanes))
    ldp = np.empty((n0 + 6) * 4 * lanes)
    zp = np.empty((n0 + 6) * lanes)
    for k0 in range(0, r, lanes):
        used = min(lanes, r - k0)
        for k in range(lanes):
            src[k] = k0 + min(k, used - 1)
            best[k] = np.inf
            worse[k] = 0
        for k in range(used):
            for gi in range(G):
                out[k0 + k, gi] = np.inf
        for part in range(2):
            y, s, stop = (y0, s0, stop0) if part == 0 else (y1, s1, stop1)
            nn = y.shape[0]
            for k in range(lanes):
                lo = ys[src[k], part]
                hi = lo
                for i in range(nn):
                    v = ys[src[k], part + 2 * i]
                    y[i, k] = v
                    s[i, k] = v
                    lo = min(lo, v)
                    hi = max(hi, v)
                stop[k] = tol * (hi - lo if hi > lo else 1.0)
        for gi in range(G):
            for k in range(lanes):
                alpha[k] = ys[src[k], n] * np.exp(lg[gi])
                err[k] = 0.0
            for part in range(2):
                if part == 0:
                    y, s, stop, rows, rr, rrp = y0, s0, stop0, rows0, rr0, rrp0
                    held, right, tt = held0, right0, t0
                else:
                    y, s, stop, rows, rr, rrp = y1, s1, stop1, rows1, rr1, rrp1
                    held, right, tt = held1, right1, t1
                if w == 4:
                    _irls_ldl3(y, s, rows, rrp, alpha, iters, stop, gp, ldp, zp, buf)
                elif w == 5:
                    _irls_qr(y, s, rows, alpha, iters, stop, g, rfq, bq, buf)
                else:
                    _irls_ldl(y, s, rows, rr, alpha, iters, stop, g, ld, z, buf)
                for h in range(held.shape[0]):
                    p = held[h]
                    b = right[h]
                    t = tt[h]
                    for k in range(lanes):
                        e = s[b - 1, k] * (1.0 - t) + s[b, k] * t - ys[src[k], p]
                        err[k] += e * e
            running = False
            for k in range(lanes):
                if patience > 0 and worse[k] >= patience:
                    continue
                if k < used:
                    out[k0 + k, gi] = err[k]
                if err[k] < best[k]:
                    best[k] = err[k]
                    worse[k] = 0
                else:
                    worse[k] += 1
                running = running or patience <= 0 or worse[k] < patience
            if not running:
                break


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
    noise level, walking up the grid from the data (each alpha continues from the previous
    alpha's fit), and predicts the other half by linear interpolation; the alpha with the
    least prediction error (refined by a parabola in log alpha) is the signal-optimal one,
    and derivatives want more smoothing: it is multiplied by ``CV_TO_DERIVATIVE[tv_order]``.
    A series' walk ends ``_CV_PATIENCE`` alphas past its best (the skipped ones count as
    infinitely bad). Each series' alpha depends on that series alone.
    """
    r, n = y2.shape
    sigma = noise_sigma(y2, np, x=x)
    scale = np.where(sigma > 0, sigma, np.maximum(np.ptp(y2, axis=-1), 1.0) * 1e-12)
    grid = np.log(_REL_ALPHA3 if tv_order == 3 else _REL_ALPHA)
    halves = cv_halves(x, tv_order)
    iters = min(params.iterations, _CV_ITERATIONS)
    tol = max(params.tol, _CV_TOL)
    stacked = np.concatenate([y2, scale[:, None]], axis=1)
    cvo = np.empty((r, grid.shape[0]))
    run_rows(_cv_kernel, stacked, cvo, halves, grid, iters, tol, _CV_PATIENCE)
    cv = cvo.T
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


def cv_halves(x: np.ndarray, tv_order: int) -> list[tuple[np.ndarray, ...]]:
    """The two-fold plan of :func:`choose_alpha`, per half (even samples, odd samples): its
    difference rows, the positions in the series of the samples it predicts (those inside
    its span), the index of its sample right of each and the linear-interpolation weight."""
    halves = []
    for part in (0, 1):
        xs, xo = x[part::2], x[1 - part :: 2]
        inside = np.flatnonzero((xo > xs[0]) & (xo < xs[-1]))
        right = np.searchsorted(xs, xo[inside])
        t = (xo[inside] - xs[right - 1]) / (xs[right] - xs[right - 1])
        held = (1 - part) + 2 * inside
        halves.append((difference_rows(xs, tv_order + 1), held, right, t))
    return halves


def _cv_kernel(ys, halves, lg, iters, tol, patience, out):
    """run_rows adaptor of :func:`_cv_rows`."""
    (r0, h0, b0, t0), (r1, h1, b1, t1) = halves
    _cv_rows(ys, r0, r1, h0, b0, t0, h1, b1, t1, lg, iters, tol, patience, out)


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
