"""tvr's accurate reweighting step: each step's least squares solved by Givens rotations.

A reweighting step of the TV fit minimises ``|s - y|^2 + sum_j w_j (D_j s)^2``. Through the
normal equations ``(I + D^T W D) s = y`` (tvr's banded Cholesky / LDL^T kernels) its
condition number is ~16 max(w) / 1, and the solution loses all precision beyond weights of
~1e12; tv_order 3 needs far more (the TV fit of a smooth signal has vanishing fourth
differences almost everywhere, so its weights alpha / |D s| grow without bound). Here the
same least squares is solved from the stacked matrix [I; sqrt(W) D] by Givens rotations:
R starts as I (the identity rows, right side y), and every penalty row is rotated into it
in order of its first column, so R stays upper triangular with the rows' bandwidth (each
row's fill stays inside its own span). Givens QR is insensitive to the scaling of the
rows, so the step is accurate at any weight (one step against a 60-digit solve, 50
jittered samples: <= 6e-11 of the range at weights 1e10 to 1e40; the normal equations:
0.12 off at 1e13, not positive definite at 1e16).

The kernels run L = _CV_V series in lockstep (lanes innermost, every lane's arithmetic
its own, so a series' fit does not depend on its batch), like the LDL^T kernels of tvr.

Editing this module: numba's on-disk cache of the callers in tvr.py (``_fit_rows``,
``_cv_rows``) holds their own copy of these kernels and does not notice a change here;
touch tvr.py or clear its ``__pycache__`` entries (seen while writing this).
"""

from __future__ import annotations

import numba
import numpy as np

# series per group of the lane kernels, one per lane: a compile-time constant, so every loop
# over the lanes is a fixed-length, vectorised one
_CV_V = 8


@numba.njit(nogil=True, cache=True, inline="always")
def _lanes_running(act, big, stop):  # pragma: no cover - compiled
    """Stop the active lanes whose fit changed by at most ``stop`` in this step (act <- 0);
    True while any lane is still active."""
    running = False
    for k in range(act.shape[0]):
        if act[k] > 0.0 and big[k] <= stop[k]:
            act[k] = 0.0
        running = running or act[k] > 0.0
    return running


@numba.njit(nogil=True, cache=True, inline="always")
def _qr_weight_floor(big, alpha):  # pragma: no cover - compiled
    """The floor of |D s| in the Givens step's weights alpha / |D s| (one series): the
    weights span at most 1e6 below the largest difference ``big`` (as tvr's other steps),
    and never exceed 1e100, an overflow guard only (squares of sqrt(w) D stay < 1e103)."""
    return max(1e-6 * big, 1e-100 * alpha, 1e-300)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _irls_qr(y, s, rows, alpha, iters, stop, g, rf, b, buf):  # pragma: no cover
    """Reweighting steps of the TV fit with five-point difference rows (tv_order 3) for
    L = _CV_V series at once, each step solved by Givens rotations of [I; sqrt(W) D]:
    y, s (n, L) with s the starting fit, updated in place; rows (m, 5) the difference
    rows D (m = n - 4); alpha (L,); stop (L,) the largest change of the fit at which a lane
    stops (keeps its fit); g (m, L), rf (5, n, L), b (n + 4, L), buf (9, L) scratch.

    The rotations are square-root free (Gentleman's): R = sqrt(d) U with U unit upper
    triangular, rf[0, i] = d_i and rf[t, i] = U[i, i + t]. R starts as I (d = 1, U = I,
    right side y); penalty row j enters as its plain difference row with its weight w_j as
    its own scale and is rotated into rows j..j + 4 of R (row i + 4 still untouched until
    row j = i: R stays banded), one division and no square root per rotation; d only
    grows from 1. Written out, one loop over the lanes per rotation (~1.3x faster than
    one loop over the lanes for the row's five rotations: the lanes' divisions overlap).
    """
    n = y.shape[0]
    m = rows.shape[0]
    V = _CV_V
    big = buf[0]
    eps = buf[1]
    act = buf[2]
    dls = buf[3]  # the penalty row's scale, rotation to rotation
    rbs = buf[4]  # its right side
    x1s = buf[5]  # its entries right of the pivot
    x2s = buf[6]
    x3s = buf[7]
    x4s = buf[8]
    for k in range(V):
        act[k] = 1.0
        for i in range(n, n + 4):
            b[i, k] = 0.0  # padding: the back substitution reads past the end
    for _ in range(iters):
        # weights alpha / max(|D s|, floor)
        for k in range(V):
            big[k] = 0.0
        for j in range(m):
            r0 = rows[j, 0]
            r1 = rows[j, 1]
            r2 = rows[j, 2]
            r3 = rows[j, 3]
            r4 = rows[j, 4]
            for k in range(V):
                v = abs(
                    r0 * s[j, k]
                    + r1 * s[j + 1, k]
                    + r2 * s[j + 2, k]
                    + r3 * s[j + 3, k]
                    + r4 * s[j + 4, k]
                )
                g[j, k] = v
                big[k] = max(big[k], v)
        for k in range(V):
            eps[k] = _qr_weight_floor(big[k], alpha[k])
        for j in range(m):
            for k in range(V):
                g[j, k] = alpha[k] / max(g[j, k], eps[k])
        # R <- I and right side <- y for the rows no penalty row has reached yet
        for i in range(min(4, n)):
            for k in range(V):
                rf[0, i, k] = 1.0
                rf[1, i, k] = 0.0
                rf[2, i, k] = 0.0
                rf[3, i, k] = 0.0
                rf[4, i, k] = 0.0
                b[i, k] = y[i, k]
        for j in range(m):
            r0 = rows[j, 0]
            r1 = rows[j, 1]
            r2 = rows[j, 2]
            r3 = rows[j, 3]
            r4 = rows[j, 4]
            c1 = j + 1
            c2 = j + 2
            c3 = j + 3
            c4 = j + 4
            for k in range(V):
                rf[0, c4, k] = 1.0
                rf[1, c4, k] = 0.0
                rf[2, c4, k] = 0.0
                rf[3, c4, k] = 0.0
                rf[4, c4, k] = 0.0
                b[c4, k] = y[c4, k]
            # one lanes loop per rotation: the lanes' divisions are independent
            for k in range(V):
                dl = g[j, k]
                d0 = rf[0, j, k]
                dn = d0 + dl * r0 * r0
                inv = 1.0 / dn
                cb = d0 * inv
                sb = dl * r0 * inv
                dls[k] = dl * cb
                rf[0, j, k] = dn
                u = b[j, k]
                b[j, k] = cb * u
                rbs[k] = -r0 * u
                u = rf[1, j, k]
                rf[1, j, k] = cb * u + sb * r1
                x1s[k] = r1 - r0 * u
                u = rf[2, j, k]
                rf[2, j, k] = cb * u + sb * r2
                x2s[k] = r2 - r0 * u
                u = rf[3, j, k]
                rf[3, j, k] = cb * u + sb * r3
                x3s[k] = r3 - r0 * u
                u = rf[4, j, k]
                rf[4, j, k] = cb * u + sb * r4
                x4s[k] = r4 - r0 * u
            for k in range(V):
                dl = dls[k]
                x1 = x1s[k]
                d0 = rf[0, c1, k]
                dn = d0 + dl * x1 * x1
                inv = 1.0 / dn
                cb = d0 * inv
                sb = dl * x1 * inv
                dls[k] = dl * cb
                rf[0, c1, k] = dn
                u = b[c1, k]
                b[c1, k] = cb * u + sb * rbs[k]
                rbs[k] -= x1 * u
                u = rf[1, c1, k]
                rf[1, c1, k] = cb * u + sb * x2s[k]
                x2s[k] -= x1 * u
                u = rf[2, c1, k]
                rf[2, c1, k] = cb * u + sb * x3s[k]
                x3s[k] -= x1 * u
                u = rf[3, c1, k]
                rf[3, c1, k] = cb * u + sb * x4s[k]
                x4s[k] -= x1 * u
            for k in range(V):
                dl = dls[k]
                x2 = x2s[k]
                d0 = rf[0, c2, k]
                dn = d0 + dl * x2 * x2
                inv = 1.0 / dn
                cb = d0 * inv
                sb = dl * x2 * inv
                dls[k] = dl * cb
                rf[0, c2, k] = dn
                u = b[c2, k]
                b[c2, k] = cb * u + sb * rbs[k]
                rbs[k] -= x2 * u
                u = rf[1, c2, k]
                rf[1, c2, k] = cb * u + sb * x3s[k]
                x3s[k] -= x2 * u
                u = rf[2, c2, k]
                rf[2, c2, k] = cb * u + sb * x4s[k]
                x4s[k] -= x2 * u
            for k in range(V):
                dl = dls[k]
                x3 = x3s[k]
                d0 = rf[0, c3, k]
                dn = d0 + dl * x3 * x3
                inv = 1.0 / dn
                cb = d0 * inv
                sb = dl * x3 * inv
                dls[k] = dl * cb
                rf[0, c3, k] = dn
                u = b[c3, k]
                b[c3, k] = cb * u + sb * rbs[k]
                rbs[k] -= x3 * u
                u = rf[1, c3, k]
                rf[1, c3, k] = cb * u + sb * x4s[k]
                x4s[k] -= x3 * u
            # the last rotation: the row's residual is dropped
            for k in range(V):
                dl = dls[k]
                x4 = x4s[k]
                d0 = rf[0, c4, k]
                dn = d0 + dl * x4 * x4
                inv = 1.0 / dn
                rf[0, c4, k] = dn
                b[c4, k] = (d0 * b[c4, k] + dl * x4 * rbs[k]) * inv
        # back substitution U s = b, in place in b (U[i, i + t] = 0 past the end, b padded
        # with zeros); big <- the largest change of the fit
        for k in range(V):
            big[k] = 0.0
        for i in range(n - 1, -1, -1):
            for k in range(V):
                v = (
                    b[i, k]
                    - rf[1, i, k] * b[i + 1, k]
                    - rf[2, i, k] * b[i + 2, k]
                    - rf[3, i, k] * b[i + 3, k]
                    - rf[4, i, k] * b[i + 4, k]
                )
                b[i, k] = v
                big[k] = max(big[k], abs(v - s[i, k]))
                s[i, k] = v if act[k] > 0.0 else s[i, k]
        if not _lanes_running(act, big, stop):
            break


@numba.njit(nogil=True, cache=True, inline="always")
def _load_lanes(y, alpha, tol, k0, yl, sl, al, stop):  # pragma: no cover - compiled
    """Series k0.. of y (r, n) into the lanes (n, V) of the data ``yl`` and the fit ``sl``
    (starting at the data), with their alphas ``al`` and stop thresholds ``stop`` (tol
    times the series' range); a short last group repeats its last series. Returns how many
    lanes hold series of their own."""
    r, n = y.shape
    lanes = yl.shape[1]
    used = min(lanes, r - k0)
    for k in range(lanes):
        src = k0 + min(k, used - 1)
        lo = y[src, 0]
        hi = lo
        for i in range(n):
            v = y[src, i]
            yl[i, k] = v
            sl[i, k] = v
            lo = min(lo, v)
            hi = max(hi, v)
        stop[k] = tol * (hi - lo if hi > lo else 1.0)
        al[k] = alpha[src]
    return used


@numba.njit(nogil=True, cache=True)
def _fit_rows_qr(y, rows, alpha, iters, tol, out):  # pragma: no cover - compiled
    """Fit every series of y (r, n) with its own alpha (r,) by :func:`_irls_qr` (rows
    (n - 4, 5): tv_order 3); out (r, n). Groups of _CV_V series (the last padded with
    copies of its last series), each starting from its data and stopping once a step
    changes its fit by at most tol times its range. A series' fit depends on that series
    alone."""
    r, n = y.shape
    m, w = rows.shape
    lanes = _CV_V
    yl = np.empty((n, lanes))
    sl = np.empty((n, lanes))
    al = np.empty(lanes)
    stop = np.empty(lanes)
    g = np.empty((m, lanes))
    rf = np.empty((5, n, lanes))
    b = np.empty((n + 4, lanes))
    buf = np.empty((9, lanes))
    for k0 in range(0, r, lanes):
        used = _load_lanes(y, alpha, tol, k0, yl, sl, al, stop)
        _irls_qr(yl, sl, rows, al, iters, stop, g, rf, b, buf)
        for k in range(used):
            for i in range(n):
                out[k0 + k, i] = sl[i, k]
