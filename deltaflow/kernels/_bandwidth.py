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

Cost, per series of 1,000 samples: the noise MAD (differences and two exact medians by a
branch-free quickselect, numba, per row), the block fits of both roughness orders from
one pass over each row's segments (numba), and small per-block sums; what depends on x
alone (segment and block bases, their maps and derivative factors, the plug-in's
per-window coefficients) is cached per grid.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numba
import numpy as np

from ._localpoly import derivative_rows, window_moments
from ._noise import difference_weights
from ._stencil import run_rows

NOISE_DIFF_ORDER = 6
# the MAD of unit normal noise is 1 / this (1 / Phi^-1(3/4))
NOISE_MAD_SCALE = 1.482602218505602
MAX_BLOCKS = 8
# the noise correction of the roughness keeps at least this fraction of the raw estimate
ROUGHNESS_FLOOR = 1e-3
# largest share of the raw roughness that the fits' noise may make up
NOISE_SHARE = 0.1


def bias_order(degree: int, deriv: int) -> int:
    """Degree q of the leading bias term for a centred fit of ``degree``, derivative ``deriv``."""
    return degree + 1 if (degree + 1 - deriv) % 2 == 0 else degree + 2


def _nanmedian(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """np.nanmedian of a along ``axis`` (NaN, and no warning, for all-NaN lines)."""
    moved = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    a2 = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    out = np.empty((a2.shape[0], 1))
    run_rows(_median_rows, a2, out)
    return out[:, 0].reshape(moved.shape[:-1])


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
    a = _difference_weights(_key(x), m)  # (n - m, m + 1), unit norm
    out = np.empty((y2.shape[0], 1))
    run_rows(_mad_rows, np.ascontiguousarray(y2, dtype=np.float64), out, a)
    return NOISE_MAD_SCALE * out[:, 0]


@lru_cache(maxsize=16)
def _difference_weights(xkey: bytes, m: int) -> np.ndarray:
    """:func:`_noise.difference_weights` of the grid ``xkey``, cached (read-only)."""
    a = difference_weights(np.frombuffer(xkey), m)
    a.setflags(write=False)
    return a


@numba.njit(nogil=True, cache=True)
def _mad_rows(y2, a, out):  # pragma: no cover - compiled
    """Per row: the median absolute deviation of the differences e = sum_i a[:, i] y[i:],
    NaNs ignored, into out (rows, 1). The same numbers as the differences formed column by
    column in NumPy and np.median / np.nanmedian of them, one row at a time in cache."""
    rows, n = y2.shape
    k, w = a.shape
    e = np.empty(k)
    buf = np.empty(k + 1 + _SAMPLE)
    at = np.ascontiguousarray(a.T)  # (w, k): the loops below run along t and vectorise
    for r in range(rows):
        for t in range(k):
            e[t] = 0.0
        for i in range(w):
            for t in range(k):
                e[t] += at[i, t] * y2[r, t + i]
        nan = False
        for t in range(k):
            if e[t] != e[t]:
                nan = True
        med = np.nanmedian(e) if nan else _median_buf(e, buf)
        for t in range(k):
            e[t] = abs(e[t] - med)
        out[r, 0] = np.nanmedian(e) if nan else _median_buf(e, buf)


@numba.njit(nogil=True, cache=True)
def _select(a, k):  # pragma: no cover - compiled
    """The k-th smallest value of a (no NaNs), reordering a in place.

    Quickselect with a median-of-three pivot and branch-free partitions (a compare and an
    unconditional swap per element, which random data cannot mispredict): ~3x faster than
    np.partition on rows of 1,000. Runs of equal values end the search early; after 64
    rounds the rest is sorted, so no input makes it quadratic.
    """
    lo, hi = 0, a.shape[0] - 1
    rounds = 0
    while hi - lo > 16:
        rounds += 1
        if rounds > 64:
            a[lo : hi + 1] = np.sort(a[lo : hi + 1])
            return a[k]
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
        piv = max(x, y)
        j = lo
        for i in range(lo, hi + 1):  # a[lo:j] < piv <= a[j:hi + 1]
            v = a[i]
            a[i] = a[j]
            a[j] = v
            j += v < piv
        if k < j:
            hi = j - 1
            continue
        m = j
        for i in range(j, hi + 1):  # a[j:m] == piv < a[m:hi + 1]
            v = a[i]
            a[i] = a[m]
            a[m] = v
            m += v <= piv
        if k < m:
            return piv
        lo = m
    for i in range(lo + 1, hi + 1):  # insertion sort of the short rest
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
    return a[k]


# the sampled selection: sample size, and how many sample ranks either side of the
# target the bracket reaches (about two standard deviations of the target's sample rank)
_SAMPLE = 32
_SAMPLE_REACH = 6
# below this length the plain quickselect is as fast
_SAMPLED_MIN = 256


@numba.njit(nogil=True, cache=True)
def _median(a):  # pragma: no cover - compiled
    """np.median of a (m,) without NaNs (the same value), reordering a in place."""
    return _median_buf(a, np.empty(a.shape[0] + 1 + _SAMPLE))


@numba.njit(nogil=True, cache=True)
def _median_buf(a, buf):  # pragma: no cover - compiled
    """np.median of a (m,) without NaNs (the same value), with scratch buf (>= m + 1 +
    _SAMPLE); may reorder a.

    From _SAMPLED_MIN samples on, a bracket [lo, hi] around the middle rank comes from a
    sorted sample of _SAMPLE values; one branch-free pass counts the values below lo and
    copies those inside the bracket, and when the middle ranks fall inside (nearly always)
    only that copy (~ a third of a) is searched. Otherwise, or for short a, the quickselect
    runs on all of a. Either way the value is the exact order statistic.
    """
    m = a.shape[0]
    h = m // 2
    if m >= _SAMPLED_MIN:
        step = m // _SAMPLE
        smp = buf[m + 1 : m + 1 + _SAMPLE]
        for i in range(_SAMPLE):  # insertion sort of the sample
            v = a[i * step + step // 2]
            j = i - 1
            while j >= 0 and smp[j] > v:
                smp[j + 1] = smp[j]
                j -= 1
            smp[j + 1] = v
        p = (h * _SAMPLE) // m
        lo = smp[max(0, p - _SAMPLE_REACH)]
        hi = smp[min(_SAMPLE - 1, p + _SAMPLE_REACH)]
        inside = 0
        below = 0
        for i in range(m):  # buf[:inside] = the values in [lo, hi], in order
            v = a[i]
            buf[inside] = v
            inside += (v >= lo) & (v <= hi)
            below += v < lo
        # ranks h - 1 and h both inside: select in the copy
        if below < h and h < below + inside:
            sub = buf[:inside]
            k = h - below
            v = _select(sub, k)
            if m % 2:
                return v
            low = sub[0]  # the largest of the k smallest, which _select left before k
            for i in range(1, k):
                low = max(low, sub[i])
            return (low + v) / 2
    v = _select(a, h)
    if m % 2:
        return v
    low = a[0]  # the largest of the lower half, which _select left before position h
    for i in range(1, h):
        if a[i] > low:
            low = a[i]
    return (low + v) / 2


@numba.njit(nogil=True, cache=True)
def _median_rows(a, out):  # pragma: no cover - compiled
    """Per row of a (rows, n): np.nanmedian's value (np.median's where no NaN) into out."""
    rows, n = a.shape
    buf = np.empty(n)
    scratch = np.empty(n + 1 + _SAMPLE)
    for r in range(rows):
        nan = False
        for t in range(n):
            buf[t] = a[r, t]
            if buf[t] != buf[t]:
                nan = True
        out[r, 0] = np.nanmedian(buf) if nan else _median_buf(buf, scratch)


@numba.njit(nogil=True, cache=True)
def _abs_diff_median_rows(y2, k, norm, out):  # pragma: no cover - compiled
    """Per row of y2 (rows, n): np.median(np.abs(np.diff(row, k) / norm)) into out (rows,
    1), NaN where the row has a NaN: the same numbers as that NumPy expression (the
    differences taken level by level, the exact median), for :func:`_noise.noise_sigma`."""
    rows, n = y2.shape
    m = n - k
    d = np.empty(n)
    buf = np.empty(m + 1 + _SAMPLE)
    for r in range(rows):
        for i in range(n):
            d[i] = y2[r, i]
        for level in range(k):
            for i in range(n - level - 1):
                d[i] = d[i + 1] - d[i]
        e = d[:m]
        nan = False
        for i in range(m):
            v = abs(e[i] / norm)
            nan = nan or v != v
            e[i] = v
        out[r, 0] = np.nan if nan else _median_buf(e, buf)


@numba.njit(nogil=True, cache=True)
def _abs_weighted_median_rows(y2, w, out):  # pragma: no cover - compiled
    """Per row of y2 (rows, n): the median of |sum_j w[:, j] y[j : n - k + j]| (w (n - k,
    k + 1), the terms added in order j = 0..k) into out (rows, 1), NaN where the row has a
    NaN: the same numbers as the NumPy expression in :func:`_noise.noise_sigma`."""
    rows, n = y2.shape
    m, kk = w.shape
    e = np.empty(m)
    buf = np.empty(m + 1 + _SAMPLE)
    for r in range(rows):
        for t in range(m):
            e[t] = w[t, 0] * y2[r, t]
        for j in range(1, kk):
            for t in range(m):
                e[t] = e[t] + w[t, j] * y2[r, t + j]
        nan = False
        for t in range(m):
            v = abs(e[t])
            nan = nan or v != v
            e[t] = v
        out[r, 0] = np.nan if nan else _median_buf(e, buf)


def _split_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous, nearly equal blocks of range(n) as (start, stop) pairs."""
    size, extra = divmod(n, k)
    ends = np.cumsum([size + 1] * extra + [size] * (k - extra))
    return list(zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True))


def _degree_blocks(n: int, q: int, max_blocks: int = MAX_BLOCKS) -> tuple[int, int]:
    """Degree of the blocked fits for the q-th derivative (q + 2, fewer on short series;
    below q: none) and the most blocks a split may have."""
    deg = q + 2
    if n < deg + 2:
        deg = n - 2
    return deg, max(1, min(max_blocks, n // (3 * (deg + 1))))


def block_moments(
    y2: np.ndarray, x: np.ndarray, deg: int, nb_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, block fits of degree ``deg`` of every split into 1..nb_max blocks.

    Returns z (rows, nk, deg + 1), each block's samples projected on its orthonormal
    polynomial basis Q (z gives the fit, its residual and, through R, its coefficients),
    and ss (rows, nk), each block's sum of squares; nk counts the blocks of all splits
    (split b's b + 1 blocks after those of the splits before it). The first columns of z
    are the fits of lower degree and its first blocks those of fewer splits, so one call
    serves every roughness that a window choice needs.

    The splits' block edges cut the series into segments (24 for 8 splits of 1,000
    samples), each inside one block of every split. Each row is projected once on every
    segment's own orthonormal basis; a block's z is the sum over its segments of those
    projections mapped into the block's basis (exact: both bases span the polynomials of
    degree deg on the segment), and its ss the sum of its segments' sums of squares. That
    is ~5 times fewer operations than projecting every block's samples anew.
    """
    basis, segs, maps, owner, nk = _segment_plan(_key(x), deg, nb_max)
    ncoef = deg + 1
    out = np.empty((y2.shape[0], nk * (ncoef + 1)))
    y2 = np.ascontiguousarray(y2, dtype=np.float64)
    run_rows(_segment_fits, y2, out, basis, segs, maps, owner)
    return out[:, : nk * ncoef].reshape(-1, nk, ncoef), out[:, nk * ncoef :]


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _segment_fits(y2, basis, segs, maps, owner, out):  # pragma: no cover - compiled
    """Per row of y2 (rows, n), per segment s (start, stop) of segs (ns, 2): its
    projection m on its basis (the rows of ``basis`` (ncoef, n) over the segment) and its
    sum of squares; m mapped into the blocks' bases of every split at once (``maps``
    (ns, ncoef, nb * ncoef)) and added, with the sum of squares, to the segment's block of
    each split (``owner`` (ns, nb)); out (rows, nk * ncoef + nk) gets z then ss
    (reassociated sums, so that they vectorise)."""
    rows = y2.shape[0]
    ncoef = basis.shape[0]
    ns, nb = owner.shape
    nz = out.shape[1] // (ncoef + 1) * ncoef
    m = np.empty(ncoef)
    v = np.empty(nb * ncoef)
    for r in range(rows):
        orow = out[r]
        for j in range(orow.shape[0]):
            orow[j] = 0.0
        for s in range(ns):
            lo = segs[s, 0]
            size = segs[s, 1] - lo
            ys = y2[r, lo : lo + size]
            acc = 0.0
            for t in range(size):
                acc += ys[t] * ys[t]
            sq = acc
            for c in range(ncoef):
                bs = basis[c, lo : lo + size]
                acc = 0.0
                for t in range(size):
                    acc += bs[t] * ys[t]
                m[c] = acc
            for j in range(nb * ncoef):
                v[j] = 0.0
            for a in range(ncoef):
                ma = m[a]
                row = maps[s, a]
                for j in range(nb * ncoef):
                    v[j] += row[j] * ma
            for b in range(nb):
                k = owner[s, b]
                orow[nz + k] += sq
                for c in range(ncoef):
                    orow[k * ncoef + c] += v[b * ncoef + c]


@lru_cache(maxsize=16)
def _segment_plan(
    xkey: bytes, deg: int, nb_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """What :func:`_segment_fits` needs for the splits of the grid ``xkey`` into 1..nb_max
    blocks: the segments' bases (ncoef, n) (orthonormal polynomials of degree deg on each
    segment, or the unit vectors of a segment of at most ncoef samples), the segments
    (start, stop) (ns, 2), per segment the maps from its basis to its blocks' (ns, ncoef,
    nb_max * ncoef) and the index of its block in each split (ns, nb_max), and the number
    of blocks nk."""
    x = np.frombuffer(xkey)
    n = x.shape[0]
    ncoef = deg + 1
    qmat, bounds = _block_bases(xkey, deg, nb_max)
    edges = np.unique(bounds)
    segs = np.stack([edges[:-1], edges[1:]], axis=1).astype(np.int64)
    ns = segs.shape[0]
    basis = np.zeros((ncoef, n))
    for lo, hi in segs:
        if hi - lo <= ncoef:
            basis[: hi - lo, lo:hi] = np.eye(hi - lo)
        else:
            basis[:, lo:hi] = _block_fit(x, deg, lo, hi)[0].T
    maps = np.zeros((ns, ncoef, nb_max * ncoef))
    owner = np.zeros((ns, nb_max), dtype=np.int64)
    for k, (b, lo, hi) in enumerate(_blocks(n, nb_max)):
        for s, (a, e) in enumerate(segs):
            if lo <= a and e <= hi:
                owner[s, b] = k
                cols = slice(b * ncoef, (b + 1) * ncoef)
                maps[s, :, cols] = basis[:, a:e] @ qmat[a:e, k * ncoef : (k + 1) * ncoef]
    for arr in (basis, segs, maps, owner):
        arr.setflags(write=False)
    return basis, segs, maps, owner, int(bounds.shape[0])


def _key(x: np.ndarray) -> bytes:
    """x (n,) as a cache key of the quantities that depend on the coordinates alone."""
    return np.ascontiguousarray(x, dtype=np.float64).tobytes()


def _blocks(n: int, nb_max: int) -> list[tuple[int, int, int]]:
    """(split, start, stop) of every block of the splits into 1..nb_max blocks."""
    return [(b, lo, hi) for b in range(nb_max) for lo, hi in _split_bounds(n, b + 1)]


@lru_cache(maxsize=16)
def _block_bases(xkey: bytes, deg: int, nb_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' orthonormal bases as columns (n, nk (deg + 1)) and (start, stop) (nk, 2)."""
    x = np.frombuffer(xkey)
    n = x.shape[0]
    ncoef = deg + 1
    blocks = _blocks(n, nb_max)
    qmat = np.zeros((n, len(blocks) * ncoef))
    for k, (_, lo, hi) in enumerate(blocks):
        qm, _, _ = _block_fit(x, deg, lo, hi)
        qmat[lo:hi, k * ncoef : (k + 1) * ncoef] = qm
    bounds = np.array([(lo, hi) for _, lo, hi in blocks], dtype=np.int64).reshape(-1, 2)
    qmat.setflags(write=False)
    bounds.setflags(write=False)
    return qmat, bounds


@lru_cache(maxsize=32)
def _block_derivatives(
    xkey: bytes, deg: int, q: int, nb_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: F (nk, deg - q + 1, deg + 1) with |F z|^2 the sum of squares of the
    fit's q-th derivative over the block's samples (z its basis coefficients); per split,
    the fits' noise in that sum per sigma^2 (nb_max,); each block's split (nk,)."""
    x = np.frombuffer(xkey)
    blocks = _blocks(x.shape[0], nb_max)
    rank = deg - q + 1  # the q-th derivative of a degree-deg polynomial
    factors = np.empty((len(blocks), rank, deg + 1))
    noise = np.zeros(nb_max)
    split = np.empty(len(blocks), dtype=np.int64)
    for k, (b, lo, hi) in enumerate(blocks):
        _, rm, half = _block_fit(x, deg, lo, hi)
        xb = x[lo:hi]
        t = (xb - 0.5 * (xb[0] + xb[-1])) / half
        dq = derivative_rows(t, deg, q)[:, q:] / half**q  # (L, rank): columns below q vanish
        # the derivative of the fit is dq @ inv(R)[q:] @ z; its Gram through a Cholesky
        # factor of dq's, so the sum of squares is |F z|^2 with F (rank, deg + 1)
        chol = np.linalg.cholesky(dq.T @ dq)
        factors[k] = chol.T @ np.linalg.inv(rm)[q:, :]
        noise[b] += np.sum(factors[k] ** 2)  # ||m Q^T||_F^2: the fit's noise in R, per sigma^2
        split[k] = b
    for a in (factors, noise, split):
        a.setflags(write=False)
    return factors, noise, split


def _block_fit(x: np.ndarray, deg: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Orthonormal basis Q (L, deg + 1) and R of the polynomials of degree deg on x[lo:hi]
    (scaled to [-1, 1]), and the block's half length."""
    xb = x[lo:hi]
    mid = 0.5 * (xb[0] + xb[-1])
    half = 0.5 * (xb[-1] - xb[0])
    t = (xb - mid) / half
    qm, rm = np.linalg.qr(t[:, None] ** np.arange(deg + 1))
    return qm, rm, half


def roughness(
    y2: np.ndarray,
    x: np.ndarray,
    q: int,
    sigma: np.ndarray,
    max_blocks: int = MAX_BLOCKS,
    moments: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Mean square of the q-th derivative of each row's signal, from blocked fits (rows,).

    Rows with NaNs give NaN. The fits' own noise contribution (sigma^2 times the squared
    norm of the derivative operator) is subtracted, keeping at least ROUGHNESS_FLOOR of
    the raw value so that the estimate stays positive. ``moments``: :func:`block_moments`
    of y2 for at least this degree and number of blocks (computed here when None).
    """
    n = x.shape[0]
    rows = y2.shape[0]
    deg, nb_max = _degree_blocks(n, q, max_blocks)
    if deg < q:
        return np.full(rows, np.nan)
    ncoef = deg + 1
    if moments is None:
        moments = block_moments(y2, x, deg, nb_max)
    factors, noise, split = _block_derivatives(_key(x), deg, q, nb_max)
    # per split, its first block (split b's blocks are consecutive) and the end
    first = np.r_[np.flatnonzero(np.r_[True, split[1:] != split[:-1]]), split.shape[0]]
    z, ss = moments
    out = np.empty((rows, 1))
    sig = np.ascontiguousarray(sigma, dtype=np.float64).reshape(rows)
    run_rows(_roughness_rows, z, out, factors, noise, first, n, ncoef, row_args=(ss, sig))
    return out[:, 0]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _roughness_rows(z, ss, sigma, factors, noise, first, n, ncoef, out):  # pragma: no cover
    """Per row of z (rows, >= nk, >= ncoef), ss (rows, >= nk) and sigma (rows,): the
    roughness of :func:`roughness` into out (rows, 1), NaN where sigma or the picked raw sum
    is not finite (rows split over threads by ``run_rows``).

    Per block: the residual sum of squares of its fit (ss minus the squared projection,
    at least 0) and the sum of squares of the fit's derivative, |F z|^2; per split the sums
    over its blocks (first[b]:first[b + 1]); Mallows' Cp picks a split (the first least,
    non-finite values never), then the largest split up to it whose fits' noise makes up
    at most NOISE_SHARE of the raw sum; the noise-corrected raw sum of that split, floored
    at ROUGHNESS_FLOOR of it, over n.
    """
    rows = z.shape[0]
    nb = first.shape[0] - 1
    rank = factors.shape[1]
    rss = np.empty(nb)
    raw = np.empty(nb)
    dof_max = n - nb * ncoef
    for r in range(rows):
        for b in range(nb):
            rs = 0.0
            rw = 0.0
            for k in range(first[b], first[b + 1]):
                proj = 0.0
                for c in range(ncoef):
                    proj += z[r, k, c] * z[r, k, c]
                res = ss[r, k] - proj
                rs += res if not res < 0.0 else 0.0
                for i in range(rank):
                    d = 0.0
                    for c in range(ncoef):
                        d += factors[k, i, c] * z[r, k, c]
                    rw += d * d
            rss[b] = rs
            raw[b] = rw
        s2 = sigma[r] * sigma[r]
        ref = rss[nb - 1] / dof_max if dof_max > 0 else 0.0
        ref = max(ref, s2) if ref == ref and s2 == s2 else np.nan
        best = 0
        low = np.inf
        for b in range(nb):
            cp = rss[b] / ref - (n - 2 * ncoef * (b + 1))
            if not np.isfinite(cp):
                cp = np.inf
            if cp < low:
                low = cp
                best = b
        pick = -1
        for b in range(best, -1, -1):
            den = raw[b] if raw[b] > 0 else np.inf
            if s2 * noise[b] / den <= NOISE_SHARE:
                pick = b
                break
        raw_b = raw[max(pick, 0)]
        corr = raw_b - s2 * noise[pick] if pick >= 0 else 0.0
        v = ROUGHNESS_FLOOR * raw_b
        v = max(corr, v) if corr == corr and v == v else np.nan
        out[r, 0] = v / n if np.isfinite(sigma[r]) and np.isfinite(raw_b) else np.nan


@lru_cache(maxsize=64)
def _plugin_coefficients(
    n: int, degree: int, deriv: int, wmin: int, wmax: int, kernel: str
) -> np.ndarray:
    """Per odd window in [wmin, wmax]: the plug-in MSE's interior variance and bias and end
    variance and bias factors (4, windows) at unit spacing; no data enter them."""
    cands = np.arange(wmin, wmax + 1, 2)
    coef = np.array([_window_sums(int(w), degree, deriv, kernel) for w in cands]).T
    coef[:2] *= n - 2 * (cands // 2)  # the interior's n - 2 half points
    coef.setflags(write=False)
    return coef


@lru_cache(maxsize=4096)
def _window_sums(w: int, degree: int, deriv: int, kernel: str) -> tuple[float, ...]:
    """One window's sum(c**2) and (sum(c j**q) / q!)**2 of its centre weights c, and over
    both ends the sums of the same for each end point's weights (bias order degree + 1):
    four numbers, cached per window (the weights themselves are never formed)."""
    m = np.empty((w // 2 + 1, 2))  # the centre, then the first half points
    window_moments(w, degree, deriv, bias_order(degree, deriv), kernel == "tricube", m)
    return (
        float(m[0, 0]),
        float(m[0, 1] ** 2),
        2.0 * float(np.sum(m[1:, 0])),
        2.0 * float(np.sum(m[1:, 1] ** 2)),
    )


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
    cands, var_c, bias_c, end_c, scales = plugin_terms(h, n, degree, deriv, wmin, wmax, kernel)
    out = np.empty(sigma.shape[0], dtype=np.int64)
    _plugin_rows(
        np.asarray(sigma, dtype=np.float64),
        np.asarray(rough, dtype=np.float64),
        np.asarray(rough_end, dtype=np.float64),
        var_c,
        bias_c,
        end_c,
        scales,
        cands,
        out,
    )
    return out


def plugin_terms(
    h: float, n: int, degree: int, deriv: int, wmin: int, wmax: int, kernel: str
) -> tuple[np.ndarray, ...]:
    """What the plug-in MSE of every candidate window takes besides the data: the odd
    candidates (windows,) int64, the variance, centred-bias and end-bias factors (windows,)
    and the spacing's scales of the three terms (3,)."""
    cands = np.arange(wmin, wmax + 1, 2, dtype=np.int64)
    q = bias_order(degree, deriv)
    qe = degree + 1
    coef = _plugin_coefficients(n, degree, deriv, wmin, wmax, kernel)
    scales = np.array([h ** (2 * deriv), h ** (2 * (q - deriv)), h ** (2 * (qe - deriv))])
    return (
        cands,
        coef[0] + coef[2],
        np.ascontiguousarray(coef[1]),
        np.ascontiguousarray(coef[3]),
        scales,
    )


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _plugin_rows(
    sigma, rough, rough_end, var_c, bias_c, end_c, scales, cands, out
):  # pragma: no cover
    """Per row: the candidate of least plug-in MSE, sigma^2 var_c / scales[0] + rough
    bias_c scales[1] + rough_end end_c scales[2] (the first on ties), or the first
    candidate where any MSE is not finite."""
    for r in range(sigma.shape[0]):
        s2 = sigma[r] * sigma[r]
        best = np.inf
        pick = 0
        ok = True
        for j in range(cands.shape[0]):
            v = s2 * var_c[j] / scales[0] + rough[r] * bias_c[j] * scales[1]
            v = v + rough_end[r] * end_c[j] * scales[2]
            if not np.isfinite(v):
                ok = False
                break
            if v < best:
                best = v
                pick = j
        out[r] = cands[pick] if ok else cands[0]


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
    qs = [q] if q == degree + 1 else [q, degree + 1]
    # one set of block fits serves both roughness estimates (the larger degree and split)
    sizes = [_degree_blocks(n, v) for v in qs]
    moments = block_moments(y2, x, max(s[0] for s in sizes), max(s[1] for s in sizes))
    rough = roughness(y2, x, q, sigma, moments=moments)
    rough_end = rough if len(qs) == 1 else roughness(y2, x, qs[1], sigma, moments=moments)
    h = float(x[-1] - x[0]) / (n - 1)
    windows = plugin_window(sigma, rough, rough_end, h, n, degree, deriv, wmin, wmax, kernel)
    return windows, sigma


def warn_at_cap(windows: np.ndarray, n: int, wmax: int, method: str) -> None:
    """RuntimeWarning when automatic windows stopped at ``max_window`` on some series.

    A window at the cap means the plug-in MSE was still falling there: the data ask for a
    wider window, and the derivative carries more noise than the rule would leave. Silent
    when the cap is more than an eighth of the series, where the rule's wider windows did
    not help (on benchmarks/peers.py's 201-401 samples savgol's caps of 201 and 401 gave
    geometric mean ratios to the oracle peer 2.02 / 2.11 against 2.12 at 101, order 1
    interior, and worse over the whole range; on sin + 1 % noise, 1,000 samples, a cap of
    401 took the error 0.0185 -> 0.0136, 4,000 samples 0.079 -> 0.0093).
    """
    if 8 * wmax > n:
        return
    hit = int(np.count_nonzero(np.asarray(windows) >= wmax))
    if hit:
        warnings.warn(
            f"{method}: the automatic window stopped at max_window={wmax} on {hit} of "
            f"{np.size(windows)} series of {n} samples; the data call for a wider window and "
            f"the derivative is noisier than it needs to be: pass a larger max_window (odd, "
            f"up to {n if n % 2 else n - 1}; it sets the chunk halo, (max_window - 1) / 2 "
            "samples) or use method 'spline' or 'auto'",
            RuntimeWarning,
            stacklevel=2,
        )
