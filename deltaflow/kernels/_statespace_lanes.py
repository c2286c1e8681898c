"""The state-space mean recursions of ``_statespace`` on LANES series at once, as SIMD lanes.

The row kernels of ``_statespace`` (``_run_row``, ``_smooth_rows``, ``_innovation_rss_rows``,
``_fit_rss_rows``) are the reference: every lane here does the same floating-point operations
in the same order as they do for its row, so the results are identical (the tests hold them
equal). The gains are shared by all series, so the recursion over time is the same sequence of
scalar-times-vector operations for every series: LANES series are its lanes, the loop over
them innermost, and it vectorises (AVX2: 4 lanes per instruction).

How (each measured on 2,000 x 1,000 float64 series, one thread, ms per series):

- Specialised on d = 2, 3, 4 (the kernels below are written out per d by one template,
  ``_lanes_source``: a change is made there and the module's generated part rewritten with
  ``python -m deltaflow.kernels._lanes_source``; tests/test_lanes_source.py holds the two
  equal, and the lanes-against-rows tests check each d): every component of a lane's state
  is a local scalar, all of a time step's work is one loop over the lanes, and the gains of
  the step are loaded once into scalars.
- Every buffer is a flat 1-D array indexed with unsigned integers and offsets that are
  multiples of the compile-time LANES: numba's wraparound of negative indices and offsets
  scaled by run-time shapes left LLVM unable to prove the lanes of one array independent
  ("unsafe indirect dependence"), and it kept the scalar loop.
- A buffer is never read and written at different time steps in one loop (the forward
  pass keeps its running state in the small ``s`` and only writes the predictions ``pa``),
  and the backward pass reads its time index from an array (``tix``): LLVM hoists its
  run-time overlap checks out of the time loop, over all time steps at once, and those
  fail for a buffer read at t and written at t+1, and for a time loop that counts down, so
  the vector loop was compiled but never ran.
- The forward pass stores the predicted means (d per lane and step); the backward pass
  recomputes the filtered state from them and the data (the same operation as the
  forward pass, so the same value) and reads the next prediction instead of forming it
  again; the initial-state sums ``b`` accumulate during the forward pass, in time order.
  The initial-state correction ``Z s0`` and the scale are added when a block is written
  back to the rows (transposed), where the loop runs over lanes with contiguous loads.
- The predictions skip F's unit diagonal (``F[i, i] = 1``: the row kernels formed
  ``0.0 + 1.0 * x``, which is x; they now start from x too): the same values, except that
  an exact -0.0 could come out as +0.0 before.

Measured, one thread, 2,000 x 1,000 series, ms per series (the same session, 2 shared
cores, best of 5-7; the generic lanes kernels of 17166f4 before the arrow):
smoothing (order 1, no fit) cubic 0.0114-0.0117 -> 0.0036-0.0045, quintic 0.0130-0.0168 ->
0.0048-0.0055, septic 0.0222 -> 0.0070-0.0072; innovation sums (one set of gains) 0.0035-0.0042
-> 0.0015, 0.0052-0.0055 -> 0.0017, 0.0066-0.0071 -> 0.0023. Quintic by pass: forward 3.5 ->
1.3 us, backward 3.9 -> 1.5 us, load and store of a block 2.3 -> 1.5 us (the rows transposed
into the lanes one time step at a time, the write-back one time step at a time over lanes).
"""

from __future__ import annotations

import numba
import numpy as np

# series run together, one SIMD lane each; a compile-time constant (see above). Measured one
# thread, 2,000 x 1,000, ms/series smooth / innovation sums, cubic, quintic, septic:
# 8 lanes: 0.0090 / 0.0038, 0.0125 / 0.0048, 0.0186 / 0.0074 (LLVM keeps the scalar loop);
# 16: 0.0036 / 0.0015, 0.0048 / 0.0017, 0.0070 / 0.0023; 32: 0.0054-0.0065 / 0.0025-0.0030,
# 0.0064-0.0079 / 0.0022-0.0034, 0.0069-0.0102 / 0.0027-0.0030 (its blocks of
# n * (d + 2) * 32 doubles outgrow the 512 KB L2 cache)
LANES = 16
U = np.uint64
_L1, _L2, _L3, _L4, _L5, _L6, _L7, _L8, _L9 = (U(k * LANES) for k in range(1, 10))


@numba.njit(nogil=True, cache=True, inline="always")
def _load(y, pick, r0, m, yt):  # pragma: no cover - compiled
    """yt (n * LANES) <- rows ``pick[r0 : r0 + m]`` of y (rows, n), lane-major per time
    step, zeros in the lanes of a last, partial block."""
    n = y.shape[1]
    for t in range(n):
        yo = U(t) * _L1
        for l in range(U(m)):
            yt[yo + l] = y[pick[U(r0) + l], t]
        for l in range(U(m), _L1):
            yt[yo + l] = 0.0


@numba.njit(nogil=True, cache=True, inline="always")
def _correction(minv, s, c):  # pragma: no cover - compiled
    """c (d * LANES) <- -minv @ b per lane, b the sums in ``s[d * LANES:]``: the initial-state
    correction s0 of ``_statespace._initial_state``, the same sums in the same order."""
    d = minv.shape[0]
    for i in range(d):
        ci = U(i) * _L1
        for l in range(_L1):
            c[ci + l] = 0.0
        for j in range(d):
            w = minv[i, j]
            bj = U(d + j) * _L1
            for l in range(_L1):
                c[ci + l] -= w * s[bj + l]


# ----------------------------------------------------------------------------- per d (d = 2, 3, 4)


# --- generated by _lanes_source.py (do not edit by hand): begin ---


@numba.njit(nogil=True, cache=True)
def _forward2(yt, obs, fs, ks, es, pa, s):  # pragma: no cover - compiled
    """:func:`_forward` for d = 2."""
    n = obs.shape[0]
    for i in range(4 * LANES):
        s[i] = 0.0
    for i in range(2 * LANES):
        pa[i] = 0.0
    for t in range(n - 1):
        f01 = fs[t, 0, 1]
        yo = U(t) * _L1
        po = U(t + 1) * _L2
        if obs[t]:
            k0, k1 = ks[t, 0], ks[t, 1]
            e0, e1 = es[t, 0], es[t, 1]
            for l in range(_L1):
                a0 = s[l]
                e = yt[yo + l] - a0
                s[_L2 + l] += e0 * e
                s[_L3 + l] += e1 * e
                m0 = a0 + k0 * e
                m1 = s[_L1 + l] + k1 * e
                v0 = m0 + f01 * m1
                v1 = m1
                s[l] = v0
                s[_L1 + l] = v1
                pa[po + l] = v0
                pa[po + _L1 + l] = v1
        else:
            for l in range(_L1):
                m0 = s[l]
                m1 = s[_L1 + l]
                v0 = m0 + f01 * m1
                v1 = m1
                s[l] = v0
                s[_L1 + l] = v1
                pa[po + l] = v0
                pa[po + _L1 + l] = v1
    t = n - 1
    if obs[t]:
        e0, e1 = es[t, 0], es[t, 1]
        yo = U(t) * _L1
        for l in range(_L1):
            e = yt[yo + l] - s[l]
            s[_L2 + l] += e0 * e
            s[_L3 + l] += e1 * e


@numba.njit(nogil=True, cache=True)
def _backward2(yt, obs, ks, gs, pa, tix, order, s, res, fit):  # pragma: no cover
    """:func:`_backward` for d = 2."""
    n = obs.shape[0]
    want_fit = fit.shape[0] > 0
    t = n - 1
    po = U(t) * _L2
    yo = U(t) * _L1
    k0, k1 = ks[t, 0], ks[t, 1]
    ob = obs[t]
    for l in range(_L1):
        v0 = pa[po + l]
        v1 = pa[po + _L1 + l]
        if ob:
            e = yt[yo + l] - v0
            v0 = v0 + k0 * e
            v1 = v1 + k1 * e
        s[l] = v0
        s[_L1 + l] = v1
        res[yo + l] = v0 if order == 0 else v1
    if want_fit:
        for l in range(_L1):
            fit[yo + l] = s[l]
    for i in range(n - 1):
        t = tix[i]  # n-2 ... 0, read from an array (see the module notes)
        g00, g01 = gs[t, 0, 0], gs[t, 0, 1]
        g10, g11 = gs[t, 1, 0], gs[t, 1, 1]
        po = U(t) * _L2
        pn = U(t + 1) * _L2
        yo = U(t) * _L1
        if obs[t]:
            k0, k1 = ks[t, 0], ks[t, 1]
            for l in range(_L1):
                a0 = pa[po + l]
                e = yt[yo + l] - a0
                m0 = a0 + k0 * e
                m1 = pa[po + _L1 + l] + k1 * e
                d0 = s[l] - pa[pn + l]
                d1 = s[_L1 + l] - pa[pn + _L1 + l]
                v0 = (m0 + g00 * d0) + g01 * d1
                v1 = (m1 + g10 * d0) + g11 * d1
                s[l] = v0
                s[_L1 + l] = v1
                res[yo + l] = v0 if order == 0 else v1
        else:
            for l in range(_L1):
                m0 = pa[po + l]
                m1 = pa[po + _L1 + l]
                d0 = s[l] - pa[pn + l]
                d1 = s[_L1 + l] - pa[pn + _L1 + l]
                v0 = (m0 + g00 * d0) + g01 * d1
                v1 = (m1 + g10 * d0) + g11 * d1
                s[l] = v0
                s[_L1 + l] = v1
                res[yo + l] = v0 if order == 0 else v1
        if want_fit:
            for l in range(_L1):
                fit[yo + l] = s[l]


@numba.njit(nogil=True, cache=True)
def _innovations2(yt, obs, fs, ks, sinv, es, s):  # pragma: no cover - compiled
    """:func:`_innovations` for d = 2."""
    n = obs.shape[0]
    for i in range(5 * LANES):
        s[i] = 0.0
    for t in range(n):
        last = t == n - 1
        yo = U(t) * _L1
        if last:
            f01 = 0.0
        else:
            f01 = fs[t, 0, 1]
        if obs[t]:
            st = sinv[t]
            k0, k1 = ks[t, 0], ks[t, 1]
            e0, e1 = es[t, 0], es[t, 1]
            for l in range(_L1):
                a0 = s[l]
                e = yt[yo + l] - a0
                s[_L4 + l] += e * e * st
                s[_L2 + l] += e0 * e
                s[_L3 + l] += e1 * e
                m0 = a0 + k0 * e
                m1 = s[_L1 + l] + k1 * e
                s[l] = m0 + f01 * m1
                s[_L1 + l] = m1
        elif not last:
            for l in range(_L1):
                m0 = s[l]
                m1 = s[_L1 + l]
                s[l] = m0 + f01 * m1
                s[_L1 + l] = m1


@numba.njit(nogil=True, cache=True, inline="always")
def _store2(res, zc, c, scale, pick, r0, m, out):  # pragma: no cover - compiled
    """:func:`_store` for d = 2."""
    n = out.shape[1]
    for t in range(n):
        z0, z1 = zc[0, t], zc[1, t]
        yo = U(t) * _L1
        for l in range(U(m)):
            out[pick[U(r0) + l], t] = ((res[yo + l] + z0 * c[l]) + z1 * c[_L1 + l]) * scale


@numba.njit(nogil=True, cache=True)
def _forward3(yt, obs, fs, ks, es, pa, s):  # pragma: no cover - compiled
    """:func:`_forward` for d = 3."""
    n = obs.shape[0]
    for i in range(6 * LANES):
        s[i] = 0.0
    for i in range(3 * LANES):
        pa[i] = 0.0
    for t in range(n - 1):
        f01, f02, f12 = fs[t, 0, 1], fs[t, 0, 2], fs[t, 1, 2]
        yo = U(t) * _L1
        po = U(t + 1) * _L3
        if obs[t]:
            k0, k1, k2 = ks[t, 0], ks[t, 1], ks[t, 2]
            e0, e1, e2 = es[t, 0], es[t, 1], es[t, 2]
            for l in range(_L1):
                a0 = s[l]
                e = yt[yo + l] - a0
                s[_L3 + l] += e0 * e
                s[_L4 + l] += e1 * e
                s[_L5 + l] += e2 * e
                m0 = a0 + k0 * e
                m1 = s[_L1 + l] + k1 * e
                m2 = s[_L2 + l] + k2 * e
                v0 = (m0 + f01 * m1) + f02 * m2
                v1 = m1 + f12 * m2
                v2 = m2
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                pa[po + l] = v0
                pa[po + _L1 + l] = v1
                pa[po + _L2 + l] = v2
        else:
            for l in range(_L1):
                m0 = s[l]
                m1 = s[_L1 + l]
                m2 = s[_L2 + l]
                v0 = (m0 + f01 * m1) + f02 * m2
                v1 = m1 + f12 * m2
                v2 = m2
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                pa[po + l] = v0
                pa[po + _L1 + l] = v1
                pa[po + _L2 + l] = v2
    t = n - 1
    if obs[t]:
        e0, e1, e2 = es[t, 0], es[t, 1], es[t, 2]
        yo = U(t) * _L1
        for l in range(_L1):
            e = yt[yo + l] - s[l]
            s[_L3 + l] += e0 * e
            s[_L4 + l] += e1 * e
            s[_L5 + l] += e2 * e


@numba.njit(nogil=True, cache=True)
def _backward3(yt, obs, ks, gs, pa, tix, order, s, res, fit):  # pragma: no cover
    """:func:`_backward` for d = 3."""
    n = obs.shape[0]
    want_fit = fit.shape[0] > 0
    t = n - 1
    po = U(t) * _L3
    yo = U(t) * _L1
    k0, k1, k2 = ks[t, 0], ks[t, 1], ks[t, 2]
    ob = obs[t]
    for l in range(_L1):
        v0 = pa[po + l]
        v1 = pa[po + _L1 + l]
        v2 = pa[po + _L2 + l]
        if ob:
            e = yt[yo + l] - v0
            v0 = v0 + k0 * e
            v1 = v1 + k1 * e
            v2 = v2 + k2 * e
        s[l] = v0
        s[_L1 + l] = v1
        s[_L2 + l] = v2
        res[yo + l] = v0 if order == 0 else (v1 if order == 1 else v2)
    if want_fit:
        for l in range(_L1):
            fit[yo + l] = s[l]
    for i in range(n - 1):
        t = tix[i]  # n-2 ... 0, read from an array (see the module notes)
        g00, g01, g02 = gs[t, 0, 0], gs[t, 0, 1], gs[t, 0, 2]
        g10, g11, g12 = gs[t, 1, 0], gs[t, 1, 1], gs[t, 1, 2]
        g20, g21, g22 = gs[t, 2, 0], gs[t, 2, 1], gs[t, 2, 2]
        po = U(t) * _L3
        pn = U(t + 1) * _L3
        yo = U(t) * _L1
        if obs[t]:
            k0, k1, k2 = ks[t, 0], ks[t, 1], ks[t, 2]
            for l in range(_L1):
                a0 = pa[po + l]
                e = yt[yo + l] - a0
                m0 = a0 + k0 * e
                m1 = pa[po + _L1 + l] + k1 * e
                m2 = pa[po + _L2 + l] + k2 * e
                d0 = s[l] - pa[pn + l]
                d1 = s[_L1 + l] - pa[pn + _L1 + l]
                d2 = s[_L2 + l] - pa[pn + _L2 + l]
                v0 = ((m0 + g00 * d0) + g01 * d1) + g02 * d2
                v1 = ((m1 + g10 * d0) + g11 * d1) + g12 * d2
                v2 = ((m2 + g20 * d0) + g21 * d1) + g22 * d2
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                res[yo + l] = v0 if order == 0 else (v1 if order == 1 else v2)
        else:
            for l in range(_L1):
                m0 = pa[po + l]
                m1 = pa[po + _L1 + l]
                m2 = pa[po + _L2 + l]
                d0 = s[l] - pa[pn + l]
                d1 = s[_L1 + l] - pa[pn + _L1 + l]
                d2 = s[_L2 + l] - pa[pn + _L2 + l]
                v0 = ((m0 + g00 * d0) + g01 * d1) + g02 * d2
                v1 = ((m1 + g10 * d0) + g11 * d1) + g12 * d2
                v2 = ((m2 + g20 * d0) + g21 * d1) + g22 * d2
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                res[yo + l] = v0 if order == 0 else (v1 if order == 1 else v2)
        if want_fit:
            for l in range(_L1):
                fit[yo + l] = s[l]


@numba.njit(nogil=True, cache=True)
def _innovations3(yt, obs, fs, ks, sinv, es, s):  # pragma: no cover - compiled
    """:func:`_innovations` for d = 3."""
    n = obs.shape[0]
    for i in range(7 * LANES):
        s[i] = 0.0
    for t in range(n):
        last = t == n - 1
        yo = U(t) * _L1
        if last:
            f01 = f02 = f12 = 0.0
        else:
            f01, f02, f12 = fs[t, 0, 1], fs[t, 0, 2], fs[t, 1, 2]
        if obs[t]:
            st = sinv[t]
            k0, k1, k2 = ks[t, 0], ks[t, 1], ks[t, 2]
            e0, e1, e2 = es[t, 0], es[t, 1], es[t, 2]
            for l in range(_L1):
                a0 = s[l]
                e = yt[yo + l] - a0
                s[_L6 + l] += e * e * st
                s[_L3 + l] += e0 * e
                s[_L4 + l] += e1 * e
                s[_L5 + l] += e2 * e
                m0 = a0 + k0 * e
                m1 = s[_L1 + l] + k1 * e
                m2 = s[_L2 + l] + k2 * e
                s[l] = (m0 + f01 * m1) + f02 * m2
                s[_L1 + l] = m1 + f12 * m2
                s[_L2 + l] = m2
        elif not last:
            for l in range(_L1):
                m0 = s[l]
                m1 = s[_L1 + l]
                m2 = s[_L2 + l]
                s[l] = (m0 + f01 * m1) + f02 * m2
                s[_L1 + l] = m1 + f12 * m2
                s[_L2 + l] = m2


@numba.njit(nogil=True, cache=True, inline="always")
def _store3(res, zc, c, scale, pick, r0, m, out):  # pragma: no cover - compiled
    """:func:`_store` for d = 3."""
    n = out.shape[1]
    for t in range(n):
        z0, z1, z2 = zc[0, t], zc[1, t], zc[2, t]
        yo = U(t) * _L1
        for l in range(U(m)):
            out[pick[U(r0) + l], t] = (
                ((res[yo + l] + z0 * c[l]) + z1 * c[_L1 + l]) + z2 * c[_L2 + l]
            ) * scale


@numba.njit(nogil=True, cache=True)
def _forward4(yt, obs, fs, ks, es, pa, s):  # pragma: no cover - compiled
    """:func:`_forward` for d = 4."""
    n = obs.shape[0]
    for i in range(8 * LANES):
        s[i] = 0.0
    for i in range(4 * LANES):
        pa[i] = 0.0
    for t in range(n - 1):
        f01, f02, f03, f12, f13, f23 = (
            fs[t, 0, 1],
            fs[t, 0, 2],
            fs[t, 0, 3],
            fs[t, 1, 2],
            fs[t, 1, 3],
            fs[t, 2, 3],
        )
        yo = U(t) * _L1
        po = U(t + 1) * _L4
        if obs[t]:
            k0, k1, k2, k3 = ks[t, 0], ks[t, 1], ks[t, 2], ks[t, 3]
            e0, e1, e2, e3 = es[t, 0], es[t, 1], es[t, 2], es[t, 3]
            for l in range(_L1):
                a0 = s[l]
                e = yt[yo + l] - a0
                s[_L4 + l] += e0 * e
                s[_L5 + l] += e1 * e
                s[_L6 + l] += e2 * e
                s[_L7 + l] += e3 * e
                m0 = a0 + k0 * e
                m1 = s[_L1 + l] + k1 * e
                m2 = s[_L2 + l] + k2 * e
                m3 = s[_L3 + l] + k3 * e
                v0 = ((m0 + f01 * m1) + f02 * m2) + f03 * m3
                v1 = (m1 + f12 * m2) + f13 * m3
                v2 = m2 + f23 * m3
                v3 = m3
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                s[_L3 + l] = v3
                pa[po + l] = v0
                pa[po + _L1 + l] = v1
                pa[po + _L2 + l] = v2
                pa[po + _L3 + l] = v3
        else:
            for l in range(_L1):
                m0 = s[l]
                m1 = s[_L1 + l]
                m2 = s[_L2 + l]
                m3 = s[_L3 + l]
                v0 = ((m0 + f01 * m1) + f02 * m2) + f03 * m3
                v1 = (m1 + f12 * m2) + f13 * m3
                v2 = m2 + f23 * m3
                v3 = m3
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                s[_L3 + l] = v3
                pa[po + l] = v0
                pa[po + _L1 + l] = v1
                pa[po + _L2 + l] = v2
                pa[po + _L3 + l] = v3
    t = n - 1
    if obs[t]:
        e0, e1, e2, e3 = es[t, 0], es[t, 1], es[t, 2], es[t, 3]
        yo = U(t) * _L1
        for l in range(_L1):
            e = yt[yo + l] - s[l]
            s[_L4 + l] += e0 * e
            s[_L5 + l] += e1 * e
            s[_L6 + l] += e2 * e
            s[_L7 + l] += e3 * e


@numba.njit(nogil=True, cache=True)
def _backward4(yt, obs, ks, gs, pa, tix, order, s, res, fit):  # pragma: no cover
    """:func:`_backward` for d = 4."""
    n = obs.shape[0]
    want_fit = fit.shape[0] > 0
    t = n - 1
    po = U(t) * _L4
    yo = U(t) * _L1
    k0, k1, k2, k3 = ks[t, 0], ks[t, 1], ks[t, 2], ks[t, 3]
    ob = obs[t]
    for l in range(_L1):
        v0 = pa[po + l]
        v1 = pa[po + _L1 + l]
        v2 = pa[po + _L2 + l]
        v3 = pa[po + _L3 + l]
        if ob:
            e = yt[yo + l] - v0
            v0 = v0 + k0 * e
            v1 = v1 + k1 * e
            v2 = v2 + k2 * e
            v3 = v3 + k3 * e
        s[l] = v0
        s[_L1 + l] = v1
        s[_L2 + l] = v2
        s[_L3 + l] = v3
        res[yo + l] = v0 if order == 0 else (v1 if order == 1 else (v2 if order == 2 else v3))
    if want_fit:
        for l in range(_L1):
            fit[yo + l] = s[l]
    for i in range(n - 1):
        t = tix[i]  # n-2 ... 0, read from an array (see the module notes)
        g00, g01, g02, g03 = gs[t, 0, 0], gs[t, 0, 1], gs[t, 0, 2], gs[t, 0, 3]
        g10, g11, g12, g13 = gs[t, 1, 0], gs[t, 1, 1], gs[t, 1, 2], gs[t, 1, 3]
        g20, g21, g22, g23 = gs[t, 2, 0], gs[t, 2, 1], gs[t, 2, 2], gs[t, 2, 3]
        g30, g31, g32, g33 = gs[t, 3, 0], gs[t, 3, 1], gs[t, 3, 2], gs[t, 3, 3]
        po = U(t) * _L4
        pn = U(t + 1) * _L4
        yo = U(t) * _L1
        if obs[t]:
            k0, k1, k2, k3 = ks[t, 0], ks[t, 1], ks[t, 2], ks[t, 3]
            for l in range(_L1):
                a0 = pa[po + l]
                e = yt[yo + l] - a0
                m0 = a0 + k0 * e
                m1 = pa[po + _L1 + l] + k1 * e
                m2 = pa[po + _L2 + l] + k2 * e
                m3 = pa[po + _L3 + l] + k3 * e
                d0 = s[l] - pa[pn + l]
                d1 = s[_L1 + l] - pa[pn + _L1 + l]
                d2 = s[_L2 + l] - pa[pn + _L2 + l]
                d3 = s[_L3 + l] - pa[pn + _L3 + l]
                v0 = (((m0 + g00 * d0) + g01 * d1) + g02 * d2) + g03 * d3
                v1 = (((m1 + g10 * d0) + g11 * d1) + g12 * d2) + g13 * d3
                v2 = (((m2 + g20 * d0) + g21 * d1) + g22 * d2) + g23 * d3
                v3 = (((m3 + g30 * d0) + g31 * d1) + g32 * d2) + g33 * d3
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                s[_L3 + l] = v3
                res[yo + l] = (
                    v0 if order == 0 else (v1 if order == 1 else (v2 if order == 2 else v3))
                )
        else:
            for l in range(_L1):
                m0 = pa[po + l]
                m1 = pa[po + _L1 + l]
                m2 = pa[po + _L2 + l]
                m3 = pa[po + _L3 + l]
                d0 = s[l] - pa[pn + l]
                d1 = s[_L1 + l] - pa[pn + _L1 + l]
                d2 = s[_L2 + l] - pa[pn + _L2 + l]
                d3 = s[_L3 + l] - pa[pn + _L3 + l]
                v0 = (((m0 + g00 * d0) + g01 * d1) + g02 * d2) + g03 * d3
                v1 = (((m1 + g10 * d0) + g11 * d1) + g12 * d2) + g13 * d3
                v2 = (((m2 + g20 * d0) + g21 * d1) + g22 * d2) + g23 * d3
                v3 = (((m3 + g30 * d0) + g31 * d1) + g32 * d2) + g33 * d3
                s[l] = v0
                s[_L1 + l] = v1
                s[_L2 + l] = v2
                s[_L3 + l] = v3
                res[yo + l] = (
                    v0 if order == 0 else (v1 if order == 1 else (v2 if order == 2 else v3))
                )
        if want_fit:
            for l in range(_L1):
                fit[yo + l] = s[l]


@numba.njit(nogil=True, cache=True)
def _innovations4(yt, obs, fs, ks, sinv, es, s):  # pragma: no cover - compiled
    """:func:`_innovations` for d = 4."""
    n = obs.shape[0]
    for i in range(9 * LANES):
        s[i] = 0.0
    for t in range(n):
        last = t == n - 1
        yo = U(t) * _L1
        if last:
            f01 = f02 = f03 = f12 = f13 = f23 = 0.0
        else:
            f01, f02, f03, f12, f13, f23 = (
                fs[t, 0, 1],
                fs[t, 0, 2],
                fs[t, 0, 3],
                fs[t, 1, 2],
                fs[t, 1, 3],
                fs[t, 2, 3],
            )
        if obs[t]:
            st = sinv[t]
            k0, k1, k2, k3 = ks[t, 0], ks[t, 1], ks[t, 2], ks[t, 3]
            e0, e1, e2, e3 = es[t, 0], es[t, 1], es[t, 2], es[t, 3]
            for l in range(_L1):
                a0 = s[l]
                e = yt[yo + l] - a0
                s[_L8 + l] += e * e * st
                s[_L4 + l] += e0 * e
                s[_L5 + l] += e1 * e
                s[_L6 + l] += e2 * e
                s[_L7 + l] += e3 * e
                m0 = a0 + k0 * e
                m1 = s[_L1 + l] + k1 * e
                m2 = s[_L2 + l] + k2 * e
                m3 = s[_L3 + l] + k3 * e
                s[l] = ((m0 + f01 * m1) + f02 * m2) + f03 * m3
                s[_L1 + l] = (m1 + f12 * m2) + f13 * m3
                s[_L2 + l] = m2 + f23 * m3
                s[_L3 + l] = m3
        elif not last:
            for l in range(_L1):
                m0 = s[l]
                m1 = s[_L1 + l]
                m2 = s[_L2 + l]
                m3 = s[_L3 + l]
                s[l] = ((m0 + f01 * m1) + f02 * m2) + f03 * m3
                s[_L1 + l] = (m1 + f12 * m2) + f13 * m3
                s[_L2 + l] = m2 + f23 * m3
                s[_L3 + l] = m3


@numba.njit(nogil=True, cache=True, inline="always")
def _store4(res, zc, c, scale, pick, r0, m, out):  # pragma: no cover - compiled
    """:func:`_store` for d = 4."""
    n = out.shape[1]
    for t in range(n):
        z0, z1, z2, z3 = zc[0, t], zc[1, t], zc[2, t], zc[3, t]
        yo = U(t) * _L1
        for l in range(U(m)):
            out[pick[U(r0) + l], t] = (
                (((res[yo + l] + z0 * c[l]) + z1 * c[_L1 + l]) + z2 * c[_L2 + l]) + z3 * c[_L3 + l]
            ) * scale


# --- generated by _lanes_source.py: end ---


@numba.njit(nogil=True, cache=True)
def _forward(d, yt, obs, fs, ks, es, pa, s):  # pragma: no cover - compiled
    """Filter the lanes yt (n * LANES) from a zero initial mean: pa (n * d * LANES) <- the
    predicted means a_t (a_0 = 0), ``s[d * LANES : 2 * d * LANES]`` <- b = sum_t es_t e_t
    (the innovations e_t, in time order). ``s[: d * LANES]`` is the running mean."""
    if d == 2:
        _forward2(yt, obs, fs, ks, es, pa, s)
    elif d == 3:
        _forward3(yt, obs, fs, ks, es, pa, s)
    else:
        _forward4(yt, obs, fs, ks, es, pa, s)


@numba.njit(nogil=True, cache=True)
def _backward(d, yt, obs, ks, gs, pa, tix, order, s, res, fit):  # pragma: no cover
    """Smooth backwards from :func:`_forward`'s predictions: res (n * LANES) <- component
    ``order`` of the smoothed states, fit (n * LANES, or empty) <- component 0; ``s[: d *
    LANES]`` is the running smoothed state. The filtered state at t is formed again from pa
    and yt as the forward pass formed it."""
    if d == 2:
        _backward2(yt, obs, ks, gs, pa, tix, order, s, res, fit)
    elif d == 3:
        _backward3(yt, obs, ks, gs, pa, tix, order, s, res, fit)
    else:
        _backward4(yt, obs, ks, gs, pa, tix, order, s, res, fit)


@numba.njit(nogil=True, cache=True, inline="always")
def _store(d, res, zc, c, scale, pick, r0, m, out):  # pragma: no cover - compiled
    """out[pick[r0 + l], t] <- (res[t, l] + zc[:, t] . c[:, l]) * scale for the block's m
    rows."""
    if d == 2:
        _store2(res, zc, c, scale, pick, r0, m, out)
    elif d == 3:
        _store3(res, zc, c, scale, pick, r0, m, out)
    else:
        _store4(res, zc, c, scale, pick, r0, m, out)


@numba.njit(nogil=True, cache=True)
def smooth_lanes(  # pragma: no cover - compiled
    y, obs, fs, ks, gs, es, minv, z, order, scale, out, fitted, pick
):
    """``_statespace._smooth_rows`` for orders below d (2 <= d <= 4) on the rows ``pick`` of
    y, LANES at a time, results into the same rows of out (the smoothed component
    ``order`` times scale) and of fitted (the smoothed f; or an empty (0, n) array).
    Unobserved samples of y are never read. Identical results."""
    rows = pick.shape[0]
    n = y.shape[1]
    d = minv.shape[0]
    want_fit = fitted.shape[0] > 0
    yt = np.empty(n * LANES)
    pa = np.empty(n * d * LANES)
    res = np.empty(n * LANES)
    fit = np.empty(n * LANES if want_fit else 0)
    s = np.empty(2 * d * LANES)
    c = np.empty(d * LANES)
    zo = np.empty((d, n))
    z0 = np.empty((d, n))
    for j in range(d):
        for t in range(n):
            zo[j, t] = z[t, order, j]
            z0[j, t] = z[t, 0, j]
    tix = np.arange(n - 2, -1, -1)
    for r0 in range(0, rows, LANES):
        m = min(LANES, rows - r0)
        _load(y, pick, r0, m, yt)
        _forward(d, yt, obs, fs, ks, es, pa, s)
        _correction(minv, s, c)
        _backward(d, yt, obs, ks, gs, pa, tix, order, s, res, fit)
        _store(d, res, zo, c, scale, pick, r0, m, out)
        if want_fit:
            _store(d, fit, z0, c, 1.0, pick, r0, m, fitted)


@numba.njit(nogil=True, cache=True)
def innovation_rss_lanes(y, obs, fs, ks, sinv, es, minv, out, pick):  # pragma: no cover
    """``_statespace._innovation_rss_rows`` (2 <= d <= 4) on the rows ``pick`` of y, LANES at
    a time, for G sets of gains at once (fs (G, n-1, d, d), ks (G, n, d), sinv (G, n), es
    (G, n, d), minv (G, d, d)): out (len(pick), G) <- the GLS residual sums of squares of
    the standardised innovations. Each block of rows is loaded once for all G (the
    likelihood's coarse grid reads the batch once, not once per value). Identical sums."""
    rows = pick.shape[0]
    n = y.shape[1]
    ng, d = minv.shape[0], minv.shape[1]
    yt = np.empty(n * LANES)
    s = np.empty((2 * d + 1) * LANES)
    for r0 in range(0, rows, LANES):
        m = min(LANES, rows - r0)
        _load(y, pick, r0, m, yt)
        for gi in range(ng):
            if d == 2:
                _innovations2(yt, obs, fs[gi], ks[gi], sinv[gi], es[gi], s)
            elif d == 3:
                _innovations3(yt, obs, fs[gi], ks[gi], sinv[gi], es[gi], s)
            else:
                _innovations4(yt, obs, fs[gi], ks[gi], sinv[gi], es[gi], s)
            for l in range(m):
                quad = 0.0
                for i in range(d):
                    for j in range(d):
                        quad += s[(d + i) * LANES + l] * minv[gi, i, j] * s[(d + j) * LANES + l]
                out[r0 + l, gi] = s[2 * d * LANES + l] - quad


@numba.njit(nogil=True, cache=True)
def fit_rss_lanes(y, obs, fs, ks, gs, es, minv, z0, out, pick):  # pragma: no cover - compiled
    """``_statespace._fit_rss_rows`` (2 <= d <= 4) on the rows ``pick`` of y, LANES at a time:
    out (len(pick), 1) <- the residual sum of squares of the smoothed fit over the observed
    samples. Identical sums."""
    rows = pick.shape[0]
    n = y.shape[1]
    d = minv.shape[0]
    yt = np.empty(n * LANES)
    pa = np.empty(n * d * LANES)
    res = np.empty(n * LANES)
    nofit = np.empty(0)
    s = np.empty(2 * d * LANES)
    c = np.empty(d * LANES)
    f = np.empty(LANES)
    rss = np.empty(LANES)
    tix = np.arange(n - 2, -1, -1)
    for r0 in range(0, rows, LANES):
        m = min(LANES, rows - r0)
        _load(y, pick, r0, m, yt)
        _forward(d, yt, obs, fs, ks, es, pa, s)
        _correction(minv, s, c)
        _backward(d, yt, obs, ks, gs, pa, tix, 0, s, res, nofit)
        for l in range(_L1):
            rss[l] = 0.0
        for t in range(n):
            if not obs[t]:
                continue
            yo = U(t) * _L1
            for l in range(_L1):
                f[l] = res[yo + l]
            for j in range(d):
                w = z0[t, j]
                cj = U(j) * _L1
                for l in range(_L1):
                    f[l] += w * c[cj + l]
            for l in range(_L1):
                e = yt[yo + l] - f[l]
                rss[l] += e * e
        for l in range(m):
            out[r0 + l, 0] = rss[l]
