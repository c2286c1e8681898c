"""Spectral (FFT) differentiation with a tapered low-pass cutoff.

The derivative of order m multiplies each Fourier coefficient by (i omega)**m. Noise is
white, so its share of the spectrum is flat while a smooth signal's falls off quickly; a
low-pass gain (1 up to ``cutoff``, a raised-cosine roll-off to 0 after it) keeps the signal
and drops the noise that differentiation would amplify.

The FFT needs a periodic series; ``EXTENSIONS`` are the ways to make one. "periodic": the
series is one period (x without the repeated end point, period n*h). "closed": the last
sample repeats the first (x = linspace(a, b, n) over whole periods, period (n-1)*h).
"reflect": the series loses a least-squares polynomial trend (degree ``detrend``) and then
the line through its ends, so that the odd reflection of what is left is a smooth periodic
function; the removed polynomial and line are differentiated analytically. ``periodic``
True / False forces the first / the last; None (the default) chooses per series and
records the choice (``chosen["extension"]``, the index into ``EXTENSIONS``):

- a periodic extension is a candidate only where it continues smoothly across the wrap
  (value and slope from quadratic fits on either side agree within ``WRAP_Z`` times their
  typical interior deviation; up to ``WRAP_Z_SOFT`` with its estimated error counted
  ``SOFT_PENALTY`` times), and only the one of the two whose period leaves the smaller
  residual with the same harmonics (the wrong period puts the lines between bins);
- the candidate is used where its estimated derivative error, the criterion that picks
  the cutoff, is below the reflection's (with ``PERIODIC_MARGIN``).

With ``cutoff=None`` each series gets its own cutoff (per extension): the one that
maximises the estimated gain of keeping bins, sum over kept bins of (power minus
``THRESHOLD`` times the noise floor) times omega**(2m), the floor being the median power of
the top half of the spectrum.

Measured (benchmarks/auto_ratio.py --peers --method spectral: the signals and noise of
benchmarks/peers.py at 1-10 %, one series each, RMSE over that of the best oracle-tuned
peer, geometric means, interior / whole range): order 1 3.45 / 4.07 with the reflection
always, 1.31 / 1.33 with the extension chosen; order 2 4.94 / 6.21 -> 1.28 / 1.23. On
sin over whole periods the chosen extension is exact without noise (1e-16, was 3e-6) and
at 1 % noise gives 2.4e-3 (was 2.8e-2). Misfires measured (20 series per case, 101-401
samples, two seeds): none on exp, Black-Scholes, damped oscillator, cos over 3/4 period or
a cubic at 0-3 % noise, one series in 20 (cos, 101 samples) at 10 %; where a kink or jump
at the wrap is hidden by the noise (sin over half a period; sin plus a slope of 5 % of its
amplitude per radian), a periodic extension is taken for up to 5 % of series at 3 % noise
and 5-60 % at 10 %.

Cost of the choice (2000 series of 1000 samples, best of 5, against ``periodic=False`` in
the same process): 1.0-1.2x on series that fail the wrap test (exp), 1.6-1.7x on series
that pass it (sin over a period: two more FFTs and their error estimates). For n a power
of two the reflection's FFT length 2(n-1) has the factor n-1, a Mersenne number (8191 is
prime): pocketfft's rfft of 16382 points took 6.5x that of 16384 here, spectral as a whole
about 2x at n = 8192 against 8193. There is no exact way round it: every periodic extension
of the reflection has a period that is a multiple of (n-1) samples.

Irregular x (:mod:`_lsspectrum`): the harmonics of each extension are fitted by least
squares instead of an FFT, and their coefficients, each standardised by its own noise
deviation and put on the FFT's scale, are the bins that the rules above read; the wrap
test fits its quadratics in x (:mod:`_spectral_wrap`), and "closed" and "periodic"
are told apart by the residuals of their least-squares fits. The derivative comes from the
fit by the harmonics the cutoff reaches, fitted alone. ``period`` given (units of x), the
same least-squares path fits the harmonics of that period on any grid, uniform or not,
whole periods or not. The harmonics reach 2/3 of the
Nyquist frequency of the mean step, fewer where the grid cannot resolve them (gaps), and
series are limited to ``_lsspectrum.MAX_SAMPLES``. Measured with benchmarks/irregular.py
(20 series per case, interior relative RMSE, order 1, at 1 / 5 / 10 % noise): sin over a
period on peers.py's warped grid (201 samples, spacing varying 2.3x) 0.0027 / 0.014 / 0.061
against the spline's 0.014 / 0.038 / 0.069 (auto 0.0027 / 0.014 / 0.036), on 150 uniformly
random samples 0.0034 / 0.017 / 0.093 against 0.014 / 0.043 / 0.076 (auto 0.0038 / 0.017 /
0.064); without noise 3e-16. Non-periodic series (exp(x / 3), sin(3x / 4)) take the
reflection, 1.1-5.3x the spline's error (interior), and auto leaves them to the spline
(spectral picked for 0-5 % of them).

The reflection's trend (the polynomial and the line through the ends of what it leaves) is
one rank detrend + 3 map (:func:`_trend_matrices`), two passes over the batch where there
were seven array-sized temporaries, and its derivative is formed only in the apply: on 2000
series of 1000 samples (sin + 1 % noise, best of 5, same session) spectral with
periodic=False 0.190 -> 0.185 ms/series, with the cutoff given 0.105 -> 0.080; results
equal to 2.5e-14 of the largest value (orders 1-3, n = 64-1000).

The choice's per-series steps (the band medians, the cutoff rule, the error estimate, the
wrap fits, the power) run compiled on NumPy batches (``_spectral_kernels``), one row at a
time in cache instead of as batch-sized temporaries: on 2000 series of 1000 samples at 1 %
noise (best of 3 x 5, both versions in one session) spectral with automatic choices took
337 -> 140 us per series on sin over a period (three extensions compared) and 189 -> 118
on exp (the reflection only); choices and derivatives bit-identical on 40,000 series (n =
9-1000, five signals, 0-10 % noise, orders 1-2, rows with a NaN).
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

import numpy as np
from numpy.polynomial import legendre
from pydantic import Field

from . import _lsspectrum as _ls
from . import _spectral_kernels as _sk
from ._noise import _median
from ._spectral_wrap import wrap_mismatch as _wrap_mismatch
from ._stencil import run_rows
from ._xp import asarray_like, is_numpy, scipy_for, to_numpy
from .api import uniform_step
from .registry import MethodParams, MethodSpec, Output, register

# a bin is kept when its power exceeds this many times the noise floor (on average over the
# kept band); 2 would be the unbiased rule, higher values guard against chi-square noise
# peaks, which cost more the higher the order (measured on sin/exp/Black-Scholes/two-tone
# series at 1-10 % noise against the best cutoff in hindsight)
THRESHOLD = {1: 4.0, 2: 9.0}
# where the chosen bin sits in the roll-off: its midpoint (as a fraction of the roll-off)
# for a spectrum that falls off smoothly, its start (full gain) where the chosen bin is a
# line (power above LINE times the floor and both neighbours below 1 / LINE of it or, for a
# periodic extension, below LINE_SIDE times the floor: a sinusoid, which a half gain would
# halve; a strong bin of a smooth spectrum has strong neighbours)
# For a periodic extension no line at or below the chosen bin is rolled off: the roll-off
# starts at the highest of them at the latest. Measured (100 series per case, 101-1,000
# samples, 0.1-10 % noise, sin / two tones / three tones / exp, interior RMSE): geometric
# mean 0.87x for spectral and for auto, down to 0.06x (two tones, 1,000 samples, 0.1 %),
# none worse by more than 0.8 %.
ROLLOFF = 0.5
LINE_SIDE = 10.0
# a bin this many times the noise floor is signal even when its neighbours are not (the
# chance that a chi-square noise bin reaches it is below 1e-7)
LINE = 30.0
# a periodic extension is considered only where the value and slope at the wrap agree from
# both sides within this many of their typical interior deviations (see _spectral_wrap).
# 4 took a periodic extension for 20-65 % of the series above with a hidden kink at 10 %
# noise, 3 for 5-60 %, at the same acceptance of periodic series (auto_ratio 401 samples:
# 1.19 / 1.38 at 4, 1.11 / 1.33 at 3, 1.13 / 1.39 at 2.5)
WRAP_Z = 3.0
# between WRAP_Z and WRAP_Z_SOFT a periodic extension still competes, but its estimated
# error counts SOFT_PENALTY times: the wrap test rejects 1.5-3 % of periodic series by
# chance (its scale is a median over few, overlapping fits), each then 2-30x less accurate
# with the reflection, while a real kink at the wrap also shows in the periodic spectrum
# (leakage). Measured (200 series per case, RMSE pooled, interior, against WRAP_Z alone):
# sin over a period on 101 samples at 1 / 5 / 10 % noise, periodic for 94-95 -> 97 % of
# series, order 1 0.0178 / 0.036 / 0.084 -> 0.0155 / 0.034 / 0.078, order 2 0.048 / 0.080 /
# 0.131 -> 0.034 / 0.067 / 0.085; hidden kinks at 10 % noise (half a sin period, sin plus a
# slope, cos over 3/4 period) taken periodic for 14 / 39 / 6 -> 33 / 57 / 12 % of series,
# RMSE -4 to +4 % (half period, slope) and +6 / +16 % (cos 3/4, orders 1 / 2); none of
# exp, Black-Scholes or the damped oscillator changed.
WRAP_Z_SOFT = 4.5
SOFT_PENALTY = 10.0
# a band's median power counts as signal (lost by a cutoff, or unresolved) only this many
# standard errors above the noise floor
BAND_Z = 3.0
# a periodic extension's single-bin bands (the lowest bins, one band each) count as signal
# only where a noise bin would get there for at most this fraction of series, over all of
# them together: one bin at BAND_Z standard errors is reached by chance for ~1 series in 40,
# and with 3-10 such bins a noise peak below the cutoff made the reflection win on periodic
# series. Measured (200 series per case, RMSE pooled, interior): sin over a period on 101
# samples at 1 / 5 / 10 % noise, order 1 0.0182 / 0.040 / 0.089 -> 0.0178 / 0.036 / 0.084,
# order 2 0.054 / 0.094 / 0.144 -> 0.048 / 0.080 / 0.131; two-frequency (201) at 1 %, order 1
# 0.0177 -> 0.0136; the hidden-kink series of the module notes at 10 % noise taken periodic
# for 9 -> 14 % (half period) and 32 -> 39 % (slope), RMSE up by 6-7 % there.
SINGLE_BIN_FW = 0.01
# a periodic extension (one that passed the wrap tests) is used unless its estimated error
# exceeds the reflection's by more than 1 / (1 + PERIODIC_MARGIN): the reflection's estimate
# is optimistic, as it leaves out the leakage from the kinks of the reflected series when
# it is below the noise in every band (measured on periodic series at 1-10 % noise: taken
# for 75-100 % of them with -0.5, fewer and at no gain on the others with 0)
PERIODIC_MARGIN = -0.5


# medians of chi-square variables with 1 and 2 degrees of freedom, over their means
_CHI2_1_MEDIAN = 0.454936423119572
_CHI2_2_MEDIAN = float(np.log(2.0))
# relative standard error of the median of N chi-square bins (1 or 2 degrees of freedom),
# times sqrt(N): 1 / (2 pdf(median) sqrt(N)) over the median
_MEDIAN_RSE = {1: 2.33, 2: 1.44}


class SpectralParams(MethodParams):
    """Parameters of ``spectral``."""

    cutoff: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="highest frequency passed at full gain, as a fraction of the Nyquist "
        "frequency (None: chosen per series from its power spectrum and noise level)",
    )
    taper: float = Field(
        0.5,
        ge=0.0,
        le=2.0,
        description="width of the raised-cosine roll-off after the cutoff, as a fraction "
        "of the cutoff (0: brick wall)",
    )
    periodic: bool | None = Field(
        None,
        description="True: each series is one period (x without the repeated end point); "
        "False: detrend and reflect each series before the FFT; None: per series, the "
        "extension (reflection, period n*h, or period (n-1)*h with the last sample "
        "repeating the first) with the least estimated derivative error",
    )
    period: float | None = Field(
        None,
        gt=0.0,
        description="the series' period in units of x, where it is known: the harmonics of "
        "that period are fitted by least squares on any grid (x need not be uniform or cover "
        "whole periods); implies periodic=True",
    )
    detrend: int = Field(
        3,
        ge=1,
        le=6,
        description="degree of the least-squares polynomial removed before the FFT when "
        "periodic=False (the line through the ends is removed after it)",
    )


def _fft(xp: ModuleType) -> Any:
    return scipy_for(xp).fft if (is_numpy(xp) or xp.__name__ == "cupy") else xp.fft


def _workers(size: int) -> dict[str, int]:
    """scipy.fft workers: all cores from the main thread on big batches, one inside a worker."""
    if size < (1 << 18) or threading.current_thread() is not threading.main_thread():
        return {}
    return {"workers": os.cpu_count() or 1}


# the ways a series is made periodic for the FFT; the integer code recorded per series under
# ``chosen["extension"]`` is the index into this tuple. "reflect": detrended odd reflection,
# period 2(n-1)h; "periodic": the series as it is, period n*h; "closed": the last sample
# repeats the first (their mean is used), period (n-1)*h.
EXTENSIONS = ("reflect", "periodic", "closed")


class _Prepared:
    """A batch ready for the FFT: the extended series and what was removed from it.

    ``trend`` (the batch's shape) is what the reflection removed, ``coef`` (rows..., k) its
    coefficients on the basis whose order-th derivatives are ``dbasis`` (k, n); the trend's
    derivative is formed only when asked for (the choice of cutoff never needs it).
    """

    __slots__ = ("ext", "trend", "coef", "dbasis", "period", "n", "kind", "ls", "m")

    def __init__(
        self,
        ext: Any,
        period: float,
        n: int,
        kind: str,
        trend: Any = None,
        coef: Any = None,
        dbasis: Any = None,
        ls: _ls.Plan | None = None,
    ):
        self.ext = ext
        self.trend = trend
        self.coef = coef
        self.dbasis = dbasis
        self.period = period
        self.n = n
        self.kind = kind
        # irregular x: the least-squares spectrum's plan; ext is then the series itself (less
        # the trend for the reflection) and m the nominal FFT length
        self.ls = ls
        self.m = ls.m if ls is not None else ext.shape[-1]

    def trend_deriv(self, xp: ModuleType) -> Any:
        """The order-th derivative of the removed trend (None where nothing was removed)."""
        if self.coef is None:
            return None
        return xp.matmul(self.coef, asarray_like(self.dbasis, xp, dtype=self.coef.dtype))

    def restrict(self, d: Any, xp: ModuleType) -> Any:
        """The n samples of the series from a result over one period of the extension."""
        if self.ls is not None:
            return d
        if self.kind == "closed":
            return xp.concat([d[..., : self.n - 1], d[..., :1]], axis=-1)
        return d[..., : self.n]


def _poly_matrices(x: np.ndarray, degree: int, order: int) -> tuple[np.ndarray, ...]:
    """Least-squares projector (deg+1, n) and basis values / order-th derivatives (n, deg+1)."""
    a, b = float(x[0]), float(x[-1])
    t = (2.0 * x - (a + b)) / (b - a)
    basis = legendre.legvander(t, degree)
    proj = np.linalg.pinv(basis)
    scale = (2.0 / (b - a)) ** order
    deriv = np.stack(
        [
            legendre.legval(t, legendre.legder(np.eye(degree + 1)[j], order)) * scale
            if order <= degree
            else np.zeros_like(t)
            for j in range(degree + 1)
        ],
        axis=1,
    )
    return proj, basis, deriv


def _trend_matrices(x: np.ndarray, degree: int, order: int) -> tuple[np.ndarray, ...]:
    """The reflection's whole trend as one low-rank map: coefficients = y @ P (n, k), trend =
    coefficients @ B (k, n), its order-th derivative = coefficients @ Bd (k, n); k = degree + 3.

    The trend is the least-squares polynomial plus the line through the ends of what the
    polynomial leaves; that line's two end values are linear in y too, so both parts come
    from one projection (two passes over the batch instead of seven).
    """
    n = x.shape[0]
    proj, basis, deriv = _poly_matrices(x, degree, order)
    span = x[-1] - x[0]
    s = (x - x[0]) / span
    ends = np.zeros((n, 2))
    ends[0, 0] = ends[-1, 1] = 1.0
    # end values of the polynomial's residual: y[0] - (y @ proj.T) @ basis[0], same at n-1
    ends -= proj.T @ basis[[0, -1]].T
    P = np.concatenate([proj.T, ends], axis=1)
    B = np.concatenate([basis.T, (1.0 - s)[None], s[None]], axis=0)
    line_d = np.full((2, n), 0.0)
    if order == 1:
        line_d[0], line_d[1] = -1.0 / span, 1.0 / span
    Bd = np.concatenate([deriv.T, line_d], axis=0)
    return np.ascontiguousarray(P), np.ascontiguousarray(B), np.ascontiguousarray(Bd)


def _prepare(
    y: Any,
    x: np.ndarray,
    h: float | None,
    order: int,
    params: SpectralParams,
    xp: ModuleType,
    kind: str,
) -> _Prepared:
    """The batch made ready for the transform of extension ``kind``; h None: irregular x
    (least-squares spectrum, :mod:`_lsspectrum`)."""
    n = y.shape[-1]
    plan = None
    if h is None:
        plan = _ls.plan(x, kind, params.period)
        if kind != "reflect":
            return _Prepared(y, _ls.period_of(x, kind, params.period), n, kind, ls=plan)
    elif kind == "periodic":
        return _Prepared(y, n * h, n, kind)
    elif kind == "closed":
        first = 0.5 * (y[..., :1] + y[..., -1:])
        return _Prepared(xp.concat([first, y[..., 1 : n - 1]], axis=-1), (n - 1) * h, n, kind)
    dt = y.dtype
    P, B, Bd = _trend_matrices(x, min(params.detrend, n - 2), order)
    coef = xp.matmul(y, asarray_like(P, xp, dtype=dt))
    trend = xp.matmul(coef, asarray_like(B, xp, dtype=dt))
    if h is None:  # the least-squares sines fit the detrended series as it is
        period = _ls.period_of(x, kind, params.period)
        return _Prepared(y - trend, period, n, kind, trend, coef, Bd, ls=plan)
    # odd reflection about both ends of y - trend (zero there by construction): period 2(n-1)
    ext = xp.empty(y.shape[:-1] + (2 * (n - 1),), dtype=dt)
    xp.subtract(y, trend, out=ext[..., :n])
    ext[..., 0] = 0.0
    ext[..., n - 1] = 0.0
    xp.negative(ext[..., n - 2 : 0 : -1], out=ext[..., n:])
    return _Prepared(ext, 2 * (n - 1) * h, n, "reflect", trend, coef, Bd)


def _step(x: np.ndarray, params: SpectralParams) -> float | None:
    """The uniform step of x for the FFT path, or None for the least-squares one (irregular
    x, or a period given)."""
    if params.period is not None:
        if params.periodic is False:
            raise ValueError("method 'spectral': period is given, so periodic cannot be False")
        return None
    return uniform_step(x)


def _omega(m: int, period: float) -> np.ndarray:
    """Angular frequencies of the rfft bins of a length-m period."""
    return 2.0 * np.pi * np.arange(m // 2 + 1) / period


def _gain(frac: np.ndarray, cutoff: Any, taper: float, xp: ModuleType, dt: Any) -> Any:
    """Low-pass gain per bin: 1 below ``cutoff``, raised cosine to 0 at cutoff*(1+taper)."""
    f = asarray_like(frac, xp, dtype=dt)
    c = cutoff[..., None] if hasattr(cutoff, "shape") else cutoff
    if taper == 0.0:
        return xp.astype(f <= c, dt) if hasattr(xp, "astype") else (f <= c).astype(dt)
    u = (f - c) / xp.maximum(c * taper, 1e-12)
    if is_numpy(xp):  # the cosine only where the roll-off is (the same values, fewer cosines)
        g = (u <= 0.0).astype(dt)
        mid = (u > 0.0) & (u < 1.0)
        g[mid] = 0.5 * (1.0 + np.cos(np.pi * u[mid]))
        return g
    u = xp.clip(u, 0.0, 1.0)
    return 0.5 * (1.0 + xp.cos(np.pi * u))


def _spectrum(prep: _Prepared, xp: ModuleType) -> Any:
    """rfft bins of the extension; on irregular x the least-squares bins (NumPy)."""
    if prep.ls is not None:
        y2 = np.asarray(to_numpy(prep.ext), dtype=np.float64).reshape(-1, prep.n)
        return _ls.bins(_ls.coefficients(y2, prep.ls), prep.ls).reshape(prep.ext.shape[:-1] + (-1,))
    return _fft(xp).rfft(prep.ext, axis=-1, **_workers(prep.ext.size))


def _power(spec: Any, xp: ModuleType) -> Any:
    if is_numpy(xp) and spec.ndim == 2:
        out = np.empty(spec.shape, dtype=spec.real.dtype)
        run_rows(_sk.abs2_rows, spec, out)
        return out
    return xp.real(spec) ** 2 + xp.imag(spec) ** 2


def _floor(power: Any, prep: _Prepared, xp: ModuleType) -> Any:
    """Noise floor (rows,) of the power spectrum: the top half's median over its expectation.

    White noise has a flat spectrum; a resolved smooth signal has none left in the top half,
    so the median there is the noise floor. Bins of an odd reflection are purely imaginary
    (one degree of freedom: median 0.455 of the mean), periodic ones complex.
    """
    return _top_median(power, xp) / _median_ratio(prep.kind)


def _median_ratio(kind: str) -> float:
    """A noise bin's median power over its mean for extension ``kind``: chi-square with one
    degree of freedom for the odd reflection's (purely imaginary) bins, two otherwise."""
    return _CHI2_1_MEDIAN if kind == "reflect" else _CHI2_2_MEDIAN


def _top_median(power: Any, xp: ModuleType) -> Any:
    """Median (rows,) of the top half of each row's power spectrum (rows, nb)."""
    nb = power.shape[-1]
    if is_numpy(xp):
        out = np.empty((power.shape[0], 1))
        bounds = np.array([[nb // 2, nb]], dtype=np.int64)
        run_rows(_sk.band_medians, np.ascontiguousarray(power), out, bounds)
        return out[:, 0]
    top = power[..., nb // 2 :]
    return xp.median(top, axis=-1) if hasattr(xp, "median") else _median(top, xp)


def _choose_cutoff(
    power: Any, floor: Any, order: int, taper: float, xp: ModuleType, kind: str = "reflect"
) -> Any:
    """Per-series cutoff (fraction of Nyquist) minimising the estimated derivative error.

    NumPy batches (rows, nb) run the compiled twin of these expressions
    (:func:`_spectral_kernels.cutoff_rows`, the same cutoffs).
    """
    nb = power.shape[-1]
    thresh = THRESHOLD.get(order, 12.0)
    if is_numpy(xp) and power.ndim == 2 and power.dtype == np.float64:
        out = np.empty(power.shape[0])
        w = np.arange(nb, dtype=np.float64) ** (2 * order)
        run_rows(
            _sk.cutoff_rows,
            np.ascontiguousarray(power, dtype=np.float64),
            out,
            w,
            float(thresh),
            LINE,
            LINE_SIDE,
            ROLLOFF,
            float(taper),
            kind != "reflect",
            row_args=(np.ascontiguousarray(floor, dtype=np.float64),),
        )
        return out
    floor = floor[..., None]
    raw = power
    # a median of three neighbouring bins: a lone noise bin (chi-square tail) is no signal,
    # but a lone bin far above any noise peak is a line (a sinusoid of a periodic series)
    if nb >= 3:
        a, b, c = power[..., :-2], power[..., 1:-1], power[..., 2:]
        mid = xp.maximum(xp.minimum(a, b), xp.minimum(xp.maximum(a, b), c))
        mid = xp.where(b > LINE * floor, b, mid)
        power = xp.concat([power[..., :1], mid, power[..., -1:]], axis=-1)
    w = asarray_like(np.arange(nb, dtype=np.float64) ** (2 * order), xp, dtype=power.dtype)
    gain = (
        xp.cumulative_sum((power - thresh * floor) * w, axis=-1)
        if hasattr(xp, "cumulative_sum")
        else xp.cumsum((power - thresh * floor) * w, axis=-1)
    )
    best = xp.argmax(gain, axis=-1)
    last = nb - 1
    frac = xp.astype(best, power.dtype) / last
    # put the roll-off's midpoint on the chosen bin (0: only the polynomial trend is kept),
    # or its start where that bin is a line, which must keep its full gain
    at = xp.take_along_axis(raw, best[..., None], axis=-1)[..., 0]
    pad = xp.concat([raw[..., :1] * 0.0, raw, raw[..., :1] * 0.0], axis=-1)
    side = xp.maximum(
        xp.take_along_axis(pad, best[..., None], axis=-1)[..., 0],
        xp.take_along_axis(pad, best[..., None] + 2, axis=-1)[..., 0],
    )
    lone = at > LINE * side
    if kind != "reflect":  # a periodic series' spectrum is lines on a noise floor
        lone = lone | (side < LINE_SIDE * floor[..., 0])
    line = (at > LINE * floor[..., 0]) & lone
    roll = xp.where(line, 0.0, ROLLOFF)
    cut = xp.clip(frac / (1.0 + roll * taper), 0.0, 1.0)
    if kind != "reflect":
        # the roll-off must not cut into a line below the chosen bin either (two tones: a
        # noise bin above the upper one, taken through its neighbours' median, moved the
        # roll-off onto the tone and took 8 % of it)
        k = asarray_like(np.arange(nb), xp, dtype=xp.int64)
        strong = (raw > LINE * floor) & (k <= best[..., None]) & (k > 0)
        top_line = xp.max(xp.where(strong, k, 0), axis=-1)
        cut = xp.maximum(cut, xp.astype(top_line, power.dtype) / last)
    return xp.where(best >= last, 1.0, cut)


def _bands(nb: int) -> list[tuple[int, int]]:
    """Bands of rfft bins: octaves from the top half down while 4 bins wide, then single bins
    down to bin 1 (where a smooth series' signal is: dropping it must count)."""
    out, hi = [], nb
    lo = nb // 2
    while lo >= 1 and hi - lo >= 4:
        out.append((lo, hi))
        hi, lo = lo, lo // 2
    out.extend((j, j + 1) for j in range(hi - 1, 0, -1))
    return out


def _estimated_error(
    power: np.ndarray,
    m: int,
    one_dof: bool,
    cutoff: np.ndarray,
    taper: float,
    order: int,
    var: np.ndarray,
    floor_bins: int,
    own: np.ndarray | None = None,
    top_med: np.ndarray | None = None,
) -> np.ndarray:
    """Estimated mean-square derivative error per sample (rows,), up to a common factor.

    For one extension (rfft of length m, power (rows, nb)) with the gain of ``cutoff`` and
    a noise variance ``var`` (rows,) shared by every extension: the noise kept,
    sum g**2 m var omega**(2 order), plus the signal lost, estimated per octave band from the
    band's median power in excess of the noise floor (a median, so that lone chi-square
    peaks count for nothing), times sum (1 - g)**2 omega**(2 order) over the band; the top
    band's excess counts in full, kept or not: power still there at Nyquist is unresolved
    (a jump or kink of the extension) and aliases back. Omega is taken in cycles per sample,
    the same scale for every extension, and the sum is divided by m**2 (Parseval).

    ``own`` (rows,) is a periodic extension's own noise variance (its top half's floor): below
    the top band its bands count as signal only above the larger of it and ``var``. Measured
    against the shared ``var`` alone on sin over a period (400 series, 101 samples): a low
    draw of the reflection's floor made noise bands of the periodic spectrum look like lost
    signal and the reflection win for 5 % of the series at 1 % noise (2.8 % with it).
    ``top_med`` (rows,): the median of the top half of power where already known (the noise
    floor's). Computed per row by :func:`_spectral_kernels.estimated_error_rows`.
    """
    rows, nb = power.shape
    k = np.arange(nb, dtype=np.float64)
    w = (k / m) ** (2 * order)
    ratio = _CHI2_1_MEDIAN if one_dof else _CHI2_2_MEDIAN
    # relative standard error of a median of N bins over its expectation (chi-square with
    # one / two degrees of freedom), for the band and for the floor (the reflection's top half)
    rse = _MEDIAN_RSE[1 if one_dof else 2]
    rse_floor = _MEDIAN_RSE[1] / np.sqrt(floor_bins)
    bands = _bands(nb)
    singles = sum(1 for lo, hi in bands if hi - lo == 1)
    # a two-dof noise bin exceeds t times its mean with probability exp(-t)
    single_t = np.log(max(singles, 1) / SINGLE_BIN_FW) * (1.0 + BAND_Z * rse_floor)
    # Per band: the top band is judged against the shared floor (leakage of a periodic
    # extension that does not fit raises its own top half), the others against the larger
    # floor. One bin of a periodic spectrum (``own`` given) counts where it is above
    # ``single_t`` times the floor (its expectation is its mean, and the threshold holds for
    # all the single bins together, SINGLE_BIN_FW); a band's median over its expectation
    # counts where it is BAND_Z standard errors above the floor (the noise cannot explain
    # it). The excess weighs sum w over the top band, sum (1 - g)**2 w below it.
    band_noise = np.array(
        [BAND_Z * np.hypot(rse / np.sqrt(hi - lo), rse_floor) for lo, hi in bands]
    )
    use_top = top_med is not None and bool(bands) and bands[0] == (nb // 2, nb)
    out = np.empty(rows)
    run_rows(
        _sk.estimated_error_rows,
        np.ascontiguousarray(power, dtype=np.float64),
        out,
        k / (nb - 1),
        w,
        np.array(bands, dtype=np.int64).reshape(-1, 2),
        band_noise,
        int(m),
        float(taper),
        float(ratio),
        float(single_t),
        own is not None,
        use_top,
        row_args=tuple(
            np.ascontiguousarray(np.broadcast_to(a, (rows,)), dtype=np.float64)
            for a in (
                cutoff,
                var,
                np.zeros(rows) if own is None else own,
                np.zeros(rows) if top_med is None else top_med,
            )
        ),
    )
    return out


def _residual_beyond(power: np.ndarray, m: int, keep: np.ndarray) -> np.ndarray:
    """Per series: squared residual of the fit by rfft bins 0..keep (Parseval, length m)."""
    nb = power.shape[-1]
    c = np.full(nb, 2.0)
    c[0] = 1.0
    if m % 2 == 0:
        c[-1] = 1.0
    tail = np.cumsum((c * power)[:, ::-1], axis=-1)[:, ::-1]  # sum over bins >= k
    k = np.clip(keep + 1, 0, nb - 1)
    out = np.take_along_axis(tail, k[:, None], axis=-1)[:, 0]
    return np.where(keep + 1 >= nb, 0.0, out) / m


def _closed_fits_better(
    y2: np.ndarray, power: dict[str, np.ndarray], keep: np.ndarray, x: np.ndarray | None = None
) -> np.ndarray:
    """Per series: is the period (n-1)h ("closed") a better fit than n*h ("periodic")?

    The two differ only in whether the last sample repeats the first. The sum of
    squared residuals of the same number of harmonics (``keep``, the more that either
    extension's cutoff kept) is smaller under the period that matches the sampling: under
    the other the series' lines fall between bins and leak. "closed" fits n - 1 samples
    with the first and last averaged; their spread about that mean is added back. On
    irregular x (``x`` given) the residuals are those of the least-squares fits by the same
    harmonics, both on all n samples.
    """
    if x is not None:
        rc = _ls.residual_beyond(y2, _ls.plan(x, "closed"), keep)
        return rc <= _ls.residual_beyond(y2, _ls.plan(x, "periodic"), keep)
    n = y2.shape[-1]
    rc = _residual_beyond(power["closed"], n - 1, keep)
    rc = rc + 0.5 * (y2[:, 0] - y2[:, -1]) ** 2
    rp = _residual_beyond(power["periodic"], n, keep)
    return rc <= rp


def _kinds(params: SpectralParams, n: int) -> tuple[str, ...]:
    """The extensions to compare for series of n samples."""
    if params.period is not None:
        return ("periodic",)
    if params.periodic is not None:
        return ("periodic",) if params.periodic else ("reflect",)
    return EXTENSIONS if n >= 8 else ("reflect",)


def _kind_spectrum(
    y2: np.ndarray, x: np.ndarray, h: float | None, order: int, params: SpectralParams, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Power (rows, nb), noise floor (rows,), cutoff (rows,), FFT length and the median of
    the top half of the power (rows,, the floor's) of one extension."""
    prep = _prepare(y2, x, h, order, params, np, kind)
    power, floor, cut, med = _bins_cutoff(prep, _spectrum(prep, np), order, params)
    return power, floor, cut, prep.m, med


def _bins_cutoff(
    prep: _Prepared, spec: np.ndarray, order: int, params: SpectralParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Power (rows, nb), noise floor (rows,), cutoff (rows,: given or chosen) and the top
    half's median power (rows,) from the rfft bins ``spec`` of the extension ``prep``."""
    power = _power(spec, np)
    med = _top_median(power, np)
    floor = med / _median_ratio(prep.kind)
    if params.cutoff is not None:
        cut = np.full(power.shape[0], float(params.cutoff))
    else:
        cut = _choose_cutoff(power, floor, order, params.taper, np, prep.kind)
    return power, floor, cut, med


def _choose(
    y: Any, x: np.ndarray, order: int, params: SpectralParams, xp: ModuleType
) -> dict[str, Any]:
    kinds = _kinds(params, y.shape[-1])
    if params.cutoff is not None and len(kinds) == 1:
        return {"cutoff": xp.full(y.shape[:-1], params.cutoff, dtype=xp.float64)}
    h = _step(x, params)
    shape, n = y.shape[:-1], y.shape[-1]
    y2 = np.asarray(to_numpy(y), dtype=np.float64).reshape(-1, n)
    power, floor, cut, m, med = _kind_spectrum(y2, x, h, order, params, kinds[0])
    code = np.full(y2.shape[0], EXTENSIONS.index(kinds[0]), dtype=np.int64)
    # periodic extensions compete only where they continue smoothly across the wrap
    z = {k: _wrap_mismatch(y2, k, x if h is None else None) for k in kinds[1:]}
    ok = {k: v <= WRAP_Z_SOFT for k, v in z.items()}
    cand = np.flatnonzero(np.any(np.stack(list(ok.values())), axis=0)) if ok else []
    if len(cand):
        # the reflection's floor is the noise variance for every extension (a periodic
        # extension of a series that is not periodic leaks signal into its top half)
        var = floor[cand] / m
        top = power.shape[-1] - power.shape[-1] // 2
        est = [
            _estimated_error(
                power[cand], m, True, cut[cand], params.taper, order, var, top, None, med[cand]
            )
        ]
        cuts, pw = [cut[cand]], {}
        for k in kinds[1:]:
            pw[k], fk, c, mk, mdk = _kind_spectrum(y2[cand], x, h, order, params, k)
            cuts.append(c)
            e = _estimated_error(pw[k], mk, False, c, params.taper, order, var, top, fk / mk, mdk)
            e = np.where(z[k][cand] <= WRAP_Z, e, e * SOFT_PENALTY)
            est.append(e * (1.0 + PERIODIC_MARGIN))
        # only the one of the two whose period matches the sampling (see its notes)
        # with the harmonics either kept (its chosen bin, where the roll-off may begin)
        reach = 1.0 + ROLLOFF * params.taper
        bins = [
            np.rint(c * reach * (pw[k].shape[-1] - 1))
            for c, k in zip(cuts[1:], kinds[1:], strict=True)
        ]
        closed = _closed_fits_better(
            y2[cand], pw, np.maximum(*bins).astype(np.int64), x if h is None else None
        )
        for i, k in enumerate(kinds[1:], start=1):
            good = ok[k][cand] & (closed if k == "closed" else ~closed)
            est[i] = np.where(good, est[i], np.inf)
        best = np.argmin(np.stack(est), axis=0)
        code[cand] = np.array([EXTENSIONS.index(k) for k in kinds])[best]
        cut[cand] = np.choose(best, cuts)
    out = {"cutoff": asarray_like(cut.reshape(shape), xp, dtype=xp.float64)}
    if len(kinds) > 1:
        out["extension"] = asarray_like(code.reshape(shape), xp)
    return out


def _only_extension(params: SpectralParams, n: int, rows: int) -> np.ndarray:
    """The extension codes (rows,) of series of n samples when there is one to take."""
    return np.full(rows, EXTENSIONS.index(_kinds(params, n)[0]), dtype=np.int64)


def choose_with_extension(
    y: np.ndarray, x: np.ndarray, order: int, params: SpectralParams, extension: np.ndarray
) -> dict[str, np.ndarray]:
    """Choices for rows (rows, n) whose extension is given (codes into ``EXTENSIONS``, (rows,)).

    Each row gets its own cutoff for that extension; a code of -1 leaves the row to the
    usual choice of extension. ``auto`` uses it to cross-validate the halves of a series
    with the extension chosen on the whole series (a half's own choice can differ by chance).
    """
    h = _step(x, params)
    y2 = np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1])
    ext = np.asarray(extension, dtype=np.int64).reshape(-1)
    cut = np.empty(y2.shape[0])
    code = ext.copy()
    free = np.flatnonzero(ext < 0)
    if free.size:
        own = _choose(y2[free], x, order, params, np)
        cut[free] = own["cutoff"]
        code[free] = own.get("extension", _only_extension(params, x.shape[0], free.size))
    for c in np.unique(ext[ext >= 0]):
        rows = np.flatnonzero(ext == c)
        cut[rows] = _kind_spectrum(y2[rows], x, h, order, params, EXTENSIONS[int(c)])[2]
    return {"cutoff": cut, "extension": code}


def smoothed_with_extension(
    y: np.ndarray, x: np.ndarray, order: int, params: SpectralParams, extension: np.ndarray
) -> np.ndarray:
    """The smoothed signal (rows, n) that ``apply`` gives with :func:`choose_with_extension`'s
    choices, the same values, for ``auto``'s cross-validation of the halves (it needs only the
    fit): on regular x each given extension's rows are prepared and transformed once, their
    cutoff chosen from those bins and only the fit transformed back (two transforms where
    choosing and applying take four; at half lengths such as 500, whose reflection period 998
    has the prime factor 499, each costs ~6x one of 1,000). Rows free to choose (code -1)
    get their extension from :func:`_choose` first; irregular x takes the general path."""
    h = _step(x, params)
    y2 = np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1])
    ext = np.asarray(extension, dtype=np.int64).reshape(-1)
    if h is None:
        chosen = choose_with_extension(y2, x, order, params, ext)
        return _apply(y2, x, order, params, chosen, np, True).smoothed
    free = np.flatnonzero(ext < 0)
    if free.size:  # their own extension (each row's cutoff for it is found again below)
        ext = ext.copy()
        own = _choose(y2[free], x, order, params, np)
        ext[free] = own.get("extension", _only_extension(params, x.shape[0], free.size))
    out = np.empty(y2.shape)
    for c in np.unique(ext):
        rows = np.flatnonzero(ext == c)
        prep = _prepare(y2[rows], x, h, order, params, np, EXTENSIONS[int(c)])
        spec = _spectrum(prep, np)
        cut = _bins_cutoff(prep, spec, order, params)[2]
        fit = _filtered(prep, spec, y2.dtype, order, params, cut, np, True, derivative=False)
        out[rows] = fit.smoothed
    return out


def _apply_one(
    y: Any,
    x: np.ndarray,
    h: float | None,
    order: int,
    params: SpectralParams,
    cutoff: Any,
    kind: str,
    xp: ModuleType,
    smoothed: bool,
) -> Output:
    prep = _prepare(y, x, h, order, params, xp, kind)
    if prep.ls is not None:
        return _apply_ls(prep, x, order, params, cutoff, xp, smoothed)
    return _filtered(prep, _spectrum(prep, xp), y.dtype, order, params, cutoff, xp, smoothed)


def _filtered(
    prep: _Prepared,
    spec: Any,
    dt: Any,
    order: int,
    params: SpectralParams,
    cutoff: Any,
    xp: ModuleType,
    smoothed: bool,
    derivative: bool = True,
) -> Output:
    """:func:`_apply_one` from the extension's rfft bins ``spec`` (regular x): each row's
    gain, then the derivative of ``order`` (unless ``derivative`` is False: its inverse
    transform skipped, ``Output.derivative`` None) and the smoothed signal, in dtype dt."""
    m = prep.m
    nb = spec.shape[-1]
    if cutoff is None:
        power = _power(spec, xp)
        cutoff = _choose_cutoff(power, _floor(power, prep, xp), order, params.taper, xp, prep.kind)
    mult = (1j * _omega(m, prep.period)) ** order
    if order % 2 and m % 2 == 0:
        mult[-1] = 0.0  # the Nyquist bin has no sign: its odd derivative is undefined
    frac = np.arange(nb) / (nb - 1)
    if is_numpy(xp) and spec.ndim == 2 and spec.dtype == np.complex128:
        # one compiled pass: each row's gain, times the derivative's multiplier
        cut = np.ascontiguousarray(
            np.broadcast_to(np.asarray(cutoff, dtype=np.float64).reshape(-1), spec.shape[:1])
        )
        spec_d = np.empty_like(spec)
        filtered = np.empty_like(spec) if smoothed else np.empty((0, nb), dtype=spec.dtype)
        run_rows(
            _sk.filter_rows,
            spec,
            spec_d,
            frac,
            float(params.taper),
            mult,
            row_args=(cut, filtered),
        )
    else:
        if hasattr(cutoff, "shape"):
            cutoff = asarray_like(cutoff, xp, dtype=dt)
        filtered = spec * _gain(frac, cutoff, params.taper, xp, dt)
        cdt = xp.complex64 if dt == xp.float32 else xp.complex128
        spec_d = filtered * asarray_like(mult, xp, dtype=cdt)
    fft = _fft(xp)
    kw = _workers(spec.size)
    d = None
    if derivative:
        d = prep.restrict(fft.irfft(spec_d, n=m, axis=-1, **kw), xp)
        trend_deriv = prep.trend_deriv(xp)
        if trend_deriv is not None:
            d = d + trend_deriv
        d = xp.astype(d, dt) if d.dtype != dt else d
    s = None
    if smoothed:
        s = prep.restrict(fft.irfft(filtered, n=m, axis=-1, **kw), xp)
        if prep.trend is not None:
            s = s + prep.trend
        s = xp.astype(s, dt) if s.dtype != dt else s
    return Output(d, s)


def _apply_ls(
    prep: _Prepared,
    x: np.ndarray,
    order: int,
    params: SpectralParams,
    cutoff: Any,
    xp: ModuleType,
    smoothed: bool,
) -> Output:
    """:func:`_apply_one` on irregular x (NumPy: spectral is CPU-only): per row, the
    least-squares fit by the harmonics its gain reaches, each coefficient times its gain,
    mapped to the derivative (and the fit) at x. Rows are grouped by how many harmonics
    they fit (one fit per group)."""
    pl = prep.ls
    n = prep.n
    lead = prep.ext.shape[:-1]
    y2 = np.asarray(to_numpy(prep.ext)).reshape(-1, n)
    dt = y2.dtype
    y64 = np.asarray(y2, dtype=np.float64)
    rows = y2.shape[0]
    if cutoff is None:
        power = _power(_spectrum(prep, np).reshape(rows, -1), np)
        cutoff = _choose_cutoff(power, _floor(power, prep, np), order, params.taper, np, prep.kind)
    cut = np.broadcast_to(np.asarray(to_numpy(cutoff), dtype=np.float64).reshape(-1), (rows,))
    frac = np.arange(pl.nb) / max(pl.nb - 1, 1)
    gains = _gain(frac, np.ascontiguousarray(cut), params.taper, np, np.float64)
    # the last bin each row's gain reaches, and the columns that hold the bins up to it
    reach = pl.nb - 1 - np.argmax(gains[:, ::-1] > 0.0, axis=1)
    cols = _ls.columns_through(pl, reach)
    dmap = _ls.deriv_map(x, pl, order)
    fmap = _ls.deriv_map(x, pl, 0) if smoothed else None
    d = np.empty((rows, n))
    s = np.empty((rows, n)) if smoothed else None
    for p in np.unique(cols):
        sel = np.flatnonzero(cols == p)
        c = _ls.coefficients(y64[sel], pl, int(p)) * gains[sel][:, pl.coord_bin[:p]]
        d[sel] = c @ dmap[:p]
        if s is not None:
            s[sel] = c @ fmap[:p]
    trend_deriv = prep.trend_deriv(np)
    if trend_deriv is not None:
        d += np.asarray(to_numpy(trend_deriv)).reshape(-1, n)
    if s is not None and prep.trend is not None:
        s += np.asarray(to_numpy(prep.trend)).reshape(-1, n)
    out_d = asarray_like(d.reshape(lead + (n,)).astype(dt, copy=False), xp)
    out_s = None if s is None else asarray_like(s.reshape(lead + (n,)).astype(dt, copy=False), xp)
    return Output(out_d, out_s)


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: SpectralParams,
    chosen: dict[str, Any],
    xp: ModuleType,
    smoothed: bool,
) -> Output:
    h = _step(x, params)
    if (
        "extension" not in chosen
        and params.periodic is None
        and len(_kinds(params, x.shape[0])) > 1
    ):
        chosen = _choose(y, x, order, params, xp)
    cutoff = chosen.get("cutoff", params.cutoff)
    if "extension" not in chosen:
        return _apply_one(
            y, x, h, order, params, cutoff, _kinds(params, x.shape[0])[0], xp, smoothed
        )
    shape, n = y.shape, y.shape[-1]
    codes = np.asarray(to_numpy(chosen["extension"])).reshape(-1).astype(np.int64)
    cut = np.asarray(to_numpy(cutoff), dtype=np.float64).reshape(-1)
    kinds = np.unique(codes)
    if kinds.size == 1:
        return _apply_one(
            y,
            x,
            h,
            order,
            params,
            asarray_like(cut.reshape(shape[:-1]), xp),
            EXTENSIONS[int(kinds[0])],
            xp,
            smoothed,
        )
    y2 = y.reshape(-1, n)
    deriv = xp.empty(y2.shape, dtype=y.dtype)
    sm = xp.empty(y2.shape, dtype=y.dtype) if smoothed else None
    for code in kinds:
        rows = np.flatnonzero(codes == code)
        ridx = asarray_like(rows, xp, dtype=xp.int64)
        out = _apply_one(
            xp.take(y2, ridx, axis=0),
            x,
            h,
            order,
            params,
            asarray_like(cut[rows], xp),
            EXTENSIONS[int(code)],
            xp,
            smoothed,
        )
        deriv[ridx] = out.derivative
        if smoothed:
            sm[ridx] = out.smoothed
    return Output(deriv.reshape(shape), None if sm is None else sm.reshape(shape))


def _footprint(order: int, params: SpectralParams) -> None:
    return None


def _min_samples(order: int, params: SpectralParams) -> int:
    return order + 3


SPEC = register(
    MethodSpec(
        name="spectral",
        summary="FFT derivative with a tapered low-pass cutoff chosen per series; "
        "detrended odd reflection for non-periodic data; least-squares harmonics on "
        "irregular x.",
        params=SpectralParams,
        max_order=4,
        apply=_apply,
        footprint=_footprint,
        choose=_choose,
        min_samples=_min_samples,
        irregular=True,
        irregular_max_samples=_ls.MAX_SAMPLES,
        nan_omit=False,
        gpu=False,
        has_smoothed=True,
        block_bytes=1 << 22,  # spectra and their products: ~13x the input (measured)
    )
)
