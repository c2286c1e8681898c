"""Spectral (FFT) differentiation with a tapered low-pass cutoff, uniform x only.

The derivative of order m multiplies each Fourier coefficient by (i omega)**m. Noise is
white, so its share of the spectrum is flat while a smooth signal's falls off quickly; a
low-pass gain (1 up to ``cutoff``, a raised-cosine roll-off to 0 after it) keeps the signal
and drops the noise that differentiation would amplify. Periodic data go straight into the
FFT. Non-periodic data first lose a least-squares polynomial trend (degree ``detrend``) and
then the line through their ends, so that the odd reflection of what is left is a smooth
periodic function; the removed polynomial and line are differentiated analytically.

With ``cutoff=None`` each series gets its own cutoff: the one that minimises an unbiased
estimate of the derivative's error, sum over kept bins of noise power times omega**(2m)
plus sum over dropped bins of signal power times omega**(2m), with the noise power from a
difference-based estimate of the noise level.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

import numpy as np
from numpy.polynomial import legendre
from pydantic import Field

from ._noise import _median
from ._xp import asarray_like, is_numpy, scipy_for
from .api import uniform_step
from .registry import MethodParams, MethodSpec, Output, register

# a bin is kept when its power exceeds this many times the noise floor (on average over the
# kept band); 2 would be the unbiased rule, higher values guard against chi-square noise
# peaks, which cost more the higher the order (measured on sin/exp/Black-Scholes/two-tone
# series at 1-10 % noise against the best cutoff in hindsight)
THRESHOLD = {1: 4.0, 2: 9.0}


# medians of chi-square variables with 1 and 2 degrees of freedom, over their means
_CHI2_1_MEDIAN = 0.454936423119572
_CHI2_2_MEDIAN = float(np.log(2.0))


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
    periodic: bool = Field(
        False,
        description="treat each series as one period (x without the repeated end point); "
        "False detrends and reflects the series before the FFT",
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


class _Prepared:
    """A batch ready for the FFT: the extended series and what was removed from it."""

    __slots__ = ("ext", "trend", "trend_deriv", "period", "n")

    def __init__(self, ext: Any, trend: Any, trend_deriv: Any, period: float, n: int):
        self.ext = ext
        self.trend = trend
        self.trend_deriv = trend_deriv
        self.period = period
        self.n = n


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


def _prepare(
    y: Any, x: np.ndarray, h: float, order: int, params: SpectralParams, xp: ModuleType
) -> _Prepared:
    n = y.shape[-1]
    if params.periodic:
        return _Prepared(y, None, None, n * h, n)
    dt = y.dtype
    degree = min(params.detrend, n - 2)
    proj, basis, deriv = _poly_matrices(x, degree, order)
    coef = xp.matmul(y, asarray_like(proj.T.copy(), xp, dtype=dt))
    trend = xp.matmul(coef, asarray_like(basis.T.copy(), xp, dtype=dt))
    trend_deriv = xp.matmul(coef, asarray_like(deriv.T.copy(), xp, dtype=dt))
    r = y - trend
    # the line through the ends of what is left, so that the odd reflection is continuous
    s = asarray_like((x - x[0]) / (x[-1] - x[0]), xp, dtype=dt)
    r0 = r[..., :1]
    slope = r[..., -1:] - r0
    r = r - (r0 + slope * s)
    trend = trend + (r0 + slope * s)
    if order == 1:
        trend_deriv = trend_deriv + slope / (x[-1] - x[0])
    # odd reflection about both ends: period 2(n-1) samples
    ext = xp.concat([r, -xp.flip(r[..., 1 : n - 1], axis=-1)], axis=-1)
    return _Prepared(ext, trend, trend_deriv, 2 * (n - 1) * h, n)


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
    u = xp.clip(u, 0.0, 1.0)
    return 0.5 * (1.0 + xp.cos(np.pi * u))


def _spectrum(prep: _Prepared, xp: ModuleType) -> Any:
    return _fft(xp).rfft(prep.ext, axis=-1, **_workers(prep.ext.size))


def _choose_cutoff(
    y: Any, prep: _Prepared, spec: Any, order: int, taper: float, xp: ModuleType
) -> Any:
    """Per-series cutoff (fraction of Nyquist) minimising the estimated derivative error."""
    nb = spec.shape[-1]
    power = xp.real(spec) ** 2 + xp.imag(spec) ** 2
    # white noise has a flat spectrum; a resolved smooth signal has none left in the top
    # half, so the median there is the noise floor. Bins of an odd reflection are purely
    # imaginary (one degree of freedom: median 0.455 of the mean), periodic ones complex.
    top = power[..., nb // 2 :]
    med = xp.median(top, axis=-1) if hasattr(xp, "median") else _median(top, xp)
    floor = (med / (_CHI2_1_MEDIAN if prep.trend is not None else _CHI2_2_MEDIAN))[..., None]
    # a median of three neighbouring bins: a lone noise bin (chi-square tail) is no signal
    if nb >= 3:
        a, b, c = power[..., :-2], power[..., 1:-1], power[..., 2:]
        mid = xp.maximum(xp.minimum(a, b), xp.minimum(xp.maximum(a, b), c))
        power = xp.concat([power[..., :1], mid, power[..., -1:]], axis=-1)
    thresh = THRESHOLD.get(order, 12.0)
    w = asarray_like(np.arange(nb, dtype=np.float64) ** (2 * order), xp, dtype=power.dtype)
    gain = (
        xp.cumulative_sum((power - thresh * floor) * w, axis=-1)
        if hasattr(xp, "cumulative_sum")
        else xp.cumsum((power - thresh * floor) * w, axis=-1)
    )
    best = xp.argmax(gain, axis=-1)
    last = nb - 1
    frac = xp.astype(best, power.dtype) / last
    # put the roll-off's midpoint on the chosen bin (0: only the polynomial trend is kept)
    cut = xp.clip(frac / (1.0 + 0.5 * taper), 0.0, 1.0)
    return xp.where(best >= last, 1.0, cut)


def _check_uniform(x: np.ndarray) -> float:
    h = uniform_step(x)
    if h is None:
        raise ValueError(
            "method 'spectral' needs uniform spacing; x is irregular (resample it, or use "
            "a method that accepts irregular x: finite_difference, savgol, spline, kalman)"
        )
    return h


def _choose(
    y: Any, x: np.ndarray, order: int, params: SpectralParams, xp: ModuleType
) -> dict[str, Any]:
    if params.cutoff is not None:
        return {"cutoff": xp.full(y.shape[:-1], params.cutoff, dtype=xp.float64)}
    h = _check_uniform(x)
    y64 = xp.astype(y, xp.float64) if hasattr(xp, "astype") else y.astype(np.float64)
    prep = _prepare(y64, x, h, order, params, xp)
    return {"cutoff": _choose_cutoff(y64, prep, _spectrum(prep, xp), order, params.taper, xp)}


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: SpectralParams,
    chosen: dict[str, Any],
    xp: ModuleType,
    smoothed: bool,
) -> Output:
    h = _check_uniform(x)
    dt = y.dtype
    prep = _prepare(y, x, h, order, params, xp)
    spec = _spectrum(prep, xp)
    m = prep.ext.shape[-1]
    nb = spec.shape[-1]
    cutoff = chosen.get("cutoff", params.cutoff)
    if cutoff is None:
        cutoff = _choose_cutoff(y, prep, spec, order, params.taper, xp)
    if hasattr(cutoff, "shape"):
        cutoff = asarray_like(cutoff, xp, dtype=dt)
    gain = _gain(np.arange(nb) / (nb - 1), cutoff, params.taper, xp, dt)
    filtered = spec * gain
    mult = (1j * _omega(m, prep.period)) ** order
    if order % 2 and m % 2 == 0:
        mult[-1] = 0.0  # the Nyquist bin has no sign: its odd derivative is undefined
    cdt = xp.complex64 if dt == xp.float32 else xp.complex128
    fft = _fft(xp)
    kw = _workers(spec.size)
    d = fft.irfft(filtered * asarray_like(mult, xp, dtype=cdt), n=m, axis=-1, **kw)
    d = d[..., : prep.n]
    if prep.trend_deriv is not None:
        d = d + prep.trend_deriv
    d = xp.astype(d, dt) if d.dtype != dt else d
    s = None
    if smoothed:
        s = fft.irfft(filtered, n=m, axis=-1, **kw)[..., : prep.n]
        if prep.trend is not None:
            s = s + prep.trend
        s = xp.astype(s, dt) if s.dtype != dt else s
    return Output(d, s)


def _footprint(order: int, params: SpectralParams) -> None:
    return None


def _min_samples(order: int, params: SpectralParams) -> int:
    return order + 3


SPEC = register(
    MethodSpec(
        name="spectral",
        summary="FFT derivative with a tapered low-pass cutoff chosen per series; "
        "detrended odd reflection for non-periodic data. Uniform x.",
        params=SpectralParams,
        max_order=4,
        apply=_apply,
        footprint=_footprint,
        choose=_choose,
        min_samples=_min_samples,
        irregular=False,
        nan_omit=False,
        gpu=False,
        has_smoothed=True,
        block_bytes=1 << 22,  # spectra and their products: ~13x the input (measured)
    )
)
