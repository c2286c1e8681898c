"""Array-level block machinery for the engine: halos, chunk merging, whole-dim blocks.

No xarray here (the engine is the thin labelled glue above). A *segment function*
``func(y, x, extras) -> tuple`` computes outputs for a contiguous run of samples along
the last axis of ``y`` (x the matching coordinates, ``extras`` per-series arrays without
that axis); its contract is the kernel footprint contract: on a segment ``[a, b)`` of a
series of n samples, its values at points ``[a + hl, b - hr)`` (``a + 0`` at the true
start, ``b - 0`` at the true end) equal those of the whole series.

:func:`blockwise_with_halo` builds a Dask graph with one overlap layer (halo slices of the
neighbouring blocks and the x slice of each block) and one kernel layer (one task per
input block). Each kernel task runs the segment function on its own block, whose interior
is already exact, and then patches the ``hl``/``hr`` samples at each inner block edge from
two small segments (halo + a few samples of the block): no concatenated copy of the block.
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .kernels.registry import NaNInInput, nan_check_in_kernel

LOGGER = logging.getLogger("deltaflow")

# A block is patched at its edges (instead of being concatenated with its halos, which
# copies it) when it is at least _PATCH_FACTOR patch widths long and at least
# _PATCH_COST * h * (2h + 1) samples: each patch segment costs about 3h samples of
# a (2h + 1)-wide kernel, mostly one-sided edge fits, while concatenation costs one copy
# of the block; measured for finite_difference (h = 1: patch wins from ~30 samples) and
# savgol with window 21 (h = 10: concatenation wins below ~1000 samples).
_PATCH_FACTOR = 4
_PATCH_COST = 6


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


def merge_chunks(chunks: Sequence[int], minimum: int) -> tuple[int, ...]:
    """Merge chunks smaller than ``minimum`` into their neighbours (the total is kept).

    Greedy left to right; a short remainder at the end joins the last merged chunk.
    """
    chunks = tuple(int(c) for c in chunks)
    if minimum <= 1 or all(c >= minimum for c in chunks):
        return chunks
    out: list[int] = []
    acc = 0
    for c in chunks:
        acc += c
        if acc >= minimum:
            out.append(acc)
            acc = 0
    if acc:
        if out:
            out[-1] += acc
        else:
            out.append(acc)
    return tuple(out)


def _extended(starts: np.ndarray, k: int, halo: tuple[int, int]) -> tuple[int, int]:
    nb = starts.shape[0] - 1
    lo = int(starts[k]) - (halo[0] if k > 0 else 0)
    hi = int(starts[k + 1]) + (halo[1] if k < nb - 1 else 0)
    return max(lo, 0), min(hi, int(starts[-1]))


def merge_for_segments(
    chunks: Sequence[int], halo: tuple[int, int], ok: Callable[[int, int], bool] | None
) -> tuple[int, ...]:
    """Merge chunks until every block's extended segment [lo, hi) satisfies ``ok``.

    The engine uses it when x is irregular as a whole: a kernel must never see a segment
    of it that looks uniform (kernels pick different stencils for uniform spacing, and
    chunked must equal unchunked). Merging stops at one chunk, which is always fine.
    """
    chunks = list(chunks)
    if ok is None:
        return tuple(chunks)
    while len(chunks) > 1:
        starts = np.concatenate([[0], np.cumsum(chunks)])
        bad = [k for k in range(len(chunks)) if not ok(*_extended(starts, k, halo))]
        if not bad:
            break
        k = bad[0]
        j = k + 1 if k + 1 < len(chunks) else k - 1
        a, b = min(j, k), max(j, k)
        chunks[a : b + 1] = [chunks[a] + chunks[b]]
    return tuple(chunks)


def raise_on_nan(
    y: Any,
    offsets: Sequence[int],
    axis_order: Sequence[int],
    where: str,
    block: Sequence[int] | None = None,
) -> None:
    """ValueError naming ``where`` and the first NaN positions (global indices) in block y.

    ``y`` has the differentiated axis last; ``axis_order[k]`` is the original axis of y's
    axis k and ``offsets`` the start of y along each original axis. ``block``: y is a halo
    of the block starting there (the message names that block's halo).
    """
    from .kernels._xp import any_nan, to_numpy

    if not any_nan(y):
        return
    mask = to_numpy(np.isnan(y))  # a GPU block's mask comes to the host for the message
    idx = np.argwhere(mask)[:5]
    glob = np.zeros((idx.shape[0], len(offsets)), dtype=np.int64)
    for k, ax in enumerate(axis_order):
        glob[:, ax] = idx[:, k] + offsets[ax]
    first = ", ".join(str(tuple(int(v) for v in row)) for row in glob)
    place = (
        f"the block at {tuple(offsets)}"
        if block is None
        else f"the halo of the block at {tuple(int(b) for b in block)}"
    )
    raise ValueError(
        f"{where}: data has {int(mask.sum())} NaN(s) in {place}, "
        f"first at index {first}; use nan_policy='omit' (methods that support it) or "
        "'propagate'"
    )


def _same(a: Any) -> Any:
    return a


def _writable(a: Any) -> Any:
    flags = getattr(a, "flags", None)
    return a if getattr(flags, "writeable", True) else a.copy()


def _segment_call(func, y, x, extras):
    outs = func(y, x, extras)
    return list(outs) if isinstance(outs, tuple | list) else [outs]


def _kernel_task(
    func: Callable,
    axis: int,
    hl: int,
    hr: int,
    patch: int,
    use_patch: bool,
    n_axis_out: int,
    nan_where: str | None,
    nan_deferred: bool,
    offsets: tuple[int, ...],
    center: Any,
    left: Any,
    right: Any,
    xext: np.ndarray,
    *extras: Any,
) -> Any:
    """One block: the segment function on the block, edges patched from the halos."""
    ndim = center.ndim
    yc = np.moveaxis(center, axis, -1)
    axis_order = [a for a in range(ndim) if a != axis] + [axis]
    if nan_where is not None and not nan_deferred:
        raise_on_nan(yc, offsets, axis_order, nan_where)
    yl = None if left is None else np.moveaxis(left, axis, -1)
    yr = None if right is None else np.moveaxis(right, axis, -1)
    try:
        with nan_check_in_kernel() if nan_deferred else contextlib.nullcontext():
            return _block(
                func, axis, hl, hr, patch, use_patch, n_axis_out, yc, yl, yr, xext, extras
            )
    except NaNInInput:
        if nan_where is None:
            raise
        # the kernel met a NaN in this block or in a halo sample: name its global index
        nl = 0 if yl is None else yl.shape[-1]
        raise_on_nan(yc, offsets, axis_order, nan_where)
        for part, shift in ((yl, -nl), (yr, yc.shape[-1])):
            if part is not None:
                at = tuple(o + shift if a == axis else o for a, o in enumerate(offsets))
                raise_on_nan(part, at, axis_order, nan_where, block=offsets)
        raise


def _block(
    func: Callable,
    axis: int,
    hl: int,
    hr: int,
    patch: int,
    use_patch: bool,
    n_axis_out: int,
    yc: Any,
    yl: Any,
    yr: Any,
    xext: np.ndarray,
    extras: tuple,
) -> Any:
    """The segment function on block yc (axis last), its edges patched from halos yl, yr."""
    c = yc.shape[-1]
    nl = 0 if yl is None else yl.shape[-1]
    nr = 0 if yr is None else yr.shape[-1]
    ex = list(extras)
    if nl == 0 and nr == 0:
        outs = _segment_call(func, yc, xext, ex)
    elif not use_patch:
        parts = [p for p in (yl, yc, yr) if p is not None]
        seg = np.concatenate(parts, axis=-1)
        outs = _segment_call(func, seg, xext, ex)
        outs = [o[..., nl : nl + c] for o in outs[:n_axis_out]] + outs[n_axis_out:]
    else:
        outs = _segment_call(func, yc, xext[nl : nl + c], ex)
        outs = [_writable(o) if i < n_axis_out else o for i, o in enumerate(outs)]
        if nl:
            seg = np.concatenate([yl, yc[..., :patch]], axis=-1)
            part = _segment_call(func, seg, xext[: nl + patch], ex)
            for i in range(n_axis_out):
                outs[i][..., :hl] = part[i][..., nl : nl + hl]
        if nr:
            seg = np.concatenate([yc[..., c - patch :], yr], axis=-1)
            part = _segment_call(func, seg, xext[nl + c - patch :], ex)
            for i in range(n_axis_out):
                outs[i][..., c - hr :] = part[i][..., patch - hr : patch]
    for i in range(n_axis_out):
        outs[i] = np.moveaxis(outs[i], -1, axis)
    return outs[0] if len(outs) == 1 else tuple(outs)


def blockwise_with_halo(
    y: Any,
    axis: int,
    x: np.ndarray,
    func: Callable,
    *,
    halo: tuple[int, int],
    need: int,
    outputs: Sequence[tuple[Any, bool]],
    extras: Sequence[Any] = (),
    nan_where: str | None = None,
    nan_deferred: bool = False,
    segment_ok: Callable[[int, int], bool] | None = None,
    name: str = "deltaflow",
    token: Any = None,
) -> list[Any]:
    """Apply a segment function to every block of dask array ``y``, exact across chunks.

    Parameters
    ----------
    y : dask array, chunked freely; chunks along ``axis`` must be at least the halo each
        (use :func:`merge_chunks` first).
    x : (n,) float64 coordinates along ``axis``.
    halo : samples (left, right) a segment needs beyond the points it must get right.
    need : the fewest samples a segment may have (the method's ``min_samples``).
    outputs : (dtype, has_axis) per output of ``func``; outputs with the axis come first
        and keep y's shape; the others drop ``axis`` (only when ``axis`` is one chunk).
    extras : dask arrays without ``axis`` whose chunks equal y's on the other axes.
    nan_where : when set, each block raises ValueError on NaN, naming this.
    nan_deferred : ``func`` itself raises ``NaNInInput`` on NaN (the method checks as it
        writes): blocks skip their read pass and report the NaN only when it does.
    segment_ok : when set, ``segment_ok(lo, hi)`` says whether the segment function may
        be run on samples [lo, hi); blocks then patch their edges only when the block and
        both patch segments pass, and concatenate their halos otherwise (the extended
        block must pass: see :func:`merge_for_segments`).
    token : a deterministic stand-in for ``func`` in the graph names (e.g. method, order,
        parameters), so that equal calls give equal names.

    Returns one dask array per output.
    """
    import dask.array as da
    from dask.array.utils import meta_from_array
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    hl, hr = int(halo[0]), int(halo[1])
    chunks = y.chunks
    ax_chunks = chunks[axis]
    nb = len(ax_chunks)
    if nb > 1 and min(ax_chunks) < max(hl, hr):
        raise ValueError(
            f"chunks along axis {axis} must be at least the halo {max(hl, hr)}: {ax_chunks}"
        )
    n_axis_out = sum(1 for _, has in outputs if has)
    if any(not has for _, has in outputs[:n_axis_out]) or (n_axis_out < len(outputs) and nb > 1):
        raise ValueError("outputs without the axis come last and need one chunk along it")
    starts = np.concatenate([[0], np.cumsum(ax_chunks)]).astype(np.int64)
    patch = max(hl + hr, need)
    hmax = max(hl, hr)
    patch_min = max(_PATCH_FACTOR * patch, _PATCH_COST * hmax * (2 * hmax + 1))
    fkey = func if token is None else token
    tok = tokenize(
        y.name,
        x,
        hl,
        hr,
        need,
        fkey,
        [e.name for e in extras],
        nan_where,
        nan_deferred,
        outputs,
        segment_ok is None,
    )
    ovl = f"{name}-overlap-{tok}"
    knl = f"{name}-{tok}"
    layer_ovl: dict = {}
    layer_knl: dict = {}
    block_offsets = [np.concatenate([[0], np.cumsum(c)]).astype(np.int64) for c in chunks]
    ok = segment_ok if segment_ok is not None else (lambda lo, hi: True)
    modes = []
    for k in range(nb):
        lo, hi = _extended(starts, k, (hl, hr))
        layer_ovl[(ovl, 2, k)] = np.ascontiguousarray(x[lo:hi])
        s, e = int(starts[k]), int(starts[k + 1])
        modes.append(
            nb > 1
            and e - s >= patch_min
            and ok(s, e)
            and (k == 0 or ok(s - hl, s + patch))
            and (k == nb - 1 or ok(e - patch, e + hr))
        )
        if nb > 1 and not modes[-1] and not ok(lo, hi):
            raise ValueError(f"block {k} [{lo}, {hi}) fails segment_ok; merge chunks first")
    for idx in np.ndindex(*y.numblocks):
        k = idx[axis]
        left = right = None
        if k > 0 and hl:
            src = (y.name, *idx[:axis], k - 1, *idx[axis + 1 :])
            slc = tuple(slice(-hl, None) if a == axis else slice(None) for a in range(y.ndim))
            left = (ovl, 0, *idx)
            layer_ovl[left] = (operator.getitem, src, slc)
        if k < nb - 1 and hr:
            src = (y.name, *idx[:axis], k + 1, *idx[axis + 1 :])
            slc = tuple(slice(0, hr) if a == axis else slice(None) for a in range(y.ndim))
            right = (ovl, 1, *idx)
            layer_ovl[right] = (operator.getitem, src, slc)
        offsets = tuple(int(block_offsets[a][i]) for a, i in enumerate(idx))
        ex_keys = [(e.name, *idx[:axis], *idx[axis + 1 :]) for e in extras]
        layer_knl[(knl, *idx)] = (
            _kernel_task,
            func,
            axis,
            hl,
            hr,
            patch,
            modes[k],
            n_axis_out,
            nan_where,
            nan_deferred,
            offsets,
            (y.name, *idx),
            left,
            right,
            (ovl, 2, k),
            *ex_keys,
        )
    layers = {ovl: layer_ovl, knl: layer_knl}
    deps = {ovl: {y.name}, knl: {ovl, y.name, *(e.name for e in extras)}}
    graph_layers = dict(layers)
    collections = [y, *extras]
    for col in collections:
        hg = col.__dask_graph__()
        for lname, lay in hg.layers.items():
            graph_layers.setdefault(lname, lay)
            deps.setdefault(lname, set(hg.dependencies.get(lname, set())))
    hlg = HighLevelGraph(graph_layers, deps)
    drop_chunks = tuple(c for a, c in enumerate(chunks) if a != axis)
    if len(outputs) == 1 and outputs[0][1]:
        dtype, _ = outputs[0]
        meta = meta_from_array(y._meta, ndim=y.ndim, dtype=dtype)
        return [da.Array(hlg, knl, chunks, meta=meta)]
    result = []
    for i, (dtype, has_axis) in enumerate(outputs):
        oname = f"{name}-out{i}-{tok}"
        layer = {}
        for idx in np.ndindex(*y.numblocks):
            okey = (oname, *idx) if has_axis else (oname, *idx[:axis], *idx[axis + 1 :])
            # a single output comes back bare from _kernel_task (not in a tuple), so
            # indexing it would take its first row
            if len(outputs) == 1:
                layer[okey] = (_same, (knl, *idx))
            else:
                layer[okey] = (operator.getitem, (knl, *idx), i)
        g = HighLevelGraph({**hlg.layers, oname: layer}, {**hlg.dependencies, oname: {knl}})
        ndim = y.ndim if has_axis else y.ndim - 1
        # outputs without the axis are per-series choices, computed on the host even for
        # device data: a NumPy meta, so Dask joins their blocks with NumPy
        like = y._meta if has_axis else np.empty((0,) * y.ndim)
        meta = meta_from_array(like, ndim=ndim, dtype=dtype)
        result.append(da.Array(g, oname, chunks if has_axis else drop_chunks, meta=meta))
    return result
