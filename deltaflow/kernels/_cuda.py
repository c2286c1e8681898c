"""CUDA stencil apply for CuPy arrays: one launch per stencil, each output written once.

The NumPy path runs numba row loops (``_stencil._apply_numpy``); this is its device twin,
with the same contract: row r of y (rows, n) goes through ``stencils[which[r]]``. Without it
a CuPy array takes the namespace-generic path (one temporary per tap, matmuls for the ends
and a concatenation), measured at 0.12x a device-to-device copy for a 3-point stencil on an
H100 (100,000 x 1,000 float64); ``cupyx.scipy.ndimage.correlate1d`` reached 0.85x for 3
taps but 0.29x for 21.

Two uniform kernels. ``stencil_uniform``: each thread writes OUTPUTS samples a block width
apart, reading its taps through L1 (or from the block's stretch of the row staged in
shared memory, when a measurement asks). ``stencil_blocked``, for the widest stencils:
each thread writes R consecutive samples from a sliding window of R registers over the
staged stretch (one shared-memory read per tap per R outputs; R odd, so a warp's strided
accesses fall in distinct banks), the outputs going back through shared memory in
coalesced stores. Sums run in tap order and in float64 like the NumPy kernels, so the
results agree with the CPU to rounding. Every stencil kernel raises a flag when it writes
a NaN (each input sample reaches some output and 0 * NaN is NaN), which stands in for a
separate read pass over the input under ``nan_policy='raise'``.

Also here, for savgol's automatic window on the device (``_bandwidth_xp``): unit-norm
differences with every product and sum rounded on its own (``window_sums``: the CPU's
numbers), and per-row medians and MADs by a sort in shared memory (``median_mad``).

Compiled by NVRTC on first use, one instantiation at a time (a CUDA device and CuPy
needed; nothing here runs without).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

from ._stencil import stencil_rows
from .registry import NaNInInput

_THREADS = 256  # threads per block of stencil_uniform and the row-wise kernels
# stencil_uniform: OUTPUTS samples per thread, a block width apart, taps through L1 (or
# staged in shared memory when a measurement asks). stencil_blocked: BLOCK_R consecutive
# samples per thread from registers, BLOCK_GROUP: BLOCK_R taps per unrolled step; used from
# BLOCKED_FROM taps. Kernel alone, x a device copy, 100,000 x 1,000 float64, on an H200
# (copy 1,622 GB/s; benchmarks/gpu_parts.py at b332067), for 3 / 5 / 9 / 21 / 51 / 101 taps:
#   uniform 2 outputs, L1          .694 .680 .586 .375 .163 .080
#   uniform 2 outputs, shared      .634 .587 .524 .365 .168 .083
#   blocked R = 7, one tap a step  .565 .534 .505 .438 .279 .143
#   blocked R = 7, 7 taps a step   .611 .590 .561 .482 .328 .182
#   blocked R = 3 / 9 / 11, R taps a step, at 21 / 51 / 101 taps: .435 .277 .140 /
#   .484 .323 .168 / .471 .349 .172
# The L1 kernel is bound by L1 traffic from about 9 taps on (Nsight Compute: 93 % at 21).
OUTPUTS = 2
BLOCK_R = 7
BLOCK_GROUP = True
BLOCKED_FROM = 11
_BLOCK_THREADS_MAX = 256
_SHARED_MAX = 48 << 10  # dynamic shared memory a launch may ask for without opting in

_SOURCE = r"""
template <typename T, int P, bool SHARED>
__global__ void stencil_uniform(const T* __restrict__ y, const double* __restrict__ c,
                                const double* __restrict__ lft, const double* __restrict__ rgt,
                                const long long* __restrict__ rows, int direct, long long n,
                                int h, int w, int wl, int wr, long long tiles,
                                T* __restrict__ out, int* __restrict__ flag) {
    extern __shared__ double smem_u[];
    T* tile = reinterpret_cast<T*>(smem_u);
    const long long b = blockIdx.x;
    const long long k = b / tiles;
    const long long t0 = (b - k * tiles) * (long long)(blockDim.x * P);
    const long long base = (direct ? k : rows[k]) * n;
    const T* yr = y + base;
    if (SHARED) {
        const int span = blockDim.x * P + 2 * h;
#pragma unroll 4
        for (int s = threadIdx.x; s < span; s += blockDim.x) {
            const long long g = t0 - h + s;
            tile[s] = (g >= 0 && g < n) ? yr[g] : T(0);
        }
        __syncthreads();
    }
    bool bad = false;
#pragma unroll
    for (int q = 0; q < P; ++q) {
        const int local = q * blockDim.x + threadIdx.x;
        const long long col = t0 + local;
        if (col < n) {
            double acc = 0.0;
            if (col < h) {
                const double* wt = lft + col * wl;
                for (int j = 0; j < wl; ++j) acc += wt[j] * (double)yr[j];
            } else if (col >= n - h) {
                const double* wt = rgt + (col - (n - h)) * wr;
                const T* ys = yr + (n - wr);
                for (int j = 0; j < wr; ++j) acc += wt[j] * (double)ys[j];
            } else {
                const T* ys = SHARED ? tile + local : yr + (col - h);
#pragma unroll 4
                for (int j = 0; j < w; ++j) acc += c[j] * (double)ys[j];
            }
            bad |= (acc != acc);
            out[base + col] = (T)acc;
        }
    }
    if (bad) *flag = 1;
}

template <typename T, int R, bool GROUP>
__global__ void stencil_blocked(const T* __restrict__ y, const double* __restrict__ c,
                                const double* __restrict__ lft, const double* __restrict__ rgt,
                                const long long* __restrict__ rows, int direct, long long n,
                                int h, int w, int wl, int wr, long long tiles,
                                T* __restrict__ out, int* __restrict__ flag) {
    // shared memory: w weights (double), then per + w input samples, then per outputs
    extern __shared__ double smem_b[];
    const int per = blockDim.x * R;
    double* cw = smem_b;
    T* tile = reinterpret_cast<T*>(smem_b + w);
    T* otile = tile + per + w;
    const long long b = blockIdx.x;
    const long long k = b / tiles;
    const long long t0 = (b - k * tiles) * (long long)per;
    const long long base = (direct ? k : rows[k]) * n;
    const T* yr = y + base;
    for (int s = threadIdx.x; s < w; s += blockDim.x) cw[s] = c[s];
#pragma unroll 4
    for (int s = threadIdx.x; s < per + w; s += blockDim.x) {
        const long long g = t0 - h + s;
        tile[s] = (g >= 0 && g < n) ? yr[g] : T(0);
    }
    __syncthreads();
    // output t0 + l reads tile[l + j] for tap j; this thread's are l = l0 .. l0 + R - 1,
    // and v holds tile[l0 + j .. l0 + j + R - 1] at tap j
    const int l0 = threadIdx.x * R;
    double acc[R];
    T v[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        acc[r] = 0.0;
        v[r] = tile[l0 + r];
    }
    int j = 0;
    if (GROUP) {
        // R taps at a time, unrolled: the window's next R samples read once, no moves
        // but the R that hand the window on
        for (; j + R <= w; j += R) {
            T nx[R];
#pragma unroll
            for (int r = 0; r < R; ++r) nx[r] = tile[l0 + j + R + r];  // <= per + w - 1
#pragma unroll
            for (int t = 0; t < R; ++t) {
                const double ct = cw[j + t];
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int q = r + t;
                    acc[r] += ct * (double)(q < R ? v[q] : nx[q - R]);
                }
            }
#pragma unroll
            for (int r = 0; r < R; ++r) v[r] = nx[r];
        }
    }
    for (; j < w; ++j) {
        const double cj = cw[j];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] += cj * (double)v[r];
#pragma unroll
        for (int r = 0; r < R - 1; ++r) v[r] = v[r + 1];
        v[R - 1] = tile[l0 + j + R];  // at most per + w - 1
    }
    bool bad = false;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const long long col = t0 + l0 + r;
        const double a = acc[r];
        if (col >= h && col < n - h) bad |= (a != a);
        otile[l0 + r] = (T)a;  // the end points' are replaced below
    }
    // the end points of this stretch (left: cols < h, right: cols >= n - h), one per
    // thread: an owner thread doing its R serially would hold the whole block at the
    // barrier (measured: a third of the blocked kernel's stalls)
    const long long lo_end = t0 < h ? h - t0 : 0;  // left end points here: [0, lo_end)
    const long long r0 = (n - h) - t0 > 0 ? (n - h) - t0 : 0;  // right ones: [r0, r1)
    const long long r1 = n - t0 < per ? n - t0 : per;
    const long long nl = lo_end < per ? lo_end : per;
    const long long nr = r1 > r0 ? r1 - r0 : 0;
    __syncthreads();
    for (long long q = threadIdx.x; q < nl + nr; q += blockDim.x) {
        const long long local = q < nl ? q : r0 + (q - nl);
        const long long col = t0 + local;
        double a = 0.0;
        if (col < h) {
            const double* wt = lft + col * wl;
            for (int j = 0; j < wl; ++j) a += wt[j] * (double)yr[j];
        } else {
            const double* wt = rgt + (col - (n - h)) * wr;
            const T* ys = yr + (n - wr);
            for (int j = 0; j < wr; ++j) a += wt[j] * (double)ys[j];
        }
        bad |= (a != a);
        otile[local] = (T)a;
    }
    __syncthreads();
    for (int s = threadIdx.x; s < per; s += blockDim.x) {
        const long long col = t0 + s;
        if (col < n) out[base + col] = otile[s];
    }
    if (bad) *flag = 1;
}

template <typename T>
__global__ void stencil_banded(const T* __restrict__ y, const double* __restrict__ table,
                               const long long* __restrict__ start,
                               const long long* __restrict__ rows, int direct, long long n,
                               int w, long long total, T* __restrict__ out,
                               int* __restrict__ flag) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long k = i / n;
    const long long col = i - k * n;
    const long long base = (direct ? k : rows[k]) * n;
    const T* ys = y + base + start[col];
    const double* wt = table + col * w;
    double acc = 0.0;
    for (int j = 0; j < w; ++j) acc += wt[j] * (double)ys[j];
    if (acc != acc) *flag = 1;
    out[base + col] = (T)acc;
}

// out (rows, k) = sum_j a[t, j] y[r, t + j] for t < k = n - w + 1, every product and sum
// rounded on its own (no fused multiply-add), in tap order: the numba rows' numbers
template <typename T>
__global__ void window_sums(const T* __restrict__ y, const double* __restrict__ a, long long n,
                            int w, long long k, long long total, double* __restrict__ out) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long r = i / k;
    const long long t = i - r * k;
    const T* ys = y + r * n + t;
    const double* at = a + t * w;
    double acc = __dmul_rn(at[0], (double)ys[0]);
    for (int j = 1; j < w; ++j) acc = __dadd_rn(acc, __dmul_rn(at[j], (double)ys[j]));
    out[i] = acc;
}

// ascending bitonic sort of s[0:m2] (m2 a power of two) by the whole block
template <typename T>
__device__ void block_bitonic(T* s, int m2) {
    for (int k = 2; k <= m2; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < m2; i += blockDim.x) {
                const int p = i ^ j;
                if (p > i) {
                    const T a = s[i];
                    const T b = s[p];
                    if ((a > b) == ((i & k) == 0)) {
                        s[i] = b;
                        s[p] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
}

// |s[i] - c| for the i-th smallest of them over sorted s, p = the first index with
// s[p] >= c: the values left of p taken from p - 1 down, those from p up, both ascending
template <typename T>
__device__ T dist_at(const T* s, long long p, long long i, bool left, T c) {
    return left ? fabs(s[p - 1 - i] - c) : fabs(s[p + i] - c);
}

// the k-th smallest (from 0) of |s - c| over sorted s (m), p as above: the k-th of the
// union of two ascending runs, by a binary search on how many of the first k + 1 are left
template <typename T>
__device__ T kth_distance(const T* s, long long m, long long p, T c, long long k) {
    const long long na = p;
    const long long nb = m - p;
    long long lo = k + 1 - nb > 0 ? k + 1 - nb : 0;
    long long hi = k + 1 < na ? k + 1 : na;
    while (lo < hi) {
        const long long i = (lo + hi) / 2;  // i from the left run, k + 1 - i from the right
        if (dist_at(s, p, i, true, c) < dist_at(s, p, k - i, false, c)) lo = i + 1;
        else hi = i;
    }
    const long long j = k + 1 - lo;
    T r = lo > 0 ? dist_at(s, p, lo - 1, true, c) : (T)0;
    if (j > 0) {
        const T b = dist_at(s, p, j - 1, false, c);
        r = (lo > 0 && r > b) ? r : b;
    }
    return r;
}

// per row of e (rows, m): the median, then the median of |e - median|; NaN for rows
// holding NaN. One block per row: the row sorted in shared memory (m2 >= m, padded with
// +inf), then the deviations' order statistics read off the sorted row (no second sort);
// an even count takes the mean of the two middle values, as np.median.
template <typename T>
__global__ void median_mad(const T* __restrict__ e, long long m, int m2, T* __restrict__ med,
                           T* __restrict__ mad) {
    extern __shared__ double smem_m[];
    T* s = reinterpret_cast<T*>(smem_m);
    const T inf = (T)(1.0 / 0.0);
    const T* er = e + (long long)blockIdx.x * m;
    int nan = 0;
    for (int i = threadIdx.x; i < m2; i += blockDim.x) {
        const T v = i < m ? er[i] : inf;
        nan |= (v != v);
        s[i] = v;
    }
    nan = __syncthreads_or(nan);
    block_bitonic(s, m2);
    if (threadIdx.x == 0) {
        const long long h = m / 2;
        const T c = (m & 1) ? s[h] : (T)0.5 * (s[h - 1] + s[h]);
        long long lo = 0, hi = m;  // p: the first index with s[p] >= c
        while (lo < hi) {
            const long long mid = (lo + hi) / 2;
            if (s[mid] < c) lo = mid + 1;
            else hi = mid;
        }
        T d = kth_distance(s, m, lo, c, h);
        if (!(m & 1)) d = (T)0.5 * (kth_distance(s, m, lo, c, h - 1) + d);
        const T qnan = (T)(0.0 / 0.0);
        med[blockIdx.x] = nan ? qnan : c;
        mad[blockIdx.x] = nan ? qnan : d;
    }
}
"""

_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


@functools.cache
def _function(name: str) -> Any:
    """The compiled kernel ``name`` (one instantiation per NVRTC module, so a call
    compiles only the kernels it launches; CuPy keeps them on disk between processes)."""
    import cupy as cp

    module = cp.RawModule(code=_SOURCE, options=("-std=c++14",), name_expressions=[name])
    return module.get_function(name)


_UPLOADS: dict[tuple, Any] = {}
_UPLOAD_MAX_BYTES = 1 << 18


def _upload(a: np.ndarray, dtype: Any) -> Any:
    """``a`` on the current device; small arrays (weights, window starts) are kept per
    content, so repeated calls on one grid send nothing."""
    import cupy as cp

    a = np.ascontiguousarray(a, dtype=dtype)
    if a.nbytes > _UPLOAD_MAX_BYTES:
        return cp.asarray(a)
    digest = hashlib.blake2b(a.tobytes(), digest_size=16).digest()
    key = (cp.cuda.Device().id, a.shape, a.dtype.str, digest)
    hit = _UPLOADS.get(key)
    if hit is None:
        if len(_UPLOADS) >= 256:
            _UPLOADS.clear()
        hit = _UPLOADS[key] = cp.asarray(a)
    return hit


@functools.cache
def _nan_reduction() -> Any:
    import cupy as cp

    return cp.ReductionKernel(
        "T x",
        "int32 y",
        "(x != x) ? 1 : 0",
        "a | b",
        "y = a",
        "0",
        "deltaflow_any_nan",
        reduce_type="int",
    )


def any_nan(y: Any) -> bool:
    """True when CuPy array y holds a NaN: one read pass, no temporary the size of y."""
    return bool(_nan_reduction()(y).item())


def window_sums(y2: Any, a: np.ndarray) -> Any:
    """(rows, n - w + 1) float64: row r of CuPy y2 (rows, n) through the per-point weights
    a (n - w + 1, w), each product and sum rounded separately (the CPU's numbers)."""
    import cupy as cp

    y2 = cp.ascontiguousarray(y2)
    if y2.dtype not in _TYPES:
        y2 = y2.astype(cp.float64)
    rows, n = y2.shape
    k, w = a.shape
    out = cp.empty((rows, k), dtype=cp.float64)
    total = rows * k
    if total:
        args = (y2, _upload(a, np.float64), np.int64(n), np.int32(w), np.int64(k))
        name = f"window_sums<{_TYPES[y2.dtype]}>"
        grid = (-(-total // _THREADS),)
        _function(name)(grid, (_THREADS,), (*args, np.int64(total), out))
    return out


MEDIAN_MAX = 4096  # longest row median_mad sorts in shared memory (32 KiB of float64)


def median_mad(e: Any) -> tuple[Any, Any]:
    """Per row of CuPy e (rows, m), m <= MEDIAN_MAX: (median, median absolute deviation
    from it), both (rows,) float64; NaN for rows holding NaN. The exact order statistics,
    as np.median gives them."""
    import cupy as cp

    e = cp.ascontiguousarray(e, dtype=cp.float64)
    rows, m = e.shape
    if rows == 0 or m == 0:
        return cp.full(rows, cp.nan), cp.full(rows, cp.nan)
    med = cp.empty(rows, dtype=cp.float64)
    mad = cp.empty(rows, dtype=cp.float64)
    m2 = 1 << (m - 1).bit_length()
    threads = min(512, max(32, m2 // 2))
    args = (e, np.int64(m), np.int32(m2), med, mad)
    _function("median_mad<double>")((rows,), (threads,), args, shared_mem=8 * m2)
    return med, mad


def uniform_plan(w: int, n: int, itemsize: int, variant: tuple | None = None) -> tuple:
    """How a uniform stencil of w taps runs on rows of n samples: (kernel template args,
    threads per block, samples per block, shared-memory bytes). ``variant`` forces
    ("uniform", outputs, shared) or ("blocked", r, group), for measurements."""
    if variant is None:
        variant = (
            ("blocked", BLOCK_R, BLOCK_GROUP) if w >= BLOCKED_FROM else ("uniform", OUTPUTS, False)
        )
    if variant[0] == "blocked":
        r = int(variant[1])
        group = bool(variant[2])
        # enough warps to cover the row in one block where it fits (no half-empty tiles)
        warps = -(-n // (32 * r))
        threads = min(_BLOCK_THREADS_MAX, 32 * warps)
        per = threads * r
        smem = 8 * w + (2 * per + w) * itemsize
        if smem <= _SHARED_MAX:
            return ("blocked", r, group), threads, per, smem
        variant = ("uniform", OUTPUTS, False)  # too wide to stage: through L1
    _, p, shared = variant
    per = _THREADS * int(p)
    h = (w - 1) // 2
    smem = (per + 2 * h) * itemsize if shared else 0
    if smem > _SHARED_MAX:
        shared, smem = False, 0
    return ("uniform", int(p), bool(shared)), _THREADS, per, smem


def apply(
    stencils: list[Any],
    which: np.ndarray | None,
    y: Any,
    check_nan: bool = False,
    variant: tuple | None = None,
) -> Any:
    """Row r of CuPy y (..., n) through ``stencils[which[r]]`` (all through stencils[0]
    when ``which`` is None); a new array of y's shape and dtype (float32 or float64).
    ``check_nan``: :class:`NaNInInput` when y holds a NaN (flagged by the kernels from
    their outputs, then confirmed on y: inf - inf flags too)."""
    import cupy as cp

    shape = y.shape
    n = shape[-1]
    if y.dtype not in _TYPES:
        y = y.astype(cp.float64)
    y2 = cp.ascontiguousarray(y).reshape(-1, n)
    out = cp.empty_like(y2)
    nrows = y2.shape[0]
    if nrows == 0 or n == 0:
        return out.reshape(shape)
    t = _TYPES[y2.dtype]
    flag = cp.zeros(1, dtype=cp.int32)
    for st, rows in zip(stencils, stencil_rows(which, len(stencils), nrows), strict=True):
        if rows.size == 0:
            continue
        # every row in order (one stencil): no index array to send, rows[k] is k
        direct = which is None
        drows = cp.empty(1, dtype=cp.int64) if direct else cp.asarray(rows, dtype=cp.int64)
        if st.uniform:
            w = st.center.shape[0]
            h = (w - 1) // 2
            lft = st.left if h else np.zeros((0, 1))
            rgt = st.right if h else np.zeros((0, 1))
            kind, threads, per, smem = uniform_plan(w, n, y2.dtype.itemsize, variant)
            tiles = -(-n // per)
            args = (
                y2,
                _upload(st.center, np.float64),
                _upload(lft, np.float64),
                _upload(rgt, np.float64),
                drows,
                np.int32(direct),
                np.int64(n),
                np.int32(h),
                np.int32(w),
                np.int32(lft.shape[1]),
                np.int32(rgt.shape[1]),
                np.int64(tiles),
                out,
                flag,
            )
            if kind[0] == "blocked":
                name = f"stencil_blocked<{t},{kind[1]},{str(kind[2]).lower()}>"
            else:
                name = f"stencil_uniform<{t},{kind[1]},{str(kind[2]).lower()}>"
            _function(name)((int(rows.size * tiles),), (threads,), args, shared_mem=smem)
        else:
            total = rows.size * n
            args = (
                y2,
                _upload(st.table, np.float64),
                _upload(st.start, np.int64),
                drows,
                np.int32(direct),
                np.int64(n),
                np.int32(st.table.shape[1]),
                np.int64(total),
                out,
                flag,
            )
            _function(f"stencil_banded<{t}>")((-(-total // _THREADS),), (_THREADS,), args)
    if check_nan and int(flag.get()[0]) and any_nan(y2):
        raise NaNInInput("the data holds NaN")
    return out.reshape(shape)
