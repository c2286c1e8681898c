"""Compiled steps of spectral's per-series choice on NumPy batches.

Each kernel is the NumPy expression of spectral.py it stands for, taken one row at a time
in cache instead of as a dozen batch-sized temporaries: the medians of bands of a power
spectrum (the noise floor and the signal left in each band), the cutoff rule, the estimated
derivative error of a cutoff, and the fits of the wrap test. The rules and their reasons
are documented where they are used (spectral.py); the generic array-API path there keeps
the NumPy expressions for other namespaces (CuPy).
"""

from __future__ import annotations

import numba
import numpy as np

from ._bandwidth import _SAMPLE, _median_buf


@numba.njit(nogil=True, cache=True)
def abs2_rows(spec, out):  # pragma: no cover - compiled
    """out = |spec|**2 = re**2 + im**2 of spec (rows, nb), one pass without strided
    temporaries (compiled on first use: an eager ufunc cost every import ~0.4 s)."""
    for r in range(spec.shape[0]):
        for k in range(spec.shape[1]):
            z = spec[r, k]
            out[r, k] = z.real * z.real + z.imag * z.imag


@numba.njit(nogil=True, cache=True)
def band_medians(power, bounds, out):  # pragma: no cover - compiled
    """out[r, b] = np.median(power[r, lo:hi]) for each band (lo, hi) of bounds (nbands, 2)
    (the exact order statistics), NaN where the band holds a NaN."""
    buf, scratch = _band_buffers(bounds)
    for r in range(power.shape[0]):
        for b in range(bounds.shape[0]):
            out[r, b] = _band_median(power[r], bounds[b, 0], bounds[b, 1], buf, scratch)


@numba.njit(nogil=True, cache=True)
def _band_buffers(bounds):  # pragma: no cover - compiled
    """Scratch space for :func:`_band_median` over the bands (lo, hi) of bounds (nbands, 2)."""
    width = 1
    for b in range(bounds.shape[0]):
        width = max(width, bounds[b, 1] - bounds[b, 0])
    return np.empty(width), np.empty(width + 1 + _SAMPLE)


@numba.njit(nogil=True, cache=True)
def _band_median(row, lo, hi, buf, scratch):  # pragma: no cover - compiled
    """np.median(row[lo:hi]), NaN where it holds a NaN; buf and scratch: >= hi - lo and
    >= hi - lo + 1 + _SAMPLE values of scratch space (row is left as it is)."""
    nan = False
    for t in range(lo, hi):
        v = row[t]
        buf[t - lo] = v
        nan |= v != v
    return np.nan if nan else _median_buf(buf[: hi - lo], scratch)


@numba.njit(nogil=True, cache=True)
def cutoff_rows(
    power, floor, w, thresh, line, line_side, rolloff, taper, periodic, out
):  # pragma: no cover - compiled
    """spectral._choose_cutoff of each row of power (rows, nb) with its floor (rows,), the
    bin weights w (nb,) = bin**(2 order), into out (rows,).

    The same operations in the same order as the NumPy expression (the median of three
    neighbours, the running sum, the first maximum, the line test), so the same cutoffs;
    a row with a NaN (its whole spectrum, from a NaN sample) gets 0, as there.
    """
    rows, nb = power.shape
    last = nb - 1
    for r in range(rows):
        f = floor[r]
        acc = 0.0
        top = -np.inf
        best = 0
        nan = f != f
        for k in range(nb):
            b = power[r, k]
            v = b
            if 0 < k < last and not b > line * f:
                a = power[r, k - 1]
                c = power[r, k + 1]
                v = max(min(a, b), min(max(a, b), c))
            acc += (v - thresh * f) * w[k]
            if acc != acc:
                nan = True
                break
            if acc > top:
                top = acc
                best = k
        if nan:
            out[r] = 0.0
            continue
        if best >= last:
            out[r] = 1.0
            continue
        at = power[r, best]
        side = max(power[r, best - 1] if best > 0 else 0.0, power[r, best + 1])
        lone = at > line * side
        if periodic:
            lone = lone or side < line_side * f
        roll = 0.0 if (at > line * f and lone) else rolloff
        cut = min(max((best / last) / (1.0 + roll * taper), 0.0), 1.0)
        if periodic:  # a line below the chosen bin keeps its full gain too
            for k in range(best, 0, -1):
                if power[r, k] > line * f:
                    cut = max(cut, k / last)
                    break
        out[r] = cut


@numba.njit(nogil=True, cache=True)
def _gain_at(f, c, span, taper):  # pragma: no cover - compiled
    """spectral._gain at one bin (fraction of Nyquist f) for cutoff c, span = max(c taper,
    1e-12): 1 up to c, a raised cosine down to 0 at c + span (a brick wall for taper 0)."""
    if taper == 0.0:
        return 1.0 if f <= c else 0.0
    u = (f - c) / span
    if u <= 0.0:
        return 1.0
    if u > 0.0 and u < 1.0:
        return 0.5 * (1.0 + np.cos(np.pi * u))
    return 0.0


@numba.njit(nogil=True, cache=True)
def filter_rows(spec, cutoff, filtered, frac, taper, mult, out):  # pragma: no cover
    """out = spec * g * mult for each row of spec (rows, nb) with the gain g of its cutoff
    (rows,) at the bins' fractions of Nyquist frac (nb,), and filtered = spec * g where
    filtered has rows (the smoothed series' spectrum): one pass, no gain array."""
    keep = filtered.shape[0] > 0
    for r in range(spec.shape[0]):
        c = cutoff[r]
        span = max(c * taper, 1e-12)
        for k in range(spec.shape[1]):
            f = spec[r, k] * _gain_at(frac[k], c, span, taper)
            out[r, k] = f * mult[k]
            if keep:
                filtered[r, k] = f


@numba.njit(nogil=True, cache=True)
def estimated_error_rows(
    power,
    cutoff,
    var,
    own,
    top_med,
    frac,
    w,
    bands,
    band_noise,
    m,
    taper,
    ratio,
    single_t,
    has_own,
    use_top,
    out,
):  # pragma: no cover - compiled
    """spectral._estimated_error of each row of power (rows, nb) into out (rows,).

    Per row: cutoff, var, own (rows,) as there; top_med (rows,) the median of the top
    band where ``use_top`` (the noise floor's own median, not taken twice); frac (nb,) the
    bins as fractions of Nyquist, w (nb,) their (bin / m)**(2 order), bands (nbands, 2),
    band_noise (nbands,) each median band's threshold per unit floor.
    """
    rows, nb = power.shape
    g = np.empty(nb)
    buf, scratch = _band_buffers(bands)
    for r in range(rows):
        c = cutoff[r]
        span = max(c * taper, 1e-12)
        kept = 0.0
        for k in range(nb):
            gk = _gain_at(frac[k], c, span, taper)
            g[k] = gk
            kept += gk * gk * w[k]
        floor = m * var[r]
        ref = floor
        if has_own:
            mo = m * own[r]
            ref = mo if (mo > floor or mo != mo) else floor
        err = floor * kept
        for i in range(bands.shape[0]):
            lo, hi = bands[i, 0], bands[i, 1]
            f = floor if i == 0 else ref
            if has_own and hi - lo == 1:
                p = power[r, lo]
                excess = p - f if p > single_t * f else 0.0
            else:
                if i == 0 and use_top:
                    med = top_med[r]
                else:
                    med = _band_median(power[r], lo, hi, buf, scratch)
                excess = med / ratio - f
                if not excess > band_noise[i] * f:
                    excess = 0.0
            weight = 0.0
            for k in range(lo, hi):
                weight += w[k] if i == 0 else (1.0 - g[k]) ** 2 * w[k]
            err += excess * weight
        out[r] = err / (m * m)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def wrap_mismatch_rows(y, lw, rw, lstart, rstart, mad_normal, out):  # pragma: no cover
    """_spectral_wrap.wrap_mismatch of each row of y (rows, n) into out (rows,); NaN where the
    row has a NaN.

    Per point j of lstart / rstart (the wrap first, then P interior points): the left fit's
    value and slope (weights lw[j] (2, k) on the k samples from lstart[j]) minus the right
    fit's (rw[j] on those from rstart[j]); the wrap's differences over the interior ones'
    median absolute size (over ``mad_normal``), the larger of the two. Uniform grids pass
    one set of weights (1, 2, k) for every point, irregular ones a set per point (1 + P, 2,
    k), C-contiguous either way: a broadcast view (stride 0) kept the loop below scalar, 2-3x
    slower. The four dot products of a point run together (reassociated sums, so they
    vectorise).
    """
    rows, n = y.shape
    k = lw.shape[2]
    npts = lstart.shape[0] - 1
    per_point = lw.shape[0] > 1
    dv = np.empty(npts)
    ds = np.empty(npts)
    scratch = np.empty(npts + 1 + _SAMPLE)
    for r in range(rows):
        yr = y[r]
        lo = np.min(yr)
        hi = np.max(yr)
        if lo != lo or hi != hi:  # a NaN in the row
            out[r] = np.nan
            continue
        v0 = 0.0
        s0 = 0.0
        for j in range(npts + 1):
            ya = yr[lstart[j] : lstart[j] + k]
            yb = yr[rstart[j] : rstart[j] + k]
            jw = j if per_point else 0
            lv, ls, rv, rs = lw[jw, 0], lw[jw, 1], rw[jw, 0], rw[jw, 1]
            av = 0.0
            bv = 0.0
            as_ = 0.0
            bs = 0.0
            for t in range(k):
                av += lv[t] * ya[t]
                bv += rv[t] * yb[t]
                as_ += ls[t] * ya[t]
                bs += rs[t] * yb[t]
            if j == 0:
                v0 = av - bv
                s0 = as_ - bs
            else:
                dv[j - 1] = abs(av - bv)
                ds[j - 1] = abs(as_ - bs)
        tiny = 1e-12 * (hi - lo + 1e-300)
        zv = abs(v0) / (_median_buf(dv, scratch) / mad_normal + tiny)
        zs = abs(s0) / (_median_buf(ds, scratch) / mad_normal + tiny)
        out[r] = max(zv, zs)
