"""CUDA stencil apply for CuPy arrays: one launch per stencil, each output written once.

The NumPy path runs numba row loops (``_stencil._apply_numpy``); this is its device twin,
with the same contract: row r of y (rows, n) goes through ``stencils[which[r]]``. Without it
a CuPy array takes the namespace-generic path (one temporary per tap, matmuls for the ends
and a concatenation), measured at 0.12x a device-to-device copy for a 3-point stencil on an
H100 (100,000 x 1,000 float64); ``cupyx.scipy.ndimage.correlate1d`` reached 0.85x for 3
taps but 0.29x for 21. Here each thread writes OUTPUTS samples of a row; stencils of
SHARED_FROM taps or more read the block's stretch of the row (plus the halo) from shared
memory, staged once, narrower ones through L1. Sums run in tap order and in float64 like
the NumPy kernels, so the results agree with the CPU to rounding.

Compiled by NVRTC on first use (a CUDA device and CuPy needed; nothing here runs without).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

from ._stencil import stencil_rows

_THREADS = 256  # threads per block of the uniform kernel
# each thread writes OUTPUTS samples of a row (a block covers _THREADS * OUTPUTS), which
# keeps several independent loads in flight per thread; stencils of SHARED_FROM taps or more
# stage the block's stretch of the row in shared memory (narrower ones read through L1).
# Measured on an H100 (100,000 x 1,000 float64, kernel alone, x a device copy; 1/2/4/8
# outputs, L1 | shared): 3 taps .62/.69/.54/.67 | .57/.64/.62/.64; 21 taps .37/.41/.40/.40
# | .36/.40/.40/.39; 101 taps .089/.092/.091/.092 | .096/.096/.096/.093
OUTPUTS = 2
SHARED_FROM = 41

_SOURCE = r"""
template <typename T, int P, bool SHARED>
__global__ void stencil_uniform(const T* __restrict__ y, const double* __restrict__ c,
                                const double* __restrict__ lft, const double* __restrict__ rgt,
                                const long long* __restrict__ rows, int direct, long long n,
                                int h, int w, int wl, int wr, long long tiles,
                                T* __restrict__ out) {
    extern __shared__ unsigned char smem[];
    T* tile = reinterpret_cast<T*>(smem);
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
            out[base + col] = (T)acc;
        }
    }
}

template <typename T>
__global__ void stencil_banded(const T* __restrict__ y, const double* __restrict__ table,
                               const long long* __restrict__ start,
                               const long long* __restrict__ rows, int direct, long long n,
                               int w, long long total, T* __restrict__ out) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long k = i / n;
    const long long col = i - k * n;
    const long long base = (direct ? k : rows[k]) * n;
    const T* ys = y + base + start[col];
    const double* wt = table + col * w;
    double acc = 0.0;
    for (int j = 0; j < w; ++j) acc += wt[j] * (double)ys[j];
    out[base + col] = (T)acc;
}
"""

_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _names(outputs: int) -> list[str]:
    out = []
    for t in _TYPES.values():
        out += [f"stencil_uniform<{t},{outputs},{sh}>" for sh in ("false", "true")]
        out.append(f"stencil_banded<{t}>")
    return out


@functools.cache
def _module(outputs: int) -> Any:
    """The kernels compiled for ``outputs`` samples per thread (the six instantiations the
    apply can ask for, not every variant measured)."""
    import cupy as cp

    return cp.RawModule(code=_SOURCE, options=("-std=c++14",), name_expressions=_names(outputs))


def _kernel(name: str) -> Any:
    return _module(OUTPUTS).get_function(name)


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


def apply(stencils: list[Any], which: np.ndarray | None, y: Any) -> Any:
    """Row r of CuPy y (..., n) through ``stencils[which[r]]`` (all through stencils[0]
    when ``which`` is None); a new array of y's shape and dtype (float32 or float64)."""
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
            per = _THREADS * OUTPUTS
            tiles = -(-n // per)
            shared = w >= SHARED_FROM
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
            )
            smem = (per + 2 * h) * y2.dtype.itemsize if shared else 0
            name = f"stencil_uniform<{_TYPES[y2.dtype]},{OUTPUTS},{str(shared).lower()}>"
            _kernel(name)((int(rows.size * tiles),), (_THREADS,), args, shared_mem=smem)
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
            )
            _kernel(f"stencil_banded<{_TYPES[y2.dtype]}>")((-(-total // 256),), (256,), args)
    return out.reshape(shape)
