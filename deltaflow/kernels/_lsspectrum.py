"""Least-squares spectra for spectral differentiation on irregular x.

On a uniform grid the FFT of a series is its set of coordinates in an orthogonal basis of
harmonics. On an irregular grid the harmonics sampled at x are no longer orthogonal, so
spectral's irregular path fits them by least squares instead: the basis B (n, p) of one
extension is factored once per grid, and a series' coefficients are c = B^+ y, each harmonic
exactly where the FFT would put it (a sinusoid gives one line, not leakage into lower bins
as coordinates on an orthonormalised basis would). White noise of variance s^2 gives c
the covariance s^2 (B^T B)^-1; each coefficient divided by its own standard deviation has
variance s^2 as every FFT bin of a uniform series has the same noise power. Those
standardised coefficients, scaled to the FFT's conventions (a noise bin's mean power is m
s^2, m the nominal FFT length of the extension), are the bins: the noise floor, the cutoff
rule and the error estimates of :mod:`spectral` apply to them unchanged. The derivative
comes from the fit by the harmonics that the cutoff's gain reaches, fitted alone (on a
grid with gaps the full fit's low coefficients carry far more noise than the nested
fit's: sin over a period on 150 random samples, 1 % noise, 0.045 -> see spectral's notes),
each times its gain, as FFT bins are: D c, D the basis' derivatives at x.

Extensions, as on a uniform grid (``spectral.EXTENSIONS``): "periodic" (period the span
plus one mean step: right where the step across the wrap is the mean step, as on a jittered
uniform grid), "closed" (period the span: the last sample is the first one period on),
and "reflect" (the detrended series' odd reflection about both ends: a sine series on the
span). The harmonics fitted stop at ``FIT_SHARE`` of the nominal Nyquist frequency of the
mean step, lower where the basis would be ill-conditioned on this grid (``COND_MAX``, gaps):
an irregular grid resolves less than its mean step suggests.

Cost: O(n p^2) per grid and extension (cached, least recently used first out, within
``CACHE_BYTES``: the orthonormal factor and R^-1, 8 n p + 8 p^2 bytes, 37 MB at 2,048
samples), O(n p) per series and extension; the path is dense, so it is limited to
``MAX_SAMPLES`` per series.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

# the harmonics fitted reach at most this share of the nominal Nyquist frequency (of the
# mean step); fewer where the basis' estimated condition number would pass COND_MAX
FIT_SHARE = 2.0 / 3.0
# largest condition number of the basis (estimated, see _plan). On a grid with gaps the
# full fit's low coefficients drown in the noise of the columns the grid barely tells
# apart. Measured with sin over a period at 1 / 5 / 10 % noise, orders 1 and 2, 200 series
# per case, on benchmarks/irregular.py's three grids (18 cases; geometric mean of the
# interior relative RMSE of spectral / auto): 3 -> 0.054 / 0.0205, 2 -> 0.045 / 0.0184,
# 1.5 -> 0.048 / 0.0200; on the random grid at 10 %, order 1, auto 0.127 (3) -> 0.051 (2).
# Neither 3 nor 2 binds on the warped and jittered grids. (Bins from the nested orthonormal
# coordinates instead of the standardised coefficients gave 0.032 / 0.0176, but a harmonic
# leaks into the coordinates below it there, so a band holding a line looked like signal
# lost and noise-free periodic series took the reflection.) Earlier, 20 series per case on
# 150 random samples, sin / exp / sin over 3/4 period at 1 and 5 %: 30 -> 0.107 / 0.038 /
# 0.17, 4 -> 0.023 / 0.044 / 0.11, 3 -> 0.014 / 0.046 / 0.098.
COND_MAX = 2.0
# longest series the least-squares path takes (its factors are dense: 8 n p bytes each)
MAX_SAMPLES = 2048
# the plans kept (least recently used dropped first) hold at most this many bytes; auto on
# one irregular grid uses up to nine (three extensions of the series and of either half)
CACHE_BYTES = 1 << 28
_CACHE: OrderedDict[tuple[bytes, str, float | None], Plan] = OrderedDict()
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Plan:
    """One grid's least-squares spectrum of one extension.

    ``q`` (n, p) and ``rinv`` (p, p): the basis B = q R with R^-1 (upper triangular); the
    columns come in order of frequency, so the fit by the first j columns has the
    coefficients (y @ q[:, :j]) @ rinv[:j, :j].T (:func:`coefficients`); ``coord_bin`` (p,): the
    bin of each coefficient; ``scale`` (p,): bin value per unit coefficient (the FFT scale
    over the coefficient's noise standard deviation); ``m``: the extension's nominal FFT
    length; ``nb``: bins (0..nb-1); ``omega`` (nb,): angular frequency of each bin (rad per
    unit of x); ``complex_pairs``: coefficients come in (cos, sin) pairs per bin (periodic,
    closed) rather than one sine each (reflect); ``x0``: the grid's first x, where every
    harmonic's phase starts.
    """

    q: np.ndarray
    rinv: np.ndarray
    coord_bin: np.ndarray
    scale: np.ndarray
    m: int
    nb: int
    omega: np.ndarray
    complex_pairs: bool
    x0: float


def nominal_length(n: int, kind: str) -> int:
    """The FFT length the extension would have on a uniform grid of n samples."""
    return {"periodic": n, "closed": n - 1, "reflect": 2 * (n - 1)}[kind]


def _columns(t: np.ndarray, omega: np.ndarray, pairs: bool, order: int) -> np.ndarray:
    """The basis (or its order-th derivative) at t: (n, p), columns in order of frequency.

    ``pairs``: a constant, then cos and sin per frequency of ``omega[1:]``; otherwise one sine
    per frequency of ``omega[1:]``. d^o/dt^o cos(w t) = w^o cos(w t + o pi / 2), same for sin.
    """
    shift = order * np.pi / 2.0
    w = omega[1:]
    arg = t[:, None] * w[None, :] + shift
    amp = w[None, :] ** order
    if not pairs:
        return amp * np.sin(arg)
    out = np.empty((t.shape[0], 2 * w.shape[0] + 1))
    out[:, 0] = 1.0 if order == 0 else 0.0
    out[:, 1::2] = amp * np.cos(arg)
    out[:, 2::2] = amp * np.sin(arg)
    return out


def period_of(x: np.ndarray, kind: str, period: float | None = None) -> float:
    """The extension's period in units of x (for "reflect": twice the span); ``period``
    given: that one."""
    if period is not None:
        return float(period)
    span = float(x[-1] - x[0])
    n = x.shape[0]
    if kind == "periodic":
        return span * n / (n - 1)
    if kind == "closed":
        return span
    return 2.0 * span


def _plan(xkey: bytes, kind: str, period: float | None) -> Plan:
    x = np.frombuffer(xkey)
    n = x.shape[0]
    m = nominal_length(n, kind)
    pairs = kind != "reflect"
    t = x - x[0]
    w0 = 2.0 * np.pi / period_of(x, kind, period)
    top = max(1, int(FIT_SHARE * (m // 2)))
    if period is not None:  # harmonics up to the mean step's share of Nyquist, in this period
        step = (x[-1] - x[0]) / (n - 1)
        top = max(1, int(FIT_SHARE * period / (2.0 * step)))
    top = min(top, (n - 1) // 2 if pairs else n)
    omega = w0 * np.arange(top + 1)
    q, r = np.linalg.qr(_columns(t, omega, pairs, 0))
    # the columns come in order of frequency, and R's and R^-1's leading blocks are the
    # factors of the leading columns: their Frobenius norms, accumulated column by column,
    # give every leading block's condition number (kappa_F / p, which is 1 for orthogonal
    # columns and within a factor p of kappa_2) from one factorisation; the harmonics stop
    # before it passes COND_MAX
    rinv_all = solve_triangular(r, np.eye(r.shape[0]))
    cols = np.arange(1, r.shape[0] + 1)
    kappa = np.sqrt(np.cumsum(np.sum(r * r, axis=0)) * np.cumsum(np.sum(rinv_all**2, axis=0)))
    bad = np.flatnonzero(kappa / cols > COND_MAX)
    p = int(bad[0]) if bad.size else r.shape[0]
    top = max(1, (p - 1) // 2 if pairs else p)
    p = 2 * top + 1 if pairs else top
    q, omega = q[:, :p], omega[: top + 1]
    rinv = np.ascontiguousarray(rinv_all[:p, :p])
    sd = np.sqrt(np.sum(rinv * rinv, axis=1))  # noise sd of each coefficient, per unit s
    if pairs:
        coord_bin = np.r_[0, np.repeat(np.arange(1, top + 1), 2)]
        scale = np.r_[np.sqrt(m), np.full(2 * top, np.sqrt(m / 2.0))] / sd
    else:
        coord_bin = np.arange(1, top + 1)
        scale = np.sqrt(float(m)) / sd
    q = np.ascontiguousarray(q)
    for a in (q, rinv, coord_bin, scale, omega):
        a.setflags(write=False)
    return Plan(q, rinv, coord_bin, scale, m, top + 1, omega, pairs, float(x[0]))


def plan(x: np.ndarray, kind: str, period: float | None = None) -> Plan:
    """The least-squares spectrum of extension ``kind`` on the grid x (cached per grid);
    ``period``: the period of the harmonics where it is known (else from x and kind)."""
    n = x.shape[0]
    if n > MAX_SAMPLES:
        raise ValueError(
            f"method 'spectral' on irregular x (or with a period given) takes at most "
            f"{MAX_SAMPLES} samples per series (a dense least-squares fit); got {n}: resample "
            "x to a uniform grid, or use "
            "'spline' or 'kalman'"
        )
    period = None if period is None else float(period)
    key = (np.ascontiguousarray(x, dtype=np.float64).tobytes(), kind, period)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    made = _plan(*key)  # outside the lock: threads on other grids need not wait
    with _CACHE_LOCK:
        _CACHE[key] = made
        _CACHE.move_to_end(key)
        total = sum(_nbytes(v) for v in _CACHE.values())
        while total > CACHE_BYTES and len(_CACHE) > 1:
            total -= _nbytes(_CACHE.popitem(last=False)[1])
    return made


def _nbytes(pl: Plan) -> int:
    return pl.q.nbytes + pl.rinv.nbytes


def deriv_map(x: np.ndarray, pl: Plan, order: int) -> np.ndarray:
    """(p, n): coefficients to the order-th derivative at x of the fit they define (order
    0: the fit itself). Formed per call (O(n p) cosines), not cached: it is as large as the
    plan."""
    t = np.asarray(x, dtype=np.float64) - pl.x0
    return np.ascontiguousarray(_columns(t, pl.omega, pl.complex_pairs, order).T)


def coefficients(y2: np.ndarray, pl: Plan, cols: int | None = None) -> np.ndarray:
    """(rows, cols): each row's least-squares coefficients of the first ``cols`` columns of
    the basis (all when None), fitted by those columns alone."""
    p = pl.q.shape[1] if cols is None else cols
    return (y2 @ pl.q[:, :p]) @ pl.rinv[:p, :p].T


def columns_through(pl: Plan, k: np.ndarray) -> np.ndarray:
    """How many leading columns hold the bins 0..k (k (rows,) ints; at least 1)."""
    cols = np.searchsorted(pl.coord_bin, np.asarray(k), side="right")
    return np.clip(cols, 1, pl.q.shape[1])


def bins(z: np.ndarray, pl: Plan) -> np.ndarray:
    """Complex bins (rows, nb) of coefficients z, scaled like an rfft of length ``pl.m``."""
    rows = z.shape[0]
    s = z * pl.scale
    out = np.zeros((rows, pl.nb), dtype=np.complex128)
    if pl.complex_pairs:
        out[:, 0] = s[:, 0]
        out[:, 1:] = s[:, 1::2] - 1j * s[:, 2::2]
    else:
        out[:, 1:] = -1j * s
    return out


def residual_beyond(y2: np.ndarray, pl: Plan, keep: np.ndarray) -> np.ndarray:
    """Per row (rows,): the residual sum of squares of the least-squares fit of y2 (rows, n)
    by the harmonics of bins 0..keep (rows,) (clipped to the plan's)."""
    z = y2 @ pl.q
    tail = np.sum(y2 * y2, axis=1)[:, None] - np.cumsum(z * z, axis=1)
    cols = columns_through(pl, keep)
    return np.maximum(tail[np.arange(y2.shape[0]), cols - 1], 0.0)
