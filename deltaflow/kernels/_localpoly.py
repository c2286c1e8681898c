"""Local polynomial weights: the linear map from a window's samples to a fitted derivative.

A least-squares polynomial of degree p fitted to a window (optionally weighted by a kernel)
gives every derivative at any point as a fixed linear combination of the window's samples.
Savitzky–Golay filters and the equivalent kernels of lowess are such combinations; the
automatic window choice (``_bandwidth``) needs only their sums of squares and moments,
which :func:`window_moments` gets from the fit's small normal equations in a Legendre basis
without forming the weights (memory O(window), not O(window**2) per window).
Coordinates are scaled to [-1, 1] before fitting so the systems stay well conditioned for
windows of any length.
"""

from __future__ import annotations

import math

import numba
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


@numba.njit(nogil=True, cache=True, error_model="numpy")
def window_moments(w, degree, deriv, q, tricube_kernel, out):  # pragma: no cover - compiled
    """Variance and bias factors of the fit over the window of w samples, every point.

    For the centre point (index 0 of ``out``) and each of the first half = (w - 1) // 2
    points (indices 1..half), with e the weights of the deriv-th derivative at that point
    at unit spacing (the point's own polynomial fit to samples 0..w-1, for lowess with the
    tricube centred on the point and reaching its farthest sample): out[k, 0] = sum(e**2)
    and out[k, 1] = sum(e_j (j - i)**qk) / qk!, qk = q at the centre and degree + 1 at the
    ends. No weight vector is formed: the fit is in the Legendre basis on the window
    scaled to [-1, 1] (a well-conditioned Gram matrix at any length), so the sums come
    from (degree + 1)-square systems; O(w) per point (the uniform kernel's Gram matrix is
    formed once per window).
    """
    half = (w - 1) // 2
    ncoef = degree + 1
    reach = (half + 1.0) / half
    du = 2.0 / (w - 1)  # d u / d j
    phi = np.empty((w, ncoef))
    for j in range(w):
        u = j * du - 1.0
        phi[j, 0] = 1.0
        if ncoef > 1:
            phi[j, 1] = u
        for a in range(1, ncoef - 1):
            phi[j, a + 1] = ((2 * a + 1) * u * phi[j, a] - a * phi[j, a - 1]) / (a + 1)
    # derivatives of the Legendre polynomials at a point: dp[k, a] = P_a^(k)(u)
    dp = np.empty((deriv + 1, ncoef))
    gram = np.empty((ncoef, ncoef))
    sq = np.empty((ncoef, ncoef))
    mom = np.empty(ncoef)
    chol = np.zeros((ncoef, ncoef))
    g = np.empty(ncoef)
    kw = np.ones(w)
    for k in range(half + 1):
        i = half if k == 0 else k - 1  # the point
        qk = q if k == 0 else degree + 1
        span = float(max(i, w - 1 - i))
        for j in range(w):
            if tricube_kernel:  # centred on the point; the uniform kernel's weights are 1
                t = min(abs((j - i) / span / reach), 1.0)
                kw[j] = (1.0 - t * t * t) ** 3
        mom[:] = 0.0
        for j in range(w):
            d = float(j - i)
            pw = kw[j]
            for _ in range(qk):  # an integer power by products (pow per sample is slower)
                pw *= d
            for a in range(ncoef):
                mom[a] += pw * phi[j, a]
        if k == 0 or tricube_kernel:  # the uniform kernel's Gram matrix is the window's
            gram[:, :] = 0.0
            sq[:, :] = 0.0
            for j in range(w):
                kj = kw[j]
                for a in range(ncoef):
                    fa = kj * phi[j, a]
                    for b in range(a + 1):
                        gram[a, b] += fa * phi[j, b]
                        sq[a, b] += fa * kj * phi[j, b]
            for a in range(ncoef):
                for b in range(a + 1, ncoef):
                    gram[a, b] = gram[b, a]
                    sq[a, b] = sq[b, a]
        for a in range(ncoef):  # the basis at the point is phi's row i
            dp[0, a] = phi[i, a]
        for c in range(1, deriv + 1):
            for a in range(ncoef):
                dp[c, a] = 0.0
        for c in range(1, deriv + 1):  # P'_(a+1) = P'_(a-1) + (2a + 1) P_a, per order
            for a in range(ncoef - 1):
                prev = dp[c, a - 1] if a >= 1 else 0.0
                dp[c, a + 1] = prev + (2 * a + 1) * dp[c - 1, a]
        # g = gram^-1 (d^deriv / dj^deriv of the basis at the point), so that the weights
        # are e_j = k_j g . phi_j; by Cholesky (loops rather than np.linalg: a fraction of
        # the compile time)
        if k == 0 or tricube_kernel:
            for a in range(ncoef):
                for b in range(a + 1):
                    v = gram[a, b]
                    for c in range(b):
                        v -= chol[a, c] * chol[b, c]
                    chol[a, b] = math.sqrt(v) if a == b else v / chol[b, b]
        for a in range(ncoef):
            v = dp[deriv, a] * du**deriv
            for c in range(a):
                v -= chol[a, c] * g[c]
            g[a] = v / chol[a, a]
        for a in range(ncoef - 1, -1, -1):
            v = g[a]
            for c in range(a + 1, ncoef):
                v -= chol[c, a] * g[c]
            g[a] = v / chol[a, a]
        var = 0.0
        bias = 0.0
        for a in range(ncoef):
            bias += g[a] * mom[a]
            for b in range(ncoef):
                var += g[a] * sq[a, b] * g[b]
        out[k, 0] = var
        out[k, 1] = bias / math.gamma(qk + 1.0)
