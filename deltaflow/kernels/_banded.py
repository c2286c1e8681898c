"""Banded building blocks for penalised splines: B-spline bases, penalties, selected inverses.

Everything here depends on the sample coordinates only (or applies a shared banded
operator to a batch of series), so a kernel builds it once per call. Banded symmetric
matrices use SciPy's upper storage: ``ab[kd + i - j, j] = a[i, j]`` for ``i <= j``.
"""

from __future__ import annotations

import numba
import numpy as np


def clamped_knots(u: np.ndarray, k: int) -> np.ndarray:
    """Knots of the degree-k spline space with a knot at every sample (ends repeated k+1 times)."""
    return np.concatenate([np.full(k, u[0]), u, np.full(k, u[-1])])


@numba.njit(nogil=True, cache=True)
def _basis_at(t, k, x, span, nder, out):  # pragma: no cover - compiled
    """Derivatives 0..nder of the k+1 B-splines nonzero on knot span ``span`` at x.

    out[r, i] is the r-th derivative of B_{span-k+i, k} at x.
    """
    vals = np.zeros((k + 1, k + 1))  # vals[p, i] = B_{span-p+i, p}(x)
    vals[0, 0] = 1.0
    for p in range(1, k + 1):
        for i in range(p + 1):
            j = span - p + i
            v = 0.0
            if i >= 1:
                den = t[j + p] - t[j]
                if den > 0.0:
                    v += (x - t[j]) / den * vals[p - 1, i - 1]
            if i <= p - 1:
                den = t[j + p + 1] - t[j + 1]
                if den > 0.0:
                    v += (t[j + p + 1] - x) / den * vals[p - 1, i]
            vals[p, i] = v
    work = np.zeros(k + 1)
    nxt = np.zeros(k + 1)
    for r in range(nder + 1):
        if r > k:
            for i in range(k + 1):
                out[r, i] = 0.0
            continue
        p0 = k - r
        for i in range(p0 + 1):
            work[i] = vals[p0, i]
        # raise the degree from p0 to k, differentiating at each step
        for p in range(p0 + 1, k + 1):
            for i in range(p + 1):
                j = span - p + i
                v = 0.0
                if i >= 1:
                    den = t[j + p] - t[j]
                    if den > 0.0:
                        v += p * work[i - 1] / den
                if i <= p - 1:
                    den = t[j + p + 1] - t[j + 1]
                    if den > 0.0:
                        v -= p * work[i] / den
                nxt[i] = v
            for i in range(p + 1):
                work[i] = nxt[i]
        for i in range(k + 1):
            out[r, i] = work[i]


@numba.njit(nogil=True, cache=True)
def basis_at_samples(u, k, nder):  # pragma: no cover - compiled
    """Derivatives 0..nder of the basis on knots ``clamped_knots(u, k)`` at every sample.

    Returns vals (nder+1, n, k+1): vals[r, i, j] is the r-th derivative of basis function
    ``start(i) + j`` at u[i], where start(i) = min(i, n-2).
    """
    n = u.shape[0]
    t = np.empty(n + 2 * k)
    for i in range(k):
        t[i] = u[0]
        t[n + k + i] = u[n - 1]
    for i in range(n):
        t[k + i] = u[i]
    out = np.empty((nder + 1, n, k + 1))
    tmp = np.empty((nder + 1, k + 1))
    for i in range(n):
        s = min(i, n - 2)
        _basis_at(t, k, u[i], s + k, nder, tmp)
        out[:, i, :] = tmp
    return out


@numba.njit(nogil=True, cache=True)
def penalty_banded(u, k, m, gx, gw):  # pragma: no cover - compiled
    """Upper banded storage (k+1, n+k-1) of P[a, b] = integral of B_a^(m) B_b^(m) over [u0, u_-1].

    Exact: Gauss–Legendre nodes ``gx`` and weights ``gw`` on [-1, 1] with at least m points.
    """
    n = u.shape[0]
    nb = n + k - 1
    t = np.empty(n + 2 * k)
    for i in range(k):
        t[i] = u[0]
        t[n + k + i] = u[n - 1]
    for i in range(n):
        t[k + i] = u[i]
    ab = np.zeros((k + 1, nb))
    tmp = np.empty((m + 1, k + 1))
    for s in range(n - 1):
        a = u[s]
        h = u[s + 1] - u[s]
        for g in range(gx.shape[0]):
            xg = a + 0.5 * h * (gx[g] + 1.0)
            wg = 0.5 * h * gw[g]
            _basis_at(t, k, xg, s + k, m, tmp)
            for i in range(k + 1):
                di = tmp[m, i] * wg
                for j in range(i, k + 1):
                    ab[k + i - j, s + j] += di * tmp[m, j]
    return ab


@numba.njit(nogil=True, cache=True)
def gram_banded(vals0, w):  # pragma: no cover - compiled
    """Upper banded storage of B^T diag(w) B for sample basis values vals0 (n, k+1)."""
    n, kp1 = vals0.shape
    k = kp1 - 1
    ab = np.zeros((kp1, n + k - 1))
    for i in range(n):
        s = min(i, n - 2)
        wi = w[i]
        if wi == 0.0:
            continue
        for a in range(kp1):
            va = vals0[i, a] * wi
            for b in range(a, kp1):
                ab[k + a - b, s + b] += va * vals0[i, b]
    return ab


@numba.njit(nogil=True, cache=True)
def selected_inverse(ub):  # pragma: no cover - compiled
    """Entries of A^{-1} inside the band, from A's upper Cholesky factor U (A = U^T U).

    ``ub`` is U in upper banded storage (kd+1, N); returns S (N, kd+1) with
    S[i, l] = (A^{-1})[i, i+l]. Row i from the rows below it (Hutchinson–de Hoog /
    Takahashi recursion), O(N kd^2).
    """
    kd = ub.shape[0] - 1
    nb = ub.shape[1]
    sel = np.zeros((nb, kd + 1))
    for i in range(nb - 1, -1, -1):
        uii = ub[kd, i]
        top = min(i + kd, nb - 1)
        for j in range(top, i - 1, -1):
            acc = 0.0
            for q in range(i + 1, top + 1):
                uiq = ub[kd + i - q, q]
                if q <= j:
                    acc += uiq * sel[q, j - q]
                else:
                    acc += uiq * sel[j, q - j]
            if j == i:
                sel[i, 0] = (1.0 / uii - acc) / uii
            else:
                sel[i, j - i] = -acc / uii
    return sel


def trace_product(sel: np.ndarray, ab: np.ndarray) -> float:
    """trace(S @ M) for symmetric S given by ``selected_inverse`` and M in upper banded storage."""
    kd = ab.shape[0] - 1
    total = float(np.dot(sel[:, 0], ab[kd]))
    for lag in range(1, kd + 1):
        # M[i, i+lag] sits at ab[kd - lag, i + lag]
        total += 2.0 * float(np.dot(sel[:-lag, lag], ab[kd - lag, lag:]))
    return total


@numba.njit(nogil=True, cache=True)
def basis_transpose_apply(vals0, w, y, out):  # pragma: no cover - compiled
    """out[r] = B^T diag(w) y[r] for every row r; y (rows, n), out (rows, n+k-1)."""
    rows, n = y.shape
    kp1 = vals0.shape[1]
    for r in range(rows):
        orow = out[r]
        yr = y[r]
        for j in range(orow.shape[0]):
            orow[j] = 0.0
        for i in range(n):
            if w[i] == 0.0:
                continue
            v = yr[i] * w[i]
            s = min(i, n - 2)
            for a in range(kp1):
                orow[s + a] += vals0[i, a] * v


@numba.njit(nogil=True, cache=True)
def basis_apply(vals, c, out):  # pragma: no cover - compiled
    """out[r] = B c[r] for every row r: vals (n, k+1) basis values, c (rows, n+k-1)."""
    rows = c.shape[0]
    n, kp1 = vals.shape
    for r in range(rows):
        cr = c[r]
        orow = out[r]
        for i in range(n):
            s = min(i, n - 2)
            acc = 0.0
            for a in range(kp1):
                acc += vals[i, a] * cr[s + a]
            orow[i] = acc
