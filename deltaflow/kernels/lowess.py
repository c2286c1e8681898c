"""LOWESS: locally weighted polynomial regression with robustness iterations.

Every point fits a degree-1 or degree-2 polynomial to the ``window`` samples around it
(the window shifts inward at the ends), weighted by a tricube kernel in x; the
derivative is the fitted polynomial's own derivative at the point (its coefficient), not
a finite difference of the smoothed curve. Irregular x is native. Robustness
iterations (Cleveland 1979) refit with bisquare weights of the residuals,
``(1 - (r / scale)^2)^2``, which tames outliers.

Chunk contract. A fit after t robustness iterations depends on residuals of the fits
around it, so a point's result reaches ``(iterations + 1) * (window // 2)`` samples per
side: that is the footprint. The residual scale (6 x the median absolute residual of the
first, non-robust fit, as in Cleveland's rule) is global, so ``choose`` computes it from
the whole series, with the automatic window, and every chunk then uses those values.
Cleveland re-estimates the scale at every iteration; holding it fixed at the first
fit's value is what lets a chunk reproduce the whole-series result exactly.

NaN gaps: with ``nan_policy='omit'`` missing samples get zero weight; a window with fewer
than ``degree + 1`` valid samples gives NaN there.

Speed. On uniform x every interior window has the same offsets, so its kernel times t**p
is one shared row (pairs of samples symmetric about the centre summed together) and the
end points keep one row each: the weighted sums vectorise. The first, non-robust fit
(every weight 1) is a linear filter of the window, computed once per call from x. Both
give the point-by-point fits' numbers up to rounding (~1e-13); irregular x fits point by
point.
"""

from __future__ import annotations

from typing import Any, Literal

import numba
import numpy as np
from pydantic import Field, field_validator

from ._bandwidth import _median, _nanmedian, choose_window, warn_at_cap
from ._localpoly import tricube, tricube_reach
from ._stencil import _pool, _threads_for, local_window_starts, run_rows
from ._xp import asarray_like, to_numpy
from .api import uniform_step
from .registry import MethodParams, MethodSpec, Output, register
from .savgol import _odd

# robustness scale = this many median absolute residuals (Cleveland's choice)
SCALE_MADS = 6.0
# below this fraction of the data's magnitude the residuals count as exact (no reweighting)
EXACT_RTOL = 1e-12


class LowessParams(MethodParams):
    """Parameters of ``lowess``."""

    window: int | None = Field(
        None,
        ge=3,
        description="odd span in samples; None chooses it per series from the data",
    )
    degree: Literal[1, 2] = Field(2, description="degree of the local polynomial")
    iterations: int = Field(2, ge=0, le=10, description="robustness (bisquare) iterations")
    max_window: int = Field(
        101, ge=3, description="odd upper bound of the automatic span (it sets the chunk halo)"
    )

    @field_validator("window", "max_window")
    @classmethod
    def _window_odd(cls, v: int | None) -> int | None:
        return _odd(v)


MIN_WINDOW = 3


def check_order(order: int, params: LowessParams) -> None:
    """ValueError unless the local polynomial has a derivative of ``order``."""
    if order > params.degree:
        raise ValueError(
            f"method 'lowess': order {order} needs degree >= {order}, got degree="
            f"{params.degree} (allowed orders 1..{params.degree})"
        )


# ----------------------------------------------------------------------------- kernel


@numba.njit(nogil=True, cache=True)
def _fit_point(yr, t, k, delta, use_delta, s, i, degree, omit):  # pragma: no cover
    """Weighted polynomial fit at point i: (c0, c1, c2, ok)."""
    w = t.shape[1]
    s0 = s1 = s2 = s3 = s4 = 0.0
    b0 = b1 = b2 = 0.0
    for j in range(w):
        v = yr[s + j]
        if omit and v != v:
            continue
        wt = k[i, j] * delta[s + j] if use_delta else k[i, j]
        if wt == 0.0:
            continue
        tj = t[i, j]
        wt1 = wt * tj
        wt2 = wt1 * tj
        s0 += wt
        s1 += wt1
        s2 += wt2
        b0 += wt * v
        b1 += wt1 * v
        if degree == 2:
            s3 += wt2 * tj
            s4 += wt2 * tj * tj
            b2 += wt2 * v
    return _solve(s0, s1, s2, s3, s4, b0, b1, b2, degree)


@numba.njit(nogil=True, cache=True)
def _solve(s0, s1, s2, s3, s4, b0, b1, b2, degree):  # pragma: no cover - compiled
    """Coefficients (c0, c1, c2, ok) of the weighted fit from its moments s_p and b_p."""
    if degree == 1:
        det = s0 * s2 - s1 * s1
        if not det > 1e-12 * s0 * s0:
            return np.nan, np.nan, np.nan, False
        return (s2 * b0 - s1 * b1) / det, (s0 * b1 - s1 * b0) / det, 0.0, True
    a00 = s2 * s4 - s3 * s3
    a01 = s2 * s3 - s1 * s4
    a02 = s1 * s3 - s2 * s2
    a11 = s0 * s4 - s2 * s2
    a12 = s1 * s2 - s0 * s3
    a22 = s0 * s2 - s1 * s1
    det = s0 * a00 + s1 * a01 + s2 * a02
    if not det > 1e-10 * s0 * s0 * s0:
        return np.nan, np.nan, np.nan, False
    c0 = (a00 * b0 + a01 * b1 + a02 * b2) / det
    c1 = (a01 * b0 + a11 * b1 + a12 * b2) / det
    c2 = (a02 * b0 + a12 * b1 + a22 * b2) / det
    return c0, c1, c2, True


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _window_sums(wts, wys, kp, s, degree):  # pragma: no cover - compiled
    """Moments of the window starting at s from its kernel rows kp (5, w): k t**p.

    wts (n,) are the samples' weights (zero for a skipped sample) and wys the weighted
    values (zero wherever the weight is). Reassociation lets the sums vectorise; they
    differ from the point-by-point loop of ``_fit_point`` by rounding only.
    """
    w = kp.shape[1]
    s0 = s1 = s2 = s3 = s4 = 0.0
    b0 = b1 = b2 = 0.0
    if degree == 1:
        for j in range(w):
            wv = wts[s + j]
            wy = wys[s + j]
            s0 += kp[0, j] * wv
            s1 += kp[1, j] * wv
            s2 += kp[2, j] * wv
            b0 += kp[0, j] * wy
            b1 += kp[1, j] * wy
    else:
        for j in range(w):
            wv = wts[s + j]
            wy = wys[s + j]
            s0 += kp[0, j] * wv
            s1 += kp[1, j] * wv
            s2 += kp[2, j] * wv
            s3 += kp[3, j] * wv
            s4 += kp[4, j] * wv
            b0 += kp[0, j] * wy
            b1 += kp[1, j] * wy
            b2 += kp[2, j] * wy
    return s0, s1, s2, s3, s4, b0, b1, b2


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _window_sums_symmetric(wts, wys, kp, s, degree):  # pragma: no cover - compiled
    """:func:`_window_sums` for a window centred on its point (uniform interior), whose
    kernel rows are even (p even) or odd (p odd) about the centre: samples are paired."""
    w = kp.shape[1]
    half = (w - 1) // 2
    c = s + half
    s0 = kp[0, half] * wts[c]
    b0 = kp[0, half] * wys[c]
    s1 = s2 = s3 = s4 = 0.0
    b1 = b2 = 0.0
    if degree == 1:
        for j in range(half):
            a = s + j
            e = s + w - 1 - j
            pw = wts[a] + wts[e]
            mw = wts[a] - wts[e]
            py = wys[a] + wys[e]
            my = wys[a] - wys[e]
            s0 += kp[0, j] * pw
            s1 += kp[1, j] * mw
            s2 += kp[2, j] * pw
            b0 += kp[0, j] * py
            b1 += kp[1, j] * my
    else:
        for j in range(half):
            a = s + j
            e = s + w - 1 - j
            pw = wts[a] + wts[e]
            mw = wts[a] - wts[e]
            py = wys[a] + wys[e]
            my = wys[a] - wys[e]
            s0 += kp[0, j] * pw
            s1 += kp[1, j] * mw
            s2 += kp[2, j] * pw
            s3 += kp[3, j] * mw
            s4 += kp[4, j] * pw
            b0 += kp[0, j] * py
            b1 += kp[1, j] * my
            b2 += kp[2, j] * py
    return s0, s1, s2, s3, s4, b0, b1, b2


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _filter_window(yr, lf, s, q):  # pragma: no cover - compiled
    """(c0, c_q) of the unweighted fit of the window starting at s, from its filter rows
    lf (3, w); c_q is 0 for q < 0."""
    w = lf.shape[1]
    c0 = 0.0
    cq = 0.0
    if q < 0:
        for j in range(w):
            c0 += lf[0, j] * yr[s + j]
    else:
        for j in range(w):
            v = yr[s + j]
            c0 += lf[0, j] * v
            cq += lf[q, j] * v
    return c0, cq


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _filter_row(yr, lf, start, q, c0, cq):  # pragma: no cover - compiled
    """The unweighted fits of one row on uniform x: c0 (n,) and, for q >= 0, c_q (n,).

    The interior's filter is shared, so it runs tap by tap over all interior points (each
    tap one vectorised pass, like a stencil); the end points use their own rows.
    """
    n = yr.shape[0]
    w = lf.shape[2]
    half = (w - 1) // 2
    m = n - 2 * half
    for i in range(m):
        c0[half + i] = lf[0, 0, 0] * yr[i]
    for j in range(1, w):
        cj = lf[0, 0, j]
        for i in range(m):
            c0[half + i] += cj * yr[j + i]
    if q >= 0:
        for i in range(m):
            cq[half + i] = lf[0, q, 0] * yr[i]
        for j in range(1, w):
            cj = lf[0, q, j]
            for i in range(m):
                cq[half + i] += cj * yr[j + i]
    for i in range(half):
        k = n - half + i
        a, b = _filter_window(yr, lf[1 + i], start[i], q)
        e, f = _filter_window(yr, lf[1 + half + i], start[k], q)
        c0[i] = a
        c0[k] = e
        if q >= 0:
            cq[i] = b
            cq[k] = f


@numba.njit(nogil=True, cache=True)
def _lowess_rows(
    y, t, k, kp, lf, start, reach, degree, iterations, scale, order, omit, out
):  # pragma: no cover
    """Robust local fits of every row of y (rows, n); out (rows, 2, n): derivative, smooth.

    ``kp`` (1 + 2 half, 5, w): on uniform x, the kernel times t**p of the interior windows
    (shared, row 0) and of the half points at each end (rows 1.., left then right), whose
    vectorised sums replace the point-by-point loop; (0, 5, w) on irregular x. ``lf`` (same
    rows, 3, w): the unweighted fits' coefficients as linear filters of the window, which
    the first (non-robust) fit uses where every sample counts.
    """
    rows, n = y.shape
    w = t.shape[1]
    half = (w - 1) // 2
    table = kp.shape[0] > 0
    delta = np.ones(n)
    fit = np.empty(n)
    fq = np.empty(n)
    wts = np.empty(n)
    wys = np.empty(n)
    for r in range(rows):
        yr = y[r]
        for j in range(n):
            delta[j] = 1.0
        gaps = False
        if omit:
            for j in range(n):
                if yr[j] != yr[j]:
                    gaps = True
        for it in range(iterations + 1):
            last = it == iterations
            if table and it == 0 and not gaps:  # every weight 1: linear filters
                q = order if last else -1
                _filter_row(yr, lf, start, q, fit, fq)
                if last:
                    for i in range(n):
                        out[r, 1, i] = fit[i]
                        if order == 1:
                            out[r, 0, i] = fq[i] / reach[i]
                        else:
                            out[r, 0, i] = 2.0 * fq[i] / (reach[i] * reach[i])
            elif table:  # the samples' weights and weighted values, as _fit_point skips
                for j in range(n):
                    v = yr[j]
                    wt = delta[j] if it > 0 else 1.0
                    if omit and v != v:
                        wt = 0.0
                    wts[j] = wt
                    wys[j] = wt * v if wt != 0.0 else 0.0
            for i in range(n):
                if table and it == 0 and not gaps:
                    break
                if table:
                    if i < half:
                        sums = _window_sums(wts, wys, kp[1 + i], start[i], degree)
                    elif i >= n - half:
                        row = 1 + half + i - (n - half)
                        sums = _window_sums(wts, wys, kp[row], start[i], degree)
                    else:
                        sums = _window_sums_symmetric(wts, wys, kp[0], start[i], degree)
                    c0, c1, c2, ok = _solve(*sums, degree)
                else:
                    c0, c1, c2, ok = _fit_point(yr, t, k, delta, it > 0, start[i], i, degree, omit)
                if not ok and it > 0:  # too few points kept their robustness weight
                    c0, c1, c2, ok = _fit_point(yr, t, k, delta, False, start[i], i, degree, omit)
                fit[i] = c0
                if last:
                    out[r, 1, i] = c0
                    if order == 1:
                        out[r, 0, i] = c1 / reach[i]
                    else:
                        out[r, 0, i] = 2.0 * c2 / (reach[i] * reach[i])
            if not last:
                sc = scale[r]
                for j in range(n):
                    u = (yr[j] - fit[j]) / sc
                    if u != u:
                        delta[j] = 0.0
                    elif abs(u) < 1.0:
                        delta[j] = (1.0 - u * u) ** 2
                    else:
                        delta[j] = 0.0


def _geometry(x: np.ndarray, window: int, degree: int) -> tuple[np.ndarray, ...]:
    """Scaled offsets t, tricube weights, on uniform x the kernel rows k t**p (p = 0..4)
    and linear filters of the interior and of each end point (none on irregular x), window
    starts and tricube radii, from x alone."""
    n = x.shape[0]
    if window > n:
        raise ValueError(f"lowess: window ({window}) exceeds the {n} samples of the series")
    half = (window - 1) // 2
    start = local_window_starts(n, half, window)
    dist = x[start[:, None] + np.arange(window)] - x[:, None]
    reach = np.max(np.abs(dist), axis=1) * tricube_reach(half)
    t = np.ascontiguousarray(dist / reach[:, None])
    k = tricube(t)
    kp = np.empty((0, 5, window))
    if uniform_step(x) is not None and n > 2 * half:
        # every interior window has the offsets (j - half) / (half + 1) (up to rounding:
        # exactly symmetric here); the half points at each end keep their own
        ends = np.r_[np.arange(half), np.arange(n - half, n)]
        tt = np.concatenate([(np.arange(window)[None, :] - half) / (half + 1.0), t[ends]])
        kk = np.concatenate([tricube(tt[:1]), k[ends]])
        kp = kk[:, None, :] * tt[:, None, :] ** np.arange(5)[None, :, None]
    return t, k, np.ascontiguousarray(kp), _filters(kp, degree), start, reach


def _filters(kp: np.ndarray, degree: int) -> np.ndarray:
    """Rows (m, 3, w) mapping a window's samples to the unweighted fit's (c0, c1, c2), from
    the kernel rows kp (m, 5, w); NaN where ``_solve`` would find the fit singular."""
    m, _, w = kp.shape
    lf = np.zeros((m, 3, w))
    if m == 0:
        return lf
    sp = kp.sum(axis=2)  # (m, 5) moments s_p with every weight 1
    sp[0, 1::2] = 0.0  # the centred window's odd moments vanish (exactly, by symmetry)
    d = degree + 1
    mat = sp[:, np.arange(d)[:, None] + np.arange(d)[None, :]]
    s0, s1, s2 = sp[:, 0], sp[:, 1], sp[:, 2]
    if degree == 1:
        ok = s0 * s2 - s1 * s1 > 1e-12 * s0 * s0
    else:
        s3, s4 = sp[:, 3], sp[:, 4]
        det = s0 * (s2 * s4 - s3 * s3) + s1 * (s2 * s3 - s1 * s4) + s2 * (s1 * s3 - s2 * s2)
        ok = det > 1e-10 * s0 * s0 * s0
    safe = np.where(ok[:, None, None], mat, np.eye(d))
    lf[:, :d] = np.linalg.solve(safe, kp[:, :d, :])
    lf[~ok] = np.nan
    return lf


def _run(
    y2: np.ndarray,
    x: np.ndarray,
    window: int,
    params: LowessParams,
    iterations: int,
    scale: np.ndarray,
    order: int,
) -> np.ndarray:
    """Robust local fits of y2 (rows, n) float64 with one window: (rows, 2, n)."""
    t, k, kp, lf, start, reach = _geometry(x, window, params.degree)
    out = np.empty((y2.shape[0], 2, y2.shape[1]))
    omit = params.nan_policy == "omit"
    args = (t, k, kp, lf, start, reach, params.degree, iterations)
    rows = y2.shape[0]
    nt = min(_threads_for(y2.size * window), rows)
    if nt <= 1:
        _lowess_rows(y2, *args, scale, order, omit, out)
        return out
    bounds = np.linspace(0, rows, nt + 1).astype(int)
    futs = [
        _pool().submit(_lowess_rows, y2[a:b], *args, scale[a:b], order, omit, out[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]
    for f in futs:
        f.result()
    return out


def _by_window(windows: Any, rows: int) -> list[tuple[int, np.ndarray | None]]:
    """(window, row indices or None for all rows) groups."""
    if np.ndim(windows) == 0:
        return [(int(windows), None)]
    flat = np.ravel(windows)
    values = np.unique(flat)
    if values.size == 1:
        return [(int(values[0]), None)]
    return [(int(w), np.flatnonzero(flat == w)) for w in values]


def _fill_gaps(y2: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Rows with NaNs linearly interpolated over x (ends held), for choosing the span only."""
    bad = np.isnan(y2)
    if not bad.any():
        return y2
    n = x.shape[0]
    idx = np.where(bad, -1, np.arange(n))
    prev = np.maximum.accumulate(idx, axis=1)
    nxt = np.where(bad, n, np.arange(n))
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]
    prev_c = np.where(prev < 0, nxt, prev).clip(0, n - 1)
    nxt_c = np.where(nxt >= n, prev_c, nxt).clip(0, n - 1)
    rows = np.arange(y2.shape[0])[:, None]
    y0, y1 = y2[rows, prev_c], y2[rows, nxt_c]
    x0, x1 = x[prev_c], x[nxt_c]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(x1 > x0, (x - x0) / (x1 - x0), 0.0)
    return np.where(bad, y0 + frac * (y1 - y0), y2)


def _choose(y: Any, x: np.ndarray, order: int, params: LowessParams, xp: Any) -> dict[str, Any]:
    """Per-series span and robustness scale (shape y.shape[:-1]) from whole series."""
    check_order(order, params)
    yh = np.asarray(to_numpy(y), dtype=np.float64)
    batch = yh.shape[:-1]
    y2 = yh.reshape(-1, yh.shape[-1])
    chosen: dict[str, Any] = {}
    if params.window is None:
        windows, _ = choose_window(
            _fill_gaps(y2, x), x, params.degree, order, MIN_WINDOW, params.max_window, "tricube"
        )
        warn_at_cap(windows, x.shape[0], params.max_window, "lowess")
        chosen["window"] = windows.reshape(batch)
    else:
        windows = params.window
    if params.iterations > 0:
        chosen["scale"] = _scale(y2, x, windows, params).reshape(batch)
    return chosen


def _scale(y2: np.ndarray, x: np.ndarray, windows: Any, params: LowessParams) -> np.ndarray:
    """SCALE_MADS times the median absolute residual of the non-robust fit, per row."""
    rows = y2.shape[0]
    med = np.empty(rows)
    size = np.empty(rows)
    omit = params.nan_policy == "omit"
    for w, idx in _by_window(windows, rows):
        part = y2 if idx is None else y2[idx]
        sel = slice(None) if idx is None else idx
        _, _, _, lf, start, _ = _geometry(x, w, params.degree)
        if lf.shape[0] > 0 and not (omit and np.isnan(part).any()):
            # uniform x, every weight 1: the fit's filters, residuals and their median
            # fused per row (the numbers of the general path below)
            out = np.empty((part.shape[0], 2))
            run_rows(_residual_median_rows, np.ascontiguousarray(part), out, lf, start)
            med[sel], size[sel] = out[:, 0], out[:, 1]
            continue
        fit = _run(part, x, w, params, 0, np.ones(part.shape[0]), 1)[:, 1]
        res = np.abs(part - fit)
        # (no warnings.catch_warnings here: it is not thread-safe, and blocks run on threads;
        # fmax.reduce is nanmax without its all-NaN warning)
        med[sel] = _nanmedian(res, axis=1)
        size[sel] = np.fmax.reduce(np.abs(part), axis=1)
    scale = SCALE_MADS * med
    # exact (noise-free) fits: no reweighting, as if the scale were infinite
    with np.errstate(invalid="ignore"):
        return np.where(scale > EXACT_RTOL * size, scale, np.inf)


@numba.njit(nogil=True, cache=True)
def _residual_median_rows(y, lf, start, out):  # pragma: no cover - compiled
    """Per row of y (rows, n): the median absolute residual of the unweighted fit (its
    filters lf, uniform x) and the largest absolute value, into out (rows, 2); NaNs
    ignored."""
    rows, n = y.shape
    res = np.empty(n)
    fit = np.empty(n)
    for r in range(rows):
        yr = y[r]
        nan = False
        size = 0.0
        _filter_row(yr, lf, start, -1, fit, fit)
        for i in range(n):
            v = abs(yr[i] - fit[i])
            res[i] = v
            if v != v:
                nan = True
            a = abs(yr[i])
            if a > size:
                size = a
        out[r, 0] = np.nanmedian(res) if nan else _median(res)
        out[r, 1] = size


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: LowessParams,
    chosen: dict[str, Any],
    xp: Any,
    smoothed: bool,
) -> Output:
    check_order(order, params)
    yh = np.asarray(to_numpy(y))
    dtype = yh.dtype
    n = yh.shape[-1]
    y2 = np.ascontiguousarray(yh.reshape(-1, n), dtype=np.float64)
    rows = y2.shape[0]
    if params.window is not None:
        windows: Any = params.window
    elif "window" in chosen:
        windows = np.asarray(to_numpy(chosen["window"]), dtype=np.int64)
    else:
        chosen = _choose(y, x, order, params, xp)
        windows = chosen["window"]
    if params.iterations > 0:
        if "scale" not in chosen:
            chosen = {**chosen, **_choose(y, x, order, params, xp)}
        scale = np.ascontiguousarray(np.ravel(to_numpy(chosen["scale"])), dtype=np.float64)
    else:
        scale = np.ones(rows)
    out = np.empty((rows, 2, n))
    for w, idx in _by_window(windows, rows):
        if idx is None:
            out = _run(y2, x, w, params, params.iterations, scale, order)
        else:
            out[idx] = _run(y2[idx], x, w, params, params.iterations, scale[idx], order)
    deriv = asarray_like(out[:, 0].reshape(yh.shape).astype(dtype, copy=False), xp)
    smooth = asarray_like(out[:, 1].reshape(yh.shape).astype(dtype, copy=False), xp)
    return Output(deriv, smooth if smoothed else None)


def _footprint(order: int, params: LowessParams) -> int:
    w = params.window if params.window is not None else params.max_window
    return (params.iterations + 1) * ((w - 1) // 2)


def _min_samples(order: int, params: LowessParams) -> int:
    return params.window if params.window is not None else MIN_WINDOW


SPEC = register(
    MethodSpec(
        name="lowess",
        summary="Locally weighted (tricube) polynomial fits with bisquare robustness.",
        params=LowessParams,
        max_order=2,
        apply=_apply,
        footprint=_footprint,
        choose=_choose,
        min_samples=_min_samples,
        irregular=True,
        nan_omit=True,
        gpu=False,
        has_smoothed=True,
    )
)
