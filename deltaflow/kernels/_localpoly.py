"""Local polynomial weights: the linear map from a window's samples to a fitted derivative.

A least-squares polynomial of degree p fitted to a window (optionally weighted by a kernel)
gives every derivative at any point as a fixed linear combination of the window's samples.
Savitzky–Golay filters and the equivalent kernels of lowess are such combinations; the
automatic window choice (``_bandwidth``) measures their variance and bias from the weights.
Coordinates are scaled to [-1, 1] before fitting so the Vandermonde systems stay well
conditioned for windows of any length.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def derivative_rows(t: np.ndarray, degree: int, deriv: int) -> np.ndarray:
    """Rows mapping polynomial coefficients (c_0..c_p) to the deriv-th derivative at t.

    t has shape (...,); returns (..., degree + 1): d^k/dt^k t^a = a!/(a-k)! t^(a-k).
    """
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(t.shape + (degree + 1,))
    for a in range(deriv, degree + 1):
        out[..., a] = math.perm(a, deriv) * t ** (a - deriv)
    return out


def fit_operator(t: np.ndarray, degree: int, kernel: np.ndarray | None = None) -> np.ndarray:
    """The (weighted) least-squares operator from samples at t (..., w) to coefficients.

    Returns (..., degree + 1, w); stacked windows are solved together (one batched pinv).
    """
    a = t[..., :, None] ** np.arange(degree + 1)
    if kernel is None:
        return np.linalg.pinv(a)
    sw = np.sqrt(kernel)
    return np.linalg.pinv(a * sw[..., :, None]) * sw[..., None, :]


def tricube(u: np.ndarray) -> np.ndarray:
    """The tricube kernel (1 - |u|^3)^3 on |u| < 1, zero outside."""
    au = np.minimum(np.abs(u), 1.0)
    return (1.0 - au**3) ** 3


def tricube_reach(half: int) -> float:
    """Tricube radius, in units of the window's farthest offset, so every sample counts.

    A window of 2*half+1 samples uses the radius (half + 1) samples: its outermost samples
    keep a small positive weight (as in a tricube over 2*half+3 samples, whose ends vanish).
    """
    return (half + 1.0) / half


@lru_cache(maxsize=512)
def centre_weights(window: int, degree: int, deriv: int, kernel: str = "uniform") -> np.ndarray:
    """Weights (window,) of the deriv-th derivative at a window's centre, unit spacing.

    ``kernel`` is "uniform" (Savitzky–Golay) or "tricube" (lowess). Read-only array.
    """
    half = (window - 1) // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    t = offsets / half
    k = tricube(t / tricube_reach(half)) if kernel == "tricube" else None
    op = fit_operator(t, degree, k)
    w = math.factorial(deriv) * op[deriv] / float(half) ** deriv
    w.setflags(write=False)
    return w


@lru_cache(maxsize=512)
def end_weights(window: int, degree: int, deriv: int, kernel: str = "uniform") -> np.ndarray:
    """Weights (half, window) of the deriv-th derivative at the first half points, unit spacing.

    Point i (0 <= i < half) uses the first full window, samples 0..window-1, fitted around
    itself (for lowess the tricube is centred on the point and reaches its farthest
    sample); the last half points mirror these. Read-only array.
    """
    half = (window - 1) // 2
    i = np.arange(half, dtype=np.float64)[:, None]
    dist = np.arange(window, dtype=np.float64)[None, :] - i
    span = np.max(np.abs(dist), axis=1, keepdims=True)
    t = dist / span
    k = tricube(t / tricube_reach(half)) if kernel == "tricube" else None
    op = fit_operator(t, degree, k)  # (half, degree + 1, window)
    w = math.factorial(deriv) * op[:, deriv, :] / span**deriv
    w.setflags(write=False)
    return w
