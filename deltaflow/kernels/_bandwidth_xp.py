"""The automatic window of :mod:`_bandwidth` computed where the data live (CuPy).

``_bandwidth.choose_window`` runs numba loops over host rows; this is the same estimate
as whole-array steps over all rows at once, so GPU data need no trip to the host for it:
the noise from the same unit-norm differences (slice arithmetic) and their median
absolute deviation (a CUDA kernel, ``_cuda.median_mad``); the blocked polynomial fits as
one matrix product with the blocks' orthonormal bases and their sums of squares as
another; the roughness and the plug-in as elementwise work over (rows, blocks) and
(rows, windows). What depends on x alone comes from ``_bandwidth``'s caches. The numbers
equal the numba path's but for the fits' rounding (their sums run in another order), so
the windows agree except at exact ties of the plug-in; tests hold the two to each other
on NumPy, which this module also takes. NumPy keeps the numba rows: this whole-array form
took 3.1 s against their 0.36 s on 20,000 x 1,000 (2 cores), its medians being full sorts.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ._bandwidth import (
    NOISE_DIFF_ORDER,
    NOISE_MAD_SCALE,
    NOISE_SHARE,
    ROUGHNESS_FLOOR,
    _block_bases,
    _block_derivatives,
    _degree_blocks,
    _difference_weights,
    _key,
    bias_order,
    plugin_terms,
)
from ._xp import is_cupy


def _median_mad(e: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Per row of e (rows, m): the median and the median absolute deviation from it."""
    if is_cupy(xp):
        from . import _cuda

        if e.shape[-1] <= _cuda.MEDIAN_MAX:
            return _cuda.median_mad(e)
    nan = xp.any(xp.isnan(e), axis=-1)
    med = xp.where(nan, xp.nan, xp.median(e, axis=-1))
    return med, xp.where(nan, xp.nan, xp.median(xp.abs(e - med[:, None]), axis=-1))


def noise_sigma(y2: Any, x: np.ndarray, xp: ModuleType, m: int = NOISE_DIFF_ORDER) -> Any:
    """Robust noise standard deviation of each row of y2 (rows, n): (rows,), NaN for rows
    holding NaN (``_bandwidth.noise_sigma`` ignores those NaNs; the window of such rows is
    the smallest either way, their roughness being NaN)."""
    n = x.shape[0]
    m = min(m, n - 1)
    if m < 1:
        return xp.full((y2.shape[0],), xp.nan)
    a = _difference_weights(_key(x), m)  # (n - m, m + 1), unit norm
    if is_cupy(xp):
        from . import _cuda

        e = _cuda.window_sums(y2, a)
    else:
        e = None
        for i in range(m + 1):  # in tap order, as the numba rows add them
            term = xp.asarray(np.ascontiguousarray(a[:, i])) * y2[:, i : n - m + i]
            e = term if e is None else e + term
    _, mad = _median_mad(e, xp)
    return NOISE_MAD_SCALE * mad


def block_moments(y2: Any, x: np.ndarray, deg: int, nb_max: int, xp: ModuleType) -> tuple:
    """``_bandwidth.block_moments`` as two matrix products: z (rows, nk, deg + 1), the rows
    projected on every block's orthonormal basis, and ss (rows, nk), each block's sum of
    squares."""
    qmat, bounds = _block_bases(_key(x), deg, nb_max)  # (n, nk * ncoef), (nk, 2)
    n = x.shape[0]
    nk = bounds.shape[0]
    cols = np.arange(n)[:, None]
    member = ((cols >= bounds[:, 0]) & (cols < bounds[:, 1])).astype(np.float64)  # (n, nk)
    z = xp.matmul(y2, xp.asarray(qmat)).reshape(y2.shape[0], nk, deg + 1)
    ss = xp.matmul(y2 * y2, xp.asarray(member))
    return z, ss


def roughness(moments: tuple, x: np.ndarray, q: int, sigma: Any, xp: ModuleType) -> Any:
    """``_bandwidth.roughness`` from :func:`block_moments` (of at least this degree and
    number of blocks), every row at once: (rows,)."""
    n = x.shape[0]
    z, ss = moments
    rows = z.shape[0]
    deg, nb_max = _degree_blocks(n, q)
    if deg < q:
        return xp.full((rows,), xp.nan)
    ncoef = deg + 1
    factors, noise, split = _block_derivatives(_key(x), deg, q, nb_max)
    nk = split.shape[0]
    nb = int(split.max()) + 1
    zz = z[:, :nk, :ncoef]
    res = ss[:, :nk] - xp.sum(zz * zz, axis=-1)
    res = xp.where(res < 0.0, 0.0, res)
    d = xp.einsum("rkc,kic->rki", zz, xp.asarray(factors))
    onehot = xp.asarray((split[:, None] == np.arange(nb)).astype(np.float64))  # (nk, nb)
    rss = xp.matmul(res, onehot)  # per split, over its blocks
    raw = xp.matmul(xp.sum(d * d, axis=-1), onehot)
    s2 = sigma * sigma
    dof_max = n - nb * ncoef
    ref = rss[:, nb - 1] / dof_max if dof_max > 0 else xp.zeros_like(s2)
    ref = xp.where(xp.isnan(ref) | xp.isnan(s2), xp.nan, xp.maximum(ref, s2))
    b = np.arange(nb)
    cp_ = rss / ref[:, None] - xp.asarray((n - 2 * ncoef * (b + 1)).astype(np.float64))
    cp_ = xp.where(xp.isfinite(cp_), cp_, xp.inf)
    best = xp.argmin(cp_, axis=1)  # the first least, as the numba loop
    den = xp.where(raw > 0, raw, xp.inf)
    noise_d = xp.asarray(noise[:nb])
    ok = (s2[:, None] * noise_d / den <= NOISE_SHARE) & (xp.asarray(b)[None, :] <= best[:, None])
    # the largest split up to the best whose fits' noise is a small share of its sum
    last = nb - 1 - xp.argmax(ok[:, ::-1], axis=1)
    pick = xp.where(xp.any(ok, axis=1), last, -1)
    raw_b = xp.take_along_axis(raw, xp.maximum(pick, 0)[:, None], axis=1)[:, 0]
    corr = xp.where(pick >= 0, raw_b - s2 * noise_d[xp.maximum(pick, 0)], 0.0)
    v = ROUGHNESS_FLOOR * raw_b
    v = xp.where(xp.isnan(corr) | xp.isnan(v), xp.nan, xp.maximum(corr, v))
    return xp.where(xp.isfinite(sigma) & xp.isfinite(raw_b), v / n, xp.nan)


def plugin_window(
    sigma: Any,
    rough: Any,
    rough_end: Any,
    h: float,
    n: int,
    degree: int,
    deriv: int,
    wmin: int,
    wmax: int,
    xp: ModuleType,
    kernel: str = "uniform",
) -> Any:
    """``_bandwidth.plugin_window`` over a (rows, windows) table: the odd window of least
    plug-in MSE per row (the first on ties; ``wmin`` where any MSE is not finite)."""
    cands, var_c, bias_c, end_c, scales = plugin_terms(h, n, degree, deriv, wmin, wmax, kernel)
    var_c, bias_c, end_c = (xp.asarray(c) for c in (var_c, bias_c, end_c))
    k0, k1, k2 = (float(v) for v in scales)  # Python floats: no NumPy scalar meets CuPy
    s2 = sigma * sigma
    # the terms in the numba rows' order of operations
    v = s2[:, None] * var_c / k0 + rough[:, None] * bias_c * k1
    v = v + rough_end[:, None] * end_c * k2
    ok = xp.all(xp.isfinite(v), axis=1)
    pick = xp.argmin(xp.where(xp.isfinite(v), v, xp.inf), axis=1)
    return xp.where(ok, xp.asarray(cands)[pick], int(cands[0]))


def choose_window(
    y2: Any,
    x: np.ndarray,
    degree: int,
    deriv: int,
    wmin: int,
    wmax: int,
    xp: ModuleType,
    kernel: str = "uniform",
) -> tuple[Any, Any]:
    """``_bandwidth.choose_window`` of y2 (rows, n) float64 in namespace ``xp``: (windows
    (rows,) int64, noise sigma (rows,)), both in ``xp``."""
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN and 0/0 are handled as NaN
        return _choose_window(y2, x, degree, deriv, wmin, wmax, xp, kernel)


def _choose_window(y2, x, degree, deriv, wmin, wmax, xp, kernel):
    n = x.shape[0]
    wmax = max(wmin, min(wmax, n if n % 2 else n - 1))
    sigma = noise_sigma(y2, x, xp)
    q = bias_order(degree, deriv)
    qs = [q] if q == degree + 1 else [q, degree + 1]
    sizes = [_degree_blocks(n, v) for v in qs]
    moments = block_moments(y2, x, max(s[0] for s in sizes), max(s[1] for s in sizes), xp)
    rough = roughness(moments, x, q, sigma, xp)
    rough_end = rough if len(qs) == 1 else roughness(moments, x, qs[1], sigma, xp)
    h = float(x[-1] - x[0]) / (n - 1)
    windows = plugin_window(sigma, rough, rough_end, h, n, degree, deriv, wmin, wmax, xp, kernel)
    return windows, sigma
