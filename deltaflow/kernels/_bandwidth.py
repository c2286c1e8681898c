"""Automatic, derivative-targeted windows for local polynomial methods (savgol, lowess).

A window is chosen per series from the whole series, in three steps:

1. the noise standard deviation, robustly (median absolute deviation) from normalised
   divided differences of order 6, which annihilate quintics on any spacing;
2. the roughness R = mean(f^(q)(x)^2) of the derivative that drives the leading bias, from
   blocked polynomial fits of degree q + 2 (the number of blocks picked by Mallows' Cp,
   as in Ruppert, Sheather and Wand 1995, then fewer while the fits' noise makes up more
   than NOISE_SHARE of the estimate), corrected for the noise the fits carry, and taken
   as negligible when no block count tells it apart from the noise;
3. a plug-in of both into the mean squared error of the deriv-th derivative averaged over
   the whole series: at the n - 2*half interior points
   ``sigma^2 sum(c^2) / h^(2k) + R_q (sum(c j^q) / q!)^2 h^(2(q-k))`` from the method's own
   centred weights c, and at the half points per end the same terms from their shifted-
   window weights (bias order p + 1, no symmetric cancellation). It is evaluated for every
   odd candidate window (an exact search over the discrete filters rather than an
   asymptotic formula) and the minimiser is taken. Counting the ends matters: they carry
   the largest variance, and an interior-only rule picks windows the ends cannot bear.

The bias order q is the first polynomial degree above p whose term the centred fit does
not absorb: p + 1 when p + 1 - k is even, else p + 2 (symmetry cancels the other).
Everything is vectorised over series; the weights depend only on the window.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._localpoly import centre_weights, derivative_rows, end_weights
from ._noise import difference_weights

NOISE_DIFF_ORDER = 6
MAX_BLOCKS = 8
# the noise correction of the roughness keeps at least this fraction of the raw estimate
ROUGHNESS_FLOOR = 1e-3
# largest share of the raw roughness that the fits' noise may make up
NOISE_SHARE = 0.1


def bias_order(degree: int, deriv: int) -> int:
    """Degree q of the leading bias term for a centred fit of ``degree``, derivative ``deriv``."""
    return degree + 1 if (degree + 1 - deriv) % 2 == 0 else degree + 2


def _nanmedian(a: np.ndarray, axis: int = -1) -> np.ndarray:
    if not np.isnan(a).any():
        return np.median(a, axis=axis)  # vectorised; nanmedian goes row by row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def noise_sigma(y2: np.ndarray, x: np.ndarray, m: int = NOISE_DIFF_ORDER) -> np.ndarray:
    """Robust noise standard deviation of each row of y2 (rows, n) sampled at x (n,).

    Divided differences over m + 1 consecutive samples, scaled to unit norm, have the noise
    standard deviation as their own; the MAD makes outliers and NaNs (ignored) harmless.
    Returns (rows,); NaN for rows with fewer than m + 1 finite samples.
    """
    n = x.shape[0]
    m = min(m, n - 1)
    if m < 1:
        return np.full(y2.shape[0], np.nan)
    a = difference_weights(x, m)  # (n - m, m + 1), unit norm
    e = np.zeros((y2.shape[0], n - m))
    for i in range(m + 1):
        e += a[:, i] * y2[:, i : n - m + i]
    med = _nanmedian(e)
    mad = _nanmedian(np.abs(e - med[:, None]))
    return 1.482602218505602 * mad


def _split_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous, nearly equal blocks of range(n) as (start, stop) pairs."""
    size, extra = divmod(n, k)
    ends = np.cumsum([size + 1] * extra + [size] * (k - extra))
    return list(zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True))


def roughness(
    y2: np.ndarray, x: np.ndarray, q: int, sigma: np.ndarray, max_blocks: int = MAX_BLOCKS
) -> np.ndarray:
    """Mean square of the q-th derivative of each row's signal, from blocked fits (rows,).

    Rows with NaNs give NaN. The fits' own noise contribution (sigma^2 times the squared
    norm of the derivative operator) is subtracted, keeping at least ROUGHNESS_FLOOR of
    the raw value so that the estimate stays positive.
    """
    n = x.shape[0]
    rows = y2.shape[0]
    deg = q + 2
    if n < deg + 2:
        deg = n - 2
    if deg < q:
        return np.full(rows, np.nan)
    ncoef = deg + 1
    nb_max = max(1, min(max_blocks, n // (3 * ncoef)))
    # every block of every split (b + 1 blocks for b < nb_max) as columns of two sparse-
    # looking matrices, so that all fits of all rows are two matrix products: Q holds each
    # block's orthonormal polynomial basis (z = y Q gives the fit, the residual and, through
    # R, the coefficients), S each block's indicator (sums of squares)
    blocks = [(b, lo, hi) for b in range(nb_max) for lo, hi in _split_bounds(n, b + 1)]
    nk = len(blocks)
    qmat = np.zeros((n, nk * ncoef))
    smat = np.zeros((n, nk))
    grams = np.empty((nk, ncoef, ncoef))
    split = np.empty(nk, dtype=np.int64)
    noise = np.zeros(nb_max)
    for k, (b, lo, hi) in enumerate(blocks):
        xb = x[lo:hi]
        mid = 0.5 * (xb[0] + xb[-1])
        half = 0.5 * (xb[-1] - xb[0])
        t = (xb - mid) / half
        qm, rm = np.linalg.qr(t[:, None] ** np.arange(ncoef))
        qmat[lo:hi, k * ncoef : (k + 1) * ncoef] = qm
        smat[lo:hi, k] = 1.0
        dq = derivative_rows(t, deg, q) / half**q  # (L, ncoef)
        m = dq @ np.linalg.inv(rm)  # the q-th derivative of the fit is m @ z
        grams[k] = m.T @ m
        noise[b] += np.trace(grams[k])  # ||m Q^T||_F^2: the fit's noise in R, per sigma^2
        split[k] = b
    z = (y2 @ qmat).reshape(rows, nk, ncoef)
    ss = (y2 * y2) @ smat  # (rows, nk)
    proj = np.einsum("rkc,rkc->rk", z, z)
    raw_k = np.einsum("rkc,kcd,rkd->rk", z, grams, z, optimize=True)
    rss = np.zeros((nb_max, rows))
    raw = np.zeros((nb_max, rows))
    np.add.at(rss, split, np.maximum(ss - proj, 0.0).T)
    np.add.at(raw, split, raw_k.T)
    dof_max = n - nb_max * ncoef
    s2_ref = rss[-1] / dof_max if dof_max > 0 else np.zeros(rows)
    s2_ref = np.maximum(s2_ref, sigma**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cp = rss / s2_ref - (n - 2 * ncoef * np.arange(1, nb_max + 1))[:, None]
    cp = np.where(np.isfinite(cp), cp, np.inf)
    best = np.argmin(cp, axis=0)  # (rows,)
    # fewer blocks than Cp's choice while the fits' noise dominates the raw roughness
    share = sigma[None, :] ** 2 * noise[:, None] / np.where(raw > 0, raw, np.inf)
    blocks = np.arange(nb_max)[:, None]
    usable = (blocks <= best[None, :]) & (share <= NOISE_SHARE)
    found = usable.any(axis=0)
    best = np.where(found, nb_max - 1 - np.argmax(usable[::-1], axis=0), 0)
    pick = np.arange(rows)
    raw_b = raw[best, pick]
    # no block count tells the signal's derivative from the noise: treat it as negligible
    corr = np.where(found, raw_b - sigma**2 * noise[best], 0.0)
    r = np.maximum(corr, ROUGHNESS_FLOOR * raw_b) / n
    return np.where(np.isfinite(sigma) & np.isfinite(raw_b), r, np.nan)


def plugin_window(
    sigma: np.ndarray,
    rough: np.ndarray,
    rough_end: np.ndarray,
    h: float,
    n: int,
    degree: int,
    deriv: int,
    wmin: int,
    wmax: int,
    kernel: str = "uniform",
) -> np.ndarray:
    """The odd window in [wmin, wmax] minimising the plug-in MSE of each row (rows,) int64.

    The MSE is averaged over all n points: n - 2*half interior points with the centred
    weights (bias order q, roughness ``rough``) and half points at each end with their
    shifted-window weights (bias order degree + 1, roughness ``rough_end``), whose larger
    variance and uncancelled bias keep the window from growing past what the ends bear.
    Rows whose statistics are not finite get ``wmin``.
    """
    cands = np.arange(wmin, wmax + 1, 2)
    q = bias_order(degree, deriv)
    qe = degree + 1
    coef = np.empty((4, cands.size))  # interior var, interior bias, end var, end bias
    for i, w in enumerate(cands):
        half = int(w) // 2
        c = centre_weights(int(w), degree, deriv, kernel)
        j = np.arange(-half, half + 1, dtype=np.float64)
        e = end_weights(int(w), degree, deriv, kernel)  # (half, w)
        je = np.arange(w, dtype=np.float64)[None, :] - np.arange(half)[:, None]
        inner = n - 2 * half
        coef[0, i] = inner * np.sum(c**2)
        coef[1, i] = inner * (np.sum(c * j**q) / math.factorial(q)) ** 2
        coef[2, i] = 2.0 * np.sum(e**2)
        coef[3, i] = 2.0 * np.sum((np.sum(e * je**qe, axis=1) / math.factorial(qe)) ** 2)
    var = sigma[:, None] ** 2 * (coef[0] + coef[2]) / h ** (2 * deriv)
    bias = rough[:, None] * coef[1] * h ** (2 * (q - deriv))
    bias_end = rough_end[:, None] * coef[3] * h ** (2 * (qe - deriv))
    mse = var + bias + bias_end
    ok = np.all(np.isfinite(mse), axis=1)
    mse = np.where(np.isfinite(mse), mse, np.inf)
    pick = cands[np.argmin(mse, axis=1)]
    return np.where(ok, pick, wmin).astype(np.int64)


def choose_window(
    y2: np.ndarray,
    x: np.ndarray,
    degree: int,
    deriv: int,
    wmin: int,
    wmax: int,
    kernel: str = "uniform",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row plug-in window for y2 (rows, n) on increasing x: (windows, noise sigma).

    ``wmax`` is clipped to the largest odd number <= n (and never below ``wmin``).
    """
    n = x.shape[0]
    wmax = max(wmin, min(wmax, n if n % 2 else n - 1))
    sigma = noise_sigma(y2, x)
    q = bias_order(degree, deriv)
    rough = roughness(y2, x, q, sigma)
    rough_end = rough if q == degree + 1 else roughness(y2, x, degree + 1, sigma)
    h = float(x[-1] - x[0]) / (n - 1)
    windows = plugin_window(sigma, rough, rough_end, h, n, degree, deriv, wmin, wmax, kernel)
    return windows, sigma
