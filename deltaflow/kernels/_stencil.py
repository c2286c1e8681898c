"""Linear stencils along the last axis: weight tables built once from x, applied to a batch.

A :class:`Stencil` says, for every output point i, which contiguous run of input samples
it combines and with which weights. On uniform x the interior shares one weight vector
(a convolution) and only the ``h`` points at each end have their own rows; on irregular x
every point has its own row of a (n, w) table. Finite differences (Fornberg weights) and
local polynomial fits (Savitzky–Golay) both reduce to such a table, so both share one
fast apply: numba loops for NumPy (one read and one write per sample, rows split over
threads), CUDA kernels for CuPy (``_cuda``), whole-array slicing arithmetic for other
array-API namespaces. Stencils are kept per grid and settings (:func:`cached_stencil`):
building one costs ~0.4 ms of Python even for 3 taps, more than applying it to a chunk
of a few thousand series on a GPU.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numba
import numpy as np

from ._xp import any_nan, asarray_like, is_cupy, is_numpy
from .registry import NaNInInput


def fornberg_weights(x0: np.ndarray, nodes: np.ndarray, m: int) -> np.ndarray:
    """Weights of the m-th derivative at points x0 (k,) from nodes (k, w): shape (k, w).

    Fornberg's recursion (Math. Comp. 51, 1988), vectorised over the k evaluation points;
    loops run over the stencil width only. Exact for polynomials of degree < w.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    nodes = np.asarray(nodes, dtype=np.float64)
    k, w = nodes.shape
    c = np.zeros((m + 1, k, w))
    c[0, :, 0] = 1.0
    c1 = np.ones(k)
    c4 = nodes[:, 0] - x0
    for i in range(1, w):
        mn = min(i, m)
        c2 = np.ones(k)
        c5 = c4
        c4 = nodes[:, i] - x0
        for j in range(i):
            c3 = nodes[:, i] - nodes[:, j]
            c2 = c2 * c3
            if j == i - 1:
                for d in range(mn, 0, -1):
                    c[d, :, i] = c1 * (d * c[d - 1, :, i - 1] - c5 * c[d, :, i - 1]) / c2
                c[0, :, i] = -c1 * c5 * c[0, :, i - 1] / c2
            for d in range(mn, 0, -1):
                c[d, :, j] = (c4 * c[d, :, j] - d * c[d - 1, :, j]) / c3
            c[0, :, j] = c4 * c[0, :, j] / c3
        c1 = c2
    return c[m]


@dataclass(frozen=True)
class Stencil:
    """Weights for every output point of a series of n samples.

    Uniform form (``center`` set): interior points i in [h, n-h) use
    ``sum_j center[j] * y[i-h+j]``; the first h points use rows of ``left`` on samples
    [0, left.shape[1]) and the last h use rows of ``right`` on the last right.shape[1].
    Banded form (``table`` set): point i uses ``sum_j table[i, j] * y[start[i] + j]``.
    """

    n: int
    center: np.ndarray | None = None
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    table: np.ndarray | None = None
    start: np.ndarray | None = None

    @property
    def uniform(self) -> bool:
        return self.center is not None

    @property
    def half_width(self) -> int:
        """Samples each interior point reaches on each side."""
        if self.center is not None:
            return (self.center.shape[0] - 1) // 2
        i = np.arange(self.n)
        w = self.table.shape[1]
        return int(max(np.max(i - self.start), np.max(self.start + w - 1 - i)))


_CACHE: OrderedDict[tuple, tuple[Stencil, int]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_USED = [0]
CACHE_BYTES = 64 << 20  # stencils kept, least recently used out first


def grid_key(x: np.ndarray) -> tuple:
    """What a stencil depends on in increasing coordinates x: (n, step) when uniform (the
    uniform stencils use the spacing alone), else (n, a digest of the values)."""
    from .api import uniform_step

    n = x.shape[0]
    step = uniform_step(x)
    if step is not None:
        return ("uniform", n, step)
    data = np.ascontiguousarray(x, dtype=np.float64).tobytes()
    return ("grid", n, hashlib.blake2b(data, digest_size=16).digest())


def cached_stencil(key: tuple[Hashable, ...], build: Callable[[], Stencil]) -> Stencil:
    """The stencil stored under ``key``, built (and stored, its arrays made read-only) on
    a miss; thread-safe, bounded by CACHE_BYTES."""
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit[0]
    st = build()
    size = 0
    for a in (st.center, st.left, st.right, st.table, st.start):
        if a is not None:
            a.setflags(write=False)
            size += a.nbytes
    with _CACHE_LOCK:
        if key not in _CACHE and size <= CACHE_BYTES:
            _CACHE[key] = (st, size)
            _CACHE_USED[0] += size
            while _CACHE_USED[0] > CACHE_BYTES:
                _, (_, freed) = _CACHE.popitem(last=False)
                _CACHE_USED[0] -= freed
    return st


def local_window_starts(n: int, h: int, w: int) -> np.ndarray:
    """Start of the w-sample window for each point: centred (i - h) inside, clamped at ends."""
    return np.clip(np.arange(n) - h, 0, n - w).astype(np.int64)


def banded_stencil(n: int, groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Stencil:
    """A banded stencil from groups of (points (k,), window starts (k,), weights (k, width)).

    Windows of different widths share one table as wide as the widest; narrower rows sit
    at a column offset (zeros elsewhere) so that every row reads only samples inside [0, n).
    """
    w = max(weights.shape[1] for _, _, weights in groups)
    table = np.zeros((n, w))
    start = np.zeros(n, dtype=np.int64)
    for points, begins, weights in groups:
        if points.size == 0:
            continue
        row_start = np.minimum(begins, n - w)
        offset = begins - row_start
        table[points[:, None], offset[:, None] + np.arange(weights.shape[1])] = weights
        start[points] = row_start
    return Stencil(n=n, table=table, start=start)


# ----------------------------------------------------------------------------- apply

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
# below this many samples in a batch, threads cost more than they give
_THREAD_MIN_SIZE = 1 << 20


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    return _POOL


def _threads_for(size: int) -> int:
    """Threads to split a batch over: all cores from the main thread, one inside a worker.

    Inside a Dask (or any other) worker thread the caller already runs tasks in parallel,
    so the kernel stays on its thread and never oversubscribes the cores.
    """
    if size < _THREAD_MIN_SIZE or threading.current_thread() is not threading.main_thread():
        return 1
    return os.cpu_count() or 1


def run_rows(
    func: Any, y2: np.ndarray, out2: np.ndarray, *args: Any, row_args: tuple[Any, ...] = ()
) -> None:
    """Run a nogil numba row kernel ``func(y2, *row_args, *args, out2)`` split over threads
    by rows; ``row_args`` are further arrays with one entry per row of y2, split with it."""
    rows = y2.shape[0]
    nt = min(_threads_for(y2.size), rows)
    if nt <= 1:
        func(y2, *row_args, *args, out2)
        return
    bounds = np.linspace(0, rows, nt + 1).astype(int)
    futs = [
        _pool().submit(func, y2[a:b], *(r[a:b] for r in row_args), *args, out2[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]
    for f in futs:
        f.result()


@numba.njit(nogil=True, cache=True)
def _flag_nan(orow, flag):  # pragma: no cover - compiled
    """Set flag[0] when the output row holds a NaN (a branch-free OR over the row)."""
    bad = False
    for i in range(orow.shape[0]):
        bad |= orow[i] != orow[i]
    if bad:
        flag[0] = 1


@numba.njit(nogil=True, cache=True)
def _apply_uniform(y, rows, center, left_t, right_t, out, flag):  # pragma: no cover - compiled
    """Per row listed in ``rows``: the interior as a convolution with ``center``, the ends
    by their rows (out's other rows untouched).

    The interior accumulates tap by tap in tap order, four taps per pass over the row
    (each point's sum is the same sequence of rounded products and additions as one tap
    per pass, so the result is identical, with a quarter of the loads and stores of it).
    The end rows come transposed, ``left_t`` (wl, h) and ``right_t`` (wr, h): their sums
    (in float64, over the samples in order) advance together, one sample per pass, instead
    of one row's chain of dependent additions at a time. With ``flag`` of length 1, a NaN
    in a row's output sets flag[0] (every input sample reaches some output, 0 * NaN is NaN).
    """
    n = y.shape[1]
    w = center.shape[0]
    h = (w - 1) // 2
    m = n - 2 * h
    wl = left_t.shape[0]
    wr = right_t.shape[0]
    acc_l = np.empty(h)
    acc_r = np.empty(h)
    for r in rows:
        yr = y[r]
        mid = out[r, h : h + m]
        c0 = center[0]
        for i in range(m):
            mid[i] = c0 * yr[i]
        j = 1
        while j + 4 <= w:
            ca = center[j]
            cb = center[j + 1]
            cc = center[j + 2]
            cd = center[j + 3]
            ya = yr[j : j + m]
            yb = yr[j + 1 : j + 1 + m]
            yc = yr[j + 2 : j + 2 + m]
            yd = yr[j + 3 : j + 3 + m]
            for i in range(m):
                mid[i] = (((mid[i] + ca * ya[i]) + cb * yb[i]) + cc * yc[i]) + cd * yd[i]
            j += 4
        while j < w:
            cj = center[j]
            yj = yr[j : j + m]
            for i in range(m):
                mid[i] += cj * yj[i]
            j += 1
        for i in range(h):
            acc_l[i] = 0.0
            acc_r[i] = 0.0
        for k in range(wl):
            yk = yr[k]
            lk = left_t[k]
            for i in range(h):
                acc_l[i] += lk[i] * yk
        for k in range(wr):
            yk = yr[n - wr + k]
            rk = right_t[k]
            for i in range(h):
                acc_r[i] += rk[i] * yk
        orow = out[r]
        for i in range(h):
            orow[i] = acc_l[i]
            orow[n - h + i] = acc_r[i]
        if flag.shape[0]:
            _flag_nan(orow, flag)


@numba.njit(nogil=True, cache=True)
def _apply_banded(y, rows, table, start, out, flag):  # pragma: no cover - compiled
    """Per row listed in ``rows``: point i is table[i] applied to y[r, start[i]:]; NaN
    outputs set flag[0] when flag has length 1."""
    n = y.shape[1]
    w = table.shape[1]
    for r in rows:
        yr = y[r]
        orow = out[r]
        for i in range(n):
            s = start[i]
            acc = 0.0
            for j in range(w):
                acc += table[i, j] * yr[s + j]
            orow[i] = acc
        if flag.shape[0]:
            _flag_nan(orow, flag)


def apply_stencil(st: Stencil, y: Any, xp: ModuleType, check_nan: bool = False) -> Any:
    """Apply a stencil along the last axis of y (..., n); returns a new array, y's dtype.

    ``check_nan`` (NumPy and CuPy): raise :class:`NaNInInput` when y holds a NaN, found
    from the outputs as they are written instead of a separate pass over y.
    """
    if is_numpy(xp):
        return _apply_numpy([st], None, y, check_nan)
    if is_cupy(xp):
        from . import _cuda

        return _cuda.apply([st], None, y, check_nan)
    return _apply_generic(st, y, xp)


def apply_stencils(
    stencils: list[Stencil], which: Any, y: Any, xp: ModuleType, check_nan: bool = False
) -> Any:
    """Series i of y (..., n) through ``stencils[which[i]]`` (which: ints, y.shape[:-1]).

    For per-series parameters (one window per series): on NumPy one threaded pass writes
    every row in place, each through its own stencil, without gathering the rows of a
    stencil into a copy; on CuPy one CUDA launch per stencil does the same (``_cuda``);
    other namespaces take each stencil's rows, apply it, and put the results back in order.
    """
    which = np.asarray(which, dtype=np.int64).reshape(-1)
    if len(stencils) == 1:
        return apply_stencil(stencils[0], y, xp, check_nan)
    if is_numpy(xp):
        return _apply_numpy(stencils, which, y, check_nan)
    if is_cupy(xp):
        from . import _cuda

        return _cuda.apply(stencils, which, y, check_nan)
    n = y.shape[-1]
    y2 = xp.reshape(y, (-1, n))
    groups = [(st, np.flatnonzero(which == g)) for g, st in enumerate(stencils)]
    groups = [(st, rows) for st, rows in groups if rows.size]
    parts = [
        _apply_generic(st, xp.take(y2, asarray_like(rows, xp, dtype=xp.int64), axis=0), xp)
        for st, rows in groups
    ]
    # the groups' rows in order, then back to the original row order (no fancy setitem,
    # so CuPy and array-API namespaces take the same path)
    back = asarray_like(np.argsort(np.concatenate([rows for _, rows in groups])), xp, xp.int64)
    return xp.reshape(xp.take(xp.concat(parts, axis=0), back, axis=0), y.shape)


def stencil_rows(which: np.ndarray | None, count: int, nrows: int) -> list[np.ndarray]:
    """The rows (ascending) that go through each of ``count`` stencils: all of them through
    the first when ``which`` is None, else row r through stencil ``which[r]``."""
    if which is None:
        return [np.arange(nrows, dtype=np.int64)]
    order = np.argsort(which, kind="stable")
    edges = np.searchsorted(which[order], np.arange(count + 1))
    return [order[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _apply_numpy(
    stencils: list[Stencil], which: np.ndarray | None, y: np.ndarray, check_nan: bool = False
) -> np.ndarray:
    """Row r of y through stencils[which[r]] (all through stencils[0] when which is None),
    each stencil's rows split evenly over the threads; ``check_nan``: NaNInInput when y
    holds a NaN (flagged by the kernels from their outputs, then confirmed on y)."""
    shape = y.shape
    n = shape[-1]
    y2 = np.ascontiguousarray(y).reshape(-1, n)
    out2 = np.empty_like(y2)
    dt = y2.dtype
    nrows = y2.shape[0]
    nt = _threads_for(y2.size)
    flag = np.zeros(1 if check_nan else 0, dtype=np.uint8)
    tasks = []
    for st, rows in zip(stencils, stencil_rows(which, len(stencils), nrows), strict=True):
        if rows.size == 0:
            continue
        if st.uniform:
            func = _apply_uniform
            args: tuple[Any, ...] = (
                st.center.astype(dt),
                np.ascontiguousarray(st.left.T, dtype=dt),
                np.ascontiguousarray(st.right.T, dtype=dt),
            )
        else:
            func, args = _apply_banded, (st.table.astype(dt), st.start)
        tasks += [(func, part, args) for part in np.array_split(rows, min(nt, rows.size))]
    if nt <= 1:
        for func, part, args in tasks:
            func(y2, part, *args, out2, flag)
    else:
        futs = [_pool().submit(func, y2, part, *args, out2, flag) for func, part, args in tasks]
        for f in futs:
            f.result()
    if check_nan and flag[0] and any_nan(y2):  # inf - inf also flags: confirm
        raise NaNInInput("the data holds NaN")
    return out2.reshape(shape)


def _apply_generic(st: Stencil, y: Any, xp: ModuleType) -> Any:
    """Namespace-generic apply: whole-array slices and matmuls, no per-point loop."""
    n = y.shape[-1]
    dt = y.dtype
    if st.uniform:
        w = st.center.shape[0]
        h = (w - 1) // 2
        c = [float(v) for v in st.center]
        mid = c[0] * y[..., 0 : n - 2 * h]
        for j in range(1, w):
            mid = mid + c[j] * y[..., j : n - 2 * h + j]
        parts = []
        if h:
            left = asarray_like(st.left.T.copy(), xp, dtype=dt)
            parts.append(xp.matmul(y[..., : st.left.shape[1]], left))
        parts.append(mid)
        if h:
            right = asarray_like(st.right.T.copy(), xp, dtype=dt)
            parts.append(xp.matmul(y[..., n - st.right.shape[1] :], right))
        return xp.concat(parts, axis=-1) if len(parts) > 1 else mid
    w = st.table.shape[1]
    out = None
    for j in range(w):
        idx = asarray_like(st.start + j, xp, dtype=xp.int64)
        term = asarray_like(st.table[:, j].copy(), xp, dtype=dt) * xp.take(y, idx, axis=-1)
        out = term if out is None else out + term
    return out
