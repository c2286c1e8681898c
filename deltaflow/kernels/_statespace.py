"""State-space smoothing shared by ``kalman`` and ``spline``: gains once, series as a batch.

The model: the (d-1)-th derivative of the signal is a Wiener process (white noise of
spectral density ``rho`` drives the d-th), the state is (f, f', ..., f^(d-1)) and each
observed sample carries white noise of unit variance. The initial state is diffuse, handled
by de Jong's augmentation: the filter starts from P0 = 0 and a fixed unknown state s0,
estimated per series by generalised least squares from the innovations. The posterior mean
is then exactly the natural smoothing spline of degree 2d-1 with ``lam = 1 / rho``
(Wahba 1978; Kohn & Ansley 1987), computed by a recursion that stays accurate for any
``rho`` and any spacing, unlike the normal equations of a B-spline fit.

Gains, smoother gains and the augmentation terms depend on the coordinates, ``rho`` and
which samples are observed, never on the values, so they are computed once per
(``rho``, NaN pattern) and every series then runs only the linear mean recursion: numba
loops over time, LANES series at once as SIMD lanes (``_statespace_lanes``; the row kernels
here are the reference the tests hold them to), blocks of series split over threads by
:func:`run_rows`. Coordinates are in units of the mean spacing (``scaled``).

Measured (2,000 x 1,000 float64 series, x regular, order 1, the whole
``differentiate_array`` call, 2 threads on 2 shared cores, best of 3 runs of best-of-5,
ms per series; 17166f4 -> now, the same session): ``spline`` with the smoothing given,
quintic (default) 0.0115-0.0147 -> 0.0064-0.0074, cubic 0.0074-0.0170 -> 0.0061-0.0075,
septic with ``ends='corrected'`` (``auto``'s) 0.028-0.031 -> 0.016-0.017 (same-run pairs;
its best-of-3 minima 0.0158 / 0.0176 were noise); automatic smoothing (criterion 'ml'),
quintic 0.121-0.218 -> 0.033-0.047, septic 0.216-0.264 -> 0.063-0.076; criterion 'gcv'
quintic 0.16-0.18 -> 0.10-0.12; ``kalman`` automatic 0.18-0.24 -> 0.065-0.072. Where the time went:
the lanes kernels (``_statespace_lanes``, 2-3x), the likelihood's gains without the smoother
(``gains(smoother=False)``: 0.62 -> 0.18 ms per set for the quintic), its coarse grid scored
in one pass over the batch (``innovation_rss_many``) instead of one per value (the batch
does not fit in the caches: every pass over it costs ~1.3 ms), so are the fine points of
the rows sharing a coarse best (quintic 0.050-0.052 -> 0.037-0.043), and a batch of many
smoothing values run group by group side by side on threads. With the smoothing given the
gains are one set per call, ~0.5 ms (quintic) of ~13 ms; the rest of the call outside the
kernels is two passes over the batch for NaN (api's check, :func:`rows_of`), ~1.2 ms each.
Tried and not kept: the boundary correction computed inside the lanes' blocks, the fit never
written out (one thread, 2,000 x 1,000: quintic 22-23 -> 21 ms a call, septic 21-24 -> 25-26;
its extra passes over each block cost what the saved passes over the batch gave).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ._gridsearch import grid_search
from ._statespace_lanes import fit_rss_lanes, innovation_rss_lanes, smooth_lanes
from ._stencil import _pool, _threads_for, run_rows
from .registry import Output


def require_numpy(method: str, xp: Any) -> None:
    """TypeError naming the method when the batch is not a NumPy array (no GPU path here)."""
    if xp is not np:
        raise TypeError(
            f"method {method!r} runs on NumPy arrays only (it has no GPU / array-API path); "
            f"got an array of namespace {getattr(xp, '__name__', xp)!r}: convert it with "
            "numpy.asarray first or pick a method whose 'gpu' capability is true"
        )


def scaled(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Increasing x in units of its mean spacing (starting at 0), and that spacing."""
    step = (x[-1] - x[0]) / (x.shape[0] - 1)
    return (x - x[0]) / step, float(step)


def rows_of(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, n) contiguous float64 host rows of y and its NaN mask.

    The mask is tested only on rows whose sum is not finite (a NaN makes the sum NaN; an
    infinity or an overflow sends a row through the test too): one pass over the batch
    instead of a mask pass, and a zeroed mask that costs nothing until read."""
    y2 = np.ascontiguousarray(np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1]))
    mask = np.zeros(y2.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(np.add.reduce(y2, axis=1)))
    if bad.size:
        mask[bad] = np.isnan(y2[bad])
    return y2, mask


def usable_rows(nan: np.ndarray, omit: bool, d: int) -> np.ndarray:
    """Rows (rows,) that get an estimate from a state of dimension d: NaN-free rows, and with
    ``omit`` (nan_policy 'omit') rows with at least d + 2 observed samples. A mask without
    NaN is answered by one flat scan (a reduction along rows costs 20x that)."""
    if not nan.any():
        return np.ones(nan.shape[0], dtype=bool)
    if omit:
        return (~nan).sum(axis=1) >= d + 2
    return ~nan.any(axis=1)


def group_rows(values: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Indices of rows sharing a value (rows,) and a boolean mask row (rows, n), sorted.

    Series that share a smoothing value and a NaN pattern share one set of gains. The key
    packs the mask to bits, so grouping costs one small sort.
    """
    rows = values.shape[0]
    if rows == 0:
        return []
    missing = bool(mask.any())
    if not missing and bool(np.all(values == values[0])):
        return [np.arange(rows)]  # the common case: one value, nothing missing
    if not missing:  # nothing missing: the values alone (a sort of floats, no byte keys)
        _, inverse = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    v = np.ascontiguousarray(values, dtype=np.float64).view(np.uint8).reshape(rows, 8)
    key = np.ascontiguousarray(np.concatenate([v, np.packbits(mask, axis=1)], axis=1))
    void = key.view(np.dtype((np.void, key.shape[1]))).reshape(rows)
    _, inverse = np.unique(void, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def take_rows(a: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """``a[sel]`` (rows of a 2-D array), without a copy where ``sel`` is every row in order.

    A search may hand an evaluation its rows in any order (the climb does): only the exact
    identity may skip the gather.
    """
    return a if np.array_equal(sel, np.arange(a.shape[0])) else a[sel]


# ----------------------------------------------------------------------------- gains


@numba.njit(nogil=True, cache=True)
def _model(dt, d, rho, f, q):  # pragma: no cover - compiled
    """Fill transition F and process noise Q for a step dt (unit measurement noise)."""
    for i in range(d):
        for j in range(d):
            f[i, j] = 0.0
        f[i, i] = 1.0
        c = 1.0
        for p in range(1, d - i):
            c *= dt / p
            f[i, i + p] = c
    # Q[i, j] = rho dt^(a+b+1) / (a! b! (a+b+1)), a = d-1-i, b = d-1-j
    for i in range(d):
        a = d - 1 - i
        fa = 1.0
        for p in range(2, a + 1):
            fa *= p
        for j in range(d):
            b = d - 1 - j
            fb = 1.0
            for p in range(2, b + 1):
                fb *= p
            e = a + b + 1
            q[i, j] = rho * dt**e / (fa * fb * e)


@numba.njit(nogil=True, cache=True)
def _chol_solve(a, b, out, low):  # pragma: no cover - compiled
    """out = a^-1 b for a small SPD matrix a (d, d) and b (d, d), by Cholesky into ``low``."""
    d = a.shape[0]
    for i in range(d):
        for j in range(i + 1):
            acc = a[i, j]
            for k in range(j):
                acc -= low[i, k] * low[j, k]
            if i == j:
                low[i, i] = np.sqrt(max(acc, 1e-300))
            else:
                low[i, j] = acc / low[j, j]
    for c in range(b.shape[1]):
        for i in range(d):  # forward: L z = b
            acc = b[i, c]
            for k in range(i):
                acc -= low[i, k] * out[k, c]
            out[i, c] = acc / low[i, i]
        for i in range(d - 1, -1, -1):  # back: L^T x = z
            acc = out[i, c]
            for k in range(i + 1, d):
                acc -= low[k, i] * out[k, c]
            out[i, c] = acc / low[i, i]


@numba.njit(nogil=True, cache=True)
def _gains(u, obs, d, rho, smoother, variance):  # pragma: no cover - compiled
    """F (n-1,d,d), K (n,d), 1/S (n,) (0 where unobserved), G (n-1,d,d), var (n,).

    ``var[t]`` is the smoothed variance of f at t given s0 (unit measurement noise).
    The smoother gains G only where ``smoother`` and var only where ``variance`` (both
    empty otherwise): the likelihood needs neither, the smoother no var. F and Q are
    formed again only where the step changes (once on a regular grid).
    Small-matrix algebra is written out in loops: no allocation inside the time loop.
    """
    n = u.shape[0]
    m = max(n - 1, 1)
    fs = np.zeros((m, d, d))
    gs = np.zeros((m if smoother else 0, d, d))
    ks = np.zeros((n, d))
    sinv = np.zeros(n)
    pfs = np.zeros((n if variance else 0, d, d))
    pps = np.zeros((n if variance else 0, d, d))
    pp = np.zeros((d, d))
    pf = np.zeros((d, d))
    ap = np.empty((d, d))
    fp = np.empty((d, d))
    x = np.empty((d, d))
    low = np.zeros((d, d))
    k = np.empty(d)
    q = np.empty((d, d))
    f = np.empty((d, d))
    step = np.nan
    for t in range(n):
        if variance:
            pps[t] = pp
        if obs[t]:
            s = pp[0, 0] + 1.0
            for i in range(d):
                k[i] = pp[i, 0] / s
                ks[t, i] = k[i]
            sinv[t] = 1.0 / s
            # Joseph form (I - k e0^T) P (I - k e0^T)^T + k k^T keeps P symmetric PSD
            for i in range(d):
                for j in range(d):
                    ap[i, j] = pp[i, j] - k[i] * pp[0, j]
            for i in range(d):
                for j in range(d):
                    pf[i, j] = ap[i, j] - ap[i, 0] * k[j] + k[i] * k[j]
        else:
            for i in range(d):
                for j in range(d):
                    pf[i, j] = pp[i, j]
        if variance:
            pfs[t] = pf
        if t < n - 1:
            dt = u[t + 1] - u[t]
            if dt != step:  # the same step gives the same F and Q
                _model(dt, d, rho, f, q)
                step = dt
            fs[t] = f
            for i in range(d):  # fp = F Pf
                for j in range(d):
                    acc = 0.0
                    for l in range(i, d):
                        acc += f[i, l] * pf[l, j]
                    fp[i, j] = acc
            for i in range(d):  # Pp = F Pf F^T + Q, symmetrised
                for j in range(i + 1):
                    acc = q[i, j]
                    for l in range(j, d):
                        acc += fp[i, l] * f[j, l]
                    pp[i, j] = acc
                    pp[j, i] = acc
            if smoother:
                _chol_solve(pp, fp, x, low)  # x = Pp^-1 F Pf = G^T
                for i in range(d):
                    for j in range(d):
                        gs[t, i, j] = x[j, i]
    var = np.empty(n if variance else 0)
    if not variance:
        return fs, ks, sinv, gs, var
    ps = pfs[n - 1].copy()
    var[n - 1] = ps[0, 0]
    diff = np.empty((d, d))
    for t in range(n - 2, -1, -1):
        g = gs[t]
        pn = pps[t + 1]
        for i in range(d):
            for j in range(d):
                diff[i, j] = ps[i, j] - pn[i, j]
        for i in range(d):  # ap = G diff
            for j in range(d):
                acc = 0.0
                for l in range(d):
                    acc += g[i, l] * diff[l, j]
                ap[i, j] = acc
        for i in range(d):  # ps = Pf + G diff G^T
            for j in range(d):
                acc = pfs[t, i, j]
                for l in range(d):
                    acc += ap[i, l] * g[j, l]
                ps[i, j] = acc
        var[t] = ps[0, 0]
    return fs, ks, sinv, gs, var


@numba.njit(nogil=True, cache=True, inline="always")
def _predict(fs, t, m, a):  # pragma: no cover - compiled
    """a (d,) <- F_t m, F_t unit upper triangular: its diagonal is skipped (m[i], not
    0 + 1 * m[i]); the lanes kernels form the same sums in the same order."""
    d = m.shape[0]
    for i in range(d):
        acc = m[i]
        for j in range(i + 1, d):
            acc += fs[t, i, j] * m[j]
        a[i] = acc


@numba.njit(nogil=True, cache=True)
def _unit_innovations(obs, fs, ks, span, e):  # pragma: no cover - compiled
    """e (n, d) <- the innovations of the data-free filter from each unit initial state
    (column j from a0 = span**-j e_j): the forward half of :func:`_run_row` on zeros, the
    same operations, for the likelihood (which needs no smoother)."""
    n, d = e.shape
    a = np.empty(d)
    m = np.empty(d)
    for c in range(d):
        for i in range(d):
            a[i] = 0.0
        a[c] = span ** (-c)
        for t in range(n):
            if obs[t]:
                v = 0.0 - a[0]
                e[t, c] = v
                for i in range(d):
                    m[i] = a[i] + ks[t, i] * v
            else:
                e[t, c] = 0.0
                for i in range(d):
                    m[i] = a[i]
            if t < n - 1:
                _predict(fs, t, m, a)


@numba.njit(nogil=True, cache=True)
def _run_row(y, obs, fs, ks, gs, a0, states, innov):  # pragma: no cover - compiled
    """Filter then smooth one series from initial mean a0 (P0 = 0); states <- smoothed."""
    n = y.shape[0]
    d = a0.shape[0]
    a = a0.copy()
    for t in range(n):
        if obs[t]:
            e = y[t] - a[0]
            innov[t] = e
            for i in range(d):
                states[t, i] = a[i] + ks[t, i] * e
        else:
            innov[t] = 0.0
            for i in range(d):
                states[t, i] = a[i]
        if t < n - 1:
            _predict(fs, t, states[t], a)
    nxt = states[n - 1].copy()
    diff = np.empty(d)
    for t in range(n - 2, -1, -1):
        _predict(fs, t, states[t], diff)
        for i in range(d):
            diff[i] = nxt[i] - diff[i]
        for i in range(d):
            acc = states[t, i]
            for j in range(d):
                acc += gs[t, i, j] * diff[j]
            nxt[i] = acc
            states[t, i] = acc


@dataclass(frozen=True)
class Gains:
    """Everything shared by the series of one (rho, NaN pattern) group."""

    u: np.ndarray
    obs: np.ndarray
    fs: np.ndarray
    ks: np.ndarray
    sinv: np.ndarray
    gs: np.ndarray
    var: np.ndarray  # smoothed variance of f given s0
    es: np.ndarray  # (n, d) innovations of the unit initial states, divided by S
    minv: np.ndarray  # (d, d) inverse of M = sum E_t E_t^T / S_t
    logdet: float  # log det M
    z: np.ndarray  # (n, d, d) smoothed states of the unit initial states

    @property
    def d(self) -> int:
        return self.minv.shape[0]

    def hat_trace(self) -> float:
        """Trace of the smoother's hat matrix: sum of posterior variances of f / noise
        (gains made with ``variance=True``)."""
        if self.var.shape[0] != self.u.shape[0]:
            raise ValueError("hat_trace needs gains(..., variance=True): var was not computed")
        z0 = self.z[:, 0, :]
        extra = np.einsum("ti,ij,tj->t", z0, self.minv, z0)
        return float(np.sum((self.var + extra)[self.obs]))

    def log_det_innovations(self) -> float:
        """sum log S_t over observed samples plus log det M (the diffuse likelihood's constant)."""
        return float(-np.sum(np.log(self.sinv[self.obs]))) + self.logdet


def gains(
    u: np.ndarray,
    obs: np.ndarray,
    d: int,
    rho: float,
    smoother: bool = True,
    variance: bool = False,
) -> Gains:
    """Filter/smoother gains and the diffuse augmentation for ratio rho and mask obs.

    ``smoother=False``: the filter's part only (``gs`` and ``z`` empty), all that the
    likelihood (:func:`innovation_rss`, :meth:`Gains.log_det_innovations`) needs;
    ``variance=True`` adds ``var`` for :meth:`Gains.hat_trace`.
    """
    fs, ks, sinv, gs, var = _gains(u, obs, d, rho, smoother, variance)
    n = u.shape[0]
    e = np.empty((n, d))
    # initial states scaled so that their effects (~ (t/span)^j) are all of order one
    # and M stays well conditioned on long series
    span = max(float(u[-1] - u[0]), 1.0)
    if smoother:
        zeros = np.zeros(n)
        z = np.empty((n, d, d))
        states = np.empty((n, d))
        innov = np.empty(n)
        for j in range(d):
            a0 = np.zeros(d)
            a0[j] = span ** (-j)
            _run_row(zeros, obs, fs, ks, gs, a0, states, innov)
            z[:, :, j] = states
            e[:, j] = innov
    else:
        z = np.empty((0, d, d))
        _unit_innovations(obs, fs, ks, span, e)
    es = e * sinv[:, None]
    mat = e.T @ es
    _, logdet = np.linalg.slogdet(mat)
    return Gains(u, obs, fs, ks, sinv, gs, var, es, np.linalg.inv(mat), float(logdet), z)


# ----------------------------------------------------------------------------- per series


@numba.njit(nogil=True, cache=True)
def _initial_state(es, minv, innov, b, s0):  # pragma: no cover - compiled
    """s0 = -minv @ (es.T @ innov): the initial-state correction of one row (work array b)."""
    n = innov.shape[0]
    d = minv.shape[0]
    for j in range(d):
        acc = 0.0
        for t in range(n):
            acc += es[t, j] * innov[t]
        b[j] = acc
    for i in range(d):
        acc = 0.0
        for j in range(d):
            acc -= minv[i, j] * b[j]
        s0[i] = acc


@numba.njit(nogil=True, cache=True)
def _smooth_rows(y, obs, u, fs, ks, gs, es, minv, z, order, scale, out, fitted):  # pragma: no cover
    """Per row: smoothed states (own run + Z s0), then the derivative of ``order`` times scale.

    Orders below d are state components; order >= d comes from the polynomial of degree
    2d-1 that the states at both ends of an interval determine (Hermite data), on the
    longer of the two intervals next to the sample.
    """
    rows, n = y.shape
    d = minv.shape[0]
    states = np.empty((n, d))
    innov = np.empty(n)
    a0 = np.zeros(d)
    b = np.empty(d)
    s0 = np.empty(d)
    want_fit = fitted.shape[0] == rows
    for r in range(rows):
        _run_row(y[r], obs, fs, ks, gs, a0, states, innov)
        _initial_state(es, minv, innov, b, s0)
        if want_fit:
            for t in range(n):
                acc = states[t, 0]
                for j in range(d):
                    acc += z[t, 0, j] * s0[j]
                fitted[r, t] = acc
        if order < d:  # only the wanted component gets the initial-state correction
            for t in range(n):
                acc = states[t, order]
                for j in range(d):
                    acc += z[t, order, j] * s0[j]
                out[r, t] = acc * scale
        else:
            for t in range(n):
                for i in range(d):
                    acc = states[t, i]
                    for j in range(d):
                        acc += z[t, i, j] * s0[j]
                    states[t, i] = acc
            # from the longer adjacent interval: its polynomial is the better conditioned
            for t in range(n):
                left = t > 0 and (t == n - 1 or u[t] - u[t - 1] > u[t + 1] - u[t])
                if left:
                    v = _hermite(states[t - 1], states[t], u[t] - u[t - 1], order, 1)
                else:
                    v = _hermite(states[t], states[t + 1], u[t + 1] - u[t], order, 0)
                out[r, t] = v * scale


@numba.njit(nogil=True, cache=True)
def _hermite(a, b, h, order, right):  # pragma: no cover - compiled
    """Derivative ``order`` at the left (right=0) or right end of the Hermite polynomial."""
    d = a.shape[0]
    if d == 2:
        d0 = b[0] - a[0] - a[1] * h
        d1 = b[1] - a[1]
        c2 = (3.0 * d0 - d1 * h) / (h * h)
        c3 = (d1 * h - 2.0 * d0) / (h * h * h)
        if order == 2:
            return 2.0 * c2 + 6.0 * c3 * h * right
        return 6.0 * c3
    # d == 3: quintic through (f, f', f'') at both ends
    d0 = b[0] - a[0] - a[1] * h - 0.5 * a[2] * h * h
    d1 = b[1] - a[1] - a[2] * h
    d2 = b[2] - a[2]
    c3 = (10.0 * d0 - 4.0 * d1 * h + 0.5 * d2 * h * h) / h**3
    c4 = (7.0 * d1 * h - 15.0 * d0 - d2 * h * h) / h**4
    c5 = (0.5 * d2 * h * h - 3.0 * d1 * h + 6.0 * d0) / h**5
    if order == 3:
        return 6.0 * c3 + right * (24.0 * c4 * h + 60.0 * c5 * h * h)
    return 24.0 * c4 + right * 120.0 * c5 * h


@numba.njit(nogil=True, cache=True)
def _innovation_rss_rows(y, obs, fs, ks, sinv, es, minv, out):  # pragma: no cover - compiled
    """Per row: GLS residual sum of squares of the standardised innovations (forward only)."""
    rows, n = y.shape
    d = minv.shape[0]
    a = np.empty(d)
    m = np.empty(d)
    b = np.empty(d)
    for r in range(rows):
        yr = y[r]
        for i in range(d):
            a[i] = 0.0
            b[i] = 0.0
        q = 0.0
        for t in range(n):
            if obs[t]:
                e = yr[t] - a[0]
                q += e * e * sinv[t]
                for j in range(d):
                    b[j] += es[t, j] * e
                for i in range(d):
                    m[i] = a[i] + ks[t, i] * e
            else:
                for i in range(d):
                    m[i] = a[i]
            if t < n - 1:
                _predict(fs, t, m, a)
        quad = 0.0
        for i in range(d):
            for j in range(d):
                quad += b[i] * minv[i, j] * b[j]
        out[r, 0] = q - quad


# below this many rows a batch runs row by row: one block of LANES lanes costs 1.1-1.3 rows
# of the row kernels (n = 1,000, d = 2 / 3 / 4: smoothing 52 / 72 / 105 us against 42 / 60 /
# 88 us a row, innovation sums 24 / 29 / 39 against 18 / 26 / 31 us)
LANES_MIN_ROWS = 2


def _lanes_for(g: Gains, rows: int) -> bool:
    """Whether a batch of ``rows`` runs on the lanes kernels (d = 2, 3 or 4, and enough rows
    to fill a block better than the row kernels would run them, ``LANES_MIN_ROWS``)."""
    return 2 <= g.d <= 4 and rows >= LANES_MIN_ROWS


def smooth(
    g: Gains, y: np.ndarray, order: int, scale: float, fitted: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Derivative of ``order`` times ``scale`` (rows, n) and optionally the fit, for rows y.

    y must hold finite values where ``g.obs`` (others are never read). Orders below d
    (state components) run LANES rows at a time (``_statespace_lanes.smooth_lanes``),
    higher ones row by row (:func:`smooth_into`).
    """
    rows, n = y.shape
    deriv = np.empty((rows, n))
    fit = np.empty((rows, n)) if fitted else None
    smooth_into(g, y, np.arange(rows), order, scale, deriv, fit)
    return deriv, fit


def smooth_into(
    g: Gains,
    y: np.ndarray,
    pick: np.ndarray,
    order: int,
    scale: float,
    deriv: np.ndarray,
    fit: np.ndarray | None,
) -> None:
    """:func:`smooth` of the rows ``pick`` of y (read in place) into the same rows of
    deriv and fit (arrays shaped like y), split over threads by rows."""
    n = y.shape[1]
    if order < g.d and _lanes_for(g, pick.shape[0]):
        fitarr = fit if fit is not None else np.empty((0, n))
        args = (g.obs, g.fs, g.ks, g.gs, g.es, g.minv, g.z, order, scale, deriv, fitarr)
        nt = min(_threads_for(pick.shape[0] * n), pick.shape[0])
        if nt <= 1:
            smooth_lanes(y, *args, pick)
            return
        cut = np.linspace(0, pick.shape[0], nt + 1).astype(int)
        futs = [
            _pool().submit(smooth_lanes, y, *args, pick[a:b])
            for a, b in zip(cut[:-1], cut[1:], strict=True)
            if b > a
        ]
        for f in futs:
            f.result()
        return
    ys = take_rows(y, pick)
    width = 2 * n if fit is not None else n
    both = np.empty((ys.shape[0], width))

    def kernel(y_, u_, fs_, ks_, gs_, es_, minv_, z_, out_):
        fit_ = out_[:, n:] if fit is not None else np.empty((0, n))
        der = out_[:, :n]
        _smooth_rows(y_, g.obs, u_, fs_, ks_, gs_, es_, minv_, z_, order, scale, der, fit_)

    run_rows(kernel, ys, both, g.u, g.fs, g.ks, g.gs, g.es, g.minv, g.z)
    deriv[pick] = both[:, :n]
    if fit is not None:
        fit[pick] = both[:, n:]


# the most bytes of gains (and their stacked copy) one pass of :func:`ml_search` holds
ML_GAINS_BYTES = 1 << 28


def ml_search(
    u: np.ndarray,
    obs: np.ndarray,
    d: int,
    ys: np.ndarray,
    grid: np.ndarray,
    resolution: float,
    rho_of: Callable[[float], float],
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ys (zeros where not ``obs``): the grid value (log10, mapped to the ratio by
    ``rho_of``) maximising the diffuse innovations likelihood profiled over the noise
    variance, and the innovations' residual sum of squares there (``grid_search``'s result).
    The criterion of ``kalman`` (its noise ratio) and of ``spline`` (its smoothing)."""
    dof = float(obs.sum()) - d

    last: dict[float, Gains] = {}  # the previous call's: neighbouring fine points overlap
    # gains of the likelihood (fs, ks, sinv, es) per grid value, and the stacked copy that
    # innovation_rss_many reads: the values of one pass over the rows are limited to
    # ML_GAINS_BYTES (all 25 coarse values of a 65,536-sample series took ~1 GiB)
    per_value = 2 * 8 * u.shape[0] * (d * d + 2 * d + 1)
    chunk = max(1, ML_GAINS_BYTES // per_value)

    def many(values: np.ndarray, sel: np.ndarray) -> tuple:
        scores, rsss = [], []
        for a in range(0, len(values), chunk):
            part = values[a : a + chunk]
            made = {}
            for v in map(float, part):
                made[v] = last[v] if v in last else gains(u, obs, d, rho_of(v), smoother=False)
            last.clear()
            last.update(made)
            gl = [made[float(v)] for v in part]
            rss = np.maximum(innovation_rss_many(gl, ys, sel), 1e-300).T  # (values, rows)
            const = np.array([gn.log_det_innovations() for gn in gl])[:, None]
            scores.append(-0.5 * (dof * np.log(rss / dof) + const))
            rsss.append(rss)
        return np.concatenate(scores), np.concatenate(rsss)

    def loglik(v: float, sel: np.ndarray) -> tuple:
        score, rss = many(np.array([v]), sel)
        return score[0], rss[0]

    return grid_search(grid, ys.shape[0], loglik, resolution, evaluate_many=many)


def innovation_rss(g: Gains, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row of y (or of ``y[rows]``, read in place): the GLS residual sum of squares of
    the standardised innovations (:func:`innovation_rss_many` for one set of gains)."""
    return innovation_rss_many([g], y, rows)[:, 0]


def innovation_rss_many(
    gl: list[Gains], y: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """(len(rows), len(gl)): :func:`innovation_rss` for every set of gains in ``gl`` (one
    NaN pattern), each block of rows read once for all of them (LANES rows at a time,
    ``_statespace_lanes.innovation_rss_lanes``)."""
    g = gl[0]
    pick = np.arange(y.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((pick.shape[0], len(gl)))
    if not _lanes_for(g, pick.shape[0]):
        ys = take_rows(y, pick)
        for i, gi in enumerate(gl):
            col = np.empty((pick.shape[0], 1))
            _innovation_rss_rows(ys, g.obs, gi.fs, gi.ks, gi.sinv, gi.es, gi.minv, col)
            out[:, i] = col[:, 0]
        return out
    stack = [np.stack([getattr(gi, k) for gi in gl]) for k in ("fs", "ks", "sinv", "es", "minv")]
    _run_picked(innovation_rss_lanes, y, out, pick, g.obs, *stack)
    return out


def _run_picked(kernel: Any, y: np.ndarray, out: np.ndarray, pick: np.ndarray, *args) -> None:
    """``kernel(y, *args, out, pick)`` over the rows ``pick`` of y (read in place), split
    over threads as :func:`run_rows` splits a batch."""
    nt = min(_threads_for(pick.shape[0] * y.shape[1]), pick.shape[0])
    if nt <= 1:
        kernel(y, *args, out, pick)
        return
    cut = np.linspace(0, pick.shape[0], nt + 1).astype(int)
    futs = [
        _pool().submit(kernel, y, *args, out[a:b], pick[a:b])
        for a, b in zip(cut[:-1], cut[1:], strict=True)
        if b > a
    ]
    for f in futs:
        f.result()


@numba.njit(nogil=True, cache=True)
def _fit_rss_rows(y, obs, fs, ks, gs, es, minv, z0, out):  # pragma: no cover - compiled
    """Per row: sum over observed samples of (y - smoothed f)**2, nothing else stored.

    The row-by-row reference of :func:`_fit_rss_lanes` (tests hold them equal).
    """
    rows, n = y.shape
    d = minv.shape[0]
    states = np.empty((n, d))
    innov = np.empty(n)
    a0 = np.zeros(d)
    b = np.empty(d)
    s0 = np.empty(d)
    for r in range(rows):
        yr = y[r]
        _run_row(yr, obs, fs, ks, gs, a0, states, innov)
        _initial_state(es, minv, innov, b, s0)
        rss = 0.0
        for t in range(n):
            if obs[t]:
                f = states[t, 0]
                for j in range(d):
                    f += z0[t, j] * s0[j]
                e = yr[t] - f
                rss += e * e
        out[r, 0] = rss


def fit_rss(g: Gains, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row of y (or of ``y[rows]``, read in place): the residual sum of squares of the
    smoothed fit over observed samples (LANES rows at a time, ``fit_rss_lanes``).

    y must hold finite values where ``g.obs`` (others are ignored).
    """
    pick = np.arange(y.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((pick.shape[0], 1))
    z0 = np.ascontiguousarray(g.z[:, 0, :])
    args = (g.obs, g.fs, g.ks, g.gs, g.es, g.minv, z0)
    if not _lanes_for(g, pick.shape[0]):
        _fit_rss_rows(take_rows(y, pick), *args, out)
    else:
        _run_picked(fit_rss_lanes, y, out, pick, *args)
    return out[:, 0]


# the end correction's coefficient is shrunk by max(0, 1 - END_SHRINK / t2), t2 its squared
# t statistic (positive-part shrinkage: none at all below t2 = END_SHRINK). Measured with
# benchmarks/auto_fit.py (ten signal families, 0.1-10 % noise, 101-401 samples; geometric
# mean RMSE of auto's septic spline, held-out draws): 0.04957 with the earlier weight
# t2 / (1 + t2), 0.04841 / 0.04772 / 0.04827 with END_SHRINK 1 / 2 / 4. For the quintic
# (at 1-10 % noise) 0.09284 -> 0.09411: one rule for both, the one auto uses.
END_SHRINK = 2.0


def end_correction(
    g: Gains, y: np.ndarray, order: int, scale: float, fitted: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`smooth` with the boundary bias of the natural spline removed at each end.

    The natural spline of degree 2d-1 reproduces polynomials of degree below 2d away from
    the ends but not at them (its derivatives d ... 2d-2 vanish there). Speckman's partial
    spline corrects this: with ``X = w**d`` (w the coordinate mapped to [-1, 1]) and S the
    smoother, the estimate is ``S y + (I - S) X beta`` where beta regresses the residual
    ``y - S y`` on ``(I - S) X``. ``(I - S) X`` lives near the ends, so each half of the
    range gets its own beta (two one-parameter regressions over disjoint samples); the
    derivative adds ``beta (D X - D S X)`` on that half. beta is shrunk by ``1 - END_SHRINK /
    t2`` (none below t2 = END_SHRINK), t2 its squared t statistic (noise variance from the
    regression's residual mean square): the correction's variance grows with the smoothing
    and outweighs the bias it removes where the ends are well determined (measured in
    ``auto``'s notes). Per series, not linear in y.
    """
    rows, n = y.shape
    d = g.d
    obs = g.obs
    u = g.u
    half = max(float(u[-1] - u[0]) / 2.0, 1e-300)
    w = (u - u[0]) / half - 1.0
    shape = w**d
    if order > d:
        dshape = np.zeros(n)
    else:
        fall = float(np.prod(np.arange(d - order + 1, d + 1)))  # d! / (d - order)!
        dshape = fall * w ** (d - order) / half**order
    if order == 0 and scale == 1.0 and not fitted:
        # the derivative of order 0 is the fit: smoothed once, and corrected in place (each
        # row's residuals are read before its correction is added)
        deriv = fit = smooth(g, y, 0, 1.0, False)[0]
    else:
        deriv, fit = smooth(g, y, order, scale, True)
    out_x, fit_x = smooth(g, np.where(obs, shape, 0.0)[None, :], order, scale, True)
    r_x = np.where(obs, shape - fit_x[0], 0.0)  # (I - S) X at the observed samples
    c_x = dshape * scale - out_x[0]  # D (I - S) X
    k = int(np.searchsorted(w, 0.0))  # u ascends: w < 0 on the first k samples
    norms = np.zeros(2)
    for i, side in enumerate((slice(0, k), slice(k, n))):
        rx = r_x[side]
        norm = float(rx @ rx)
        if norm > 1e-16 * float(shape[side] @ shape[side]):  # else S reproduces X: none
            norms[i] = norm
    dof = max(float(obs.sum()) - float(np.count_nonzero(norms)), 1.0)
    fit_y = fit if fitted else np.empty((0, n))
    fit_step = np.ascontiguousarray(shape - fit_x[0])
    args = (y, fit, obs, r_x, c_x, fit_step, k, norms, dof, END_SHRINK, deriv, fit_y)
    nt = min(_threads_for(rows * n), rows)
    cut = np.linspace(0, rows, nt + 1).astype(int)
    if nt <= 1:
        _end_correct_rows(0, rows, *args)
    else:
        futs = [
            _pool().submit(_end_correct_rows, a, b, *args)
            for a, b in zip(cut[:-1], cut[1:], strict=True)
            if b > a
        ]
        for f in futs:
            f.result()
    return deriv, (fit if fitted else None)


@numba.njit(nogil=True, cache=True)
def _end_correct_rows(
    r0, r1, y, fit, obs, r_x, c_x, fit_step, k, norms, dof, shrink, deriv, fit_y
):  # pragma: no cover
    """:func:`end_correction`'s regression, shrinkage and correction for rows r0:r1, one row
    at a time in one pass (numpy's passes over the whole batch before): per half of the
    range with ``norms > 0``, beta = resid . r_x / norm, the residual mean square after
    removing beta r_x, beta shrunk by its t statistic, then ``deriv += beta c_x`` and
    ``fit_y += beta fit_step`` (when fit_y has rows). The sums run in sample order (BLAS and
    einsum ordered them differently: results equal to ~1e-15 relative)."""
    n = y.shape[1]
    beta = np.zeros(2)
    for r in range(r0, r1):
        for i in range(2):
            beta[i] = 0.0
            if norms[i] > 0.0:
                lo, hi = (0, k) if i == 0 else (k, n)
                acc = 0.0
                for t in range(lo, hi):
                    if obs[t]:
                        acc += (y[r, t] - fit[r, t]) * r_x[t]
                beta[i] = acc / norms[i]
        acc = 0.0
        for t in range(n):
            if obs[t]:
                e = y[r, t] - fit[r, t]
                b = beta[0] if t < k else beta[1]
                e -= b * r_x[t]
                acc += e * e
        s2 = acc / dof
        for i in range(2):
            if norms[i] <= 0.0:
                continue
            b = beta[i]
            t2 = b**2 * norms[i] / max(s2, 1e-300)
            b = b * max(0.0, 1.0 - shrink / max(t2, 1e-300))
            lo, hi = (0, k) if i == 0 else (k, n)
            for t in range(lo, hi):
                deriv[r, t] += b * c_x[t]
            if fit_y.shape[0] > 0:
                for t in range(lo, hi):
                    fit_y[r, t] += b * fit_step[t]
    return deriv, fit_y


def smooth_by_ratio(
    u: np.ndarray,
    y2: np.ndarray,
    nan: np.ndarray,
    usable: np.ndarray,
    ratio: np.ndarray,
    d: int,
    order: int,
    scale: float,
    smoothed: bool,
    like: np.ndarray,
    correct_ends: bool = False,
) -> Output:
    """Smooth rows (rows, n) whose noise ratio (rows,) is set; rows sharing a ratio and a
    NaN pattern share one set of gains. Unusable rows (or ratios <= 0) come back NaN.
    ``correct_ends`` adds :func:`end_correction`. The result has the shape and dtype of
    ``like`` (the kernel's input y)."""
    rows, n = y2.shape
    deriv = np.empty((rows, n))
    fitted = np.empty((rows, n)) if smoothed else None
    idx = np.flatnonzero(usable & np.isfinite(ratio) & (ratio > 0))
    if idx.size < rows:  # rows without an estimate
        missing = np.ones(rows, dtype=bool)
        missing[idx] = False
        deriv[missing] = np.nan
        if fitted is not None:
            fitted[missing] = np.nan
    groups = group_rows(ratio[idx], nan[idx])

    def run(group: np.ndarray) -> None:
        r_idx = idx[group]
        obs = ~nan[r_idx[0]]
        gn = gains(u, obs, d, float(ratio[r_idx[0]]))
        if not correct_ends:  # unobserved samples are never read: no copy of the rows
            smooth_into(gn, y2, r_idx, order, scale, deriv, fitted)
            return
        ys = take_rows(y2, r_idx)
        if not obs.all():
            ys = np.where(obs, ys, 0.0)
        out, fit = end_correction(gn, ys, order, scale, smoothed)
        deriv[r_idx] = out
        if fitted is not None:
            fitted[r_idx] = fit

    # many groups (a smoothing chosen per series): groups run side by side, one thread each
    if len(groups) > 1 and _threads_for(rows * n) > 1:
        for f in [_pool().submit(run, group) for group in groups]:
            f.result()
    else:
        for group in groups:
            run(group)
    dt = like.dtype
    res = deriv.reshape(like.shape).astype(dt, copy=False)
    sm = fitted.reshape(like.shape).astype(dt, copy=False) if smoothed else None
    return Output(res, sm)
