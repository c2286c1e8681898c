"""Plain-array entry point: validate once, then hand the batch to a method's kernel."""

from __future__ import annotations

import math
import threading
from collections import deque
from contextlib import nullcontext
from typing import Any

import numpy as np

from ._stencil import _pool, _threads_for
from ._xp import any_nan, is_numpy, namespace, to_numpy
from .registry import (
    MethodParams,
    MethodSpec,
    NaNInInput,
    Output,
    get_method,
    nan_check_in_kernel,
)

# relative tolerance under which spacing counts as uniform (float64 linspace rounding ~1e-15)
UNIFORM_RTOL = 1e-9
# a block of ``spec.block_bytes`` holds few long series (8 of 65,536 samples at 4 MiB), and
# what a method computes from the coordinates alone (a spline's gains for each smoothing
# value) is paid once per block: blocks get at least BLOCK_MIN_ROWS series as long as their
# input stays within BLOCK_CAP_BYTES. Measured on 64 series of 65,536 samples (32 MiB):
# auto 911 ms per series in blocks of 8, 442 in one of 32 (before spectral's wrap test was
# fixed), 250 / 151 in blocks of 32 / 64 after. Spectral's temporaries are ~13x a block's
# input (the call's peak resident memory over the process's: +0.10 GiB in blocks of 8,
# +0.40 in one of 64): the cap keeps a block's share under ~0.45 GiB per task
BLOCK_MIN_ROWS = 64
BLOCK_CAP_BYTES = 1 << 25
# NumPy blocks called from the main thread run on the kernels' thread pool, as many at once
# as there are cores while their inputs together stay within BLOCK_CAP_BYTES (so the
# temporaries in flight stay what one capped block's are); each block's kernels then run on
# its one thread (they split rows over threads only from the main thread), and a Dask
# worker's call stays on its thread. Measured (2 cores, sin + 1 % noise on 1,000 samples,
# best of 3, both versions in one session): spectral 192 -> 139 us per series (10,000
# series), auto 1.49 -> 0.98 ms (2,000); results bit-identical to one block at a time.


def check_coordinate(x: Any, n: int, *, where: str = "x") -> np.ndarray:
    """Return x as a float64 host array after checking it against n samples.

    Raises ValueError naming ``where`` and the first offending position when x has the
    wrong length, is not finite, or is not strictly monotonic (duplicates included).
    """
    xa = np.asarray(to_numpy(x))
    if xa.ndim != 1:
        raise ValueError(f"{where}: coordinate must be 1-D, got shape {xa.shape}")
    if xa.dtype.kind not in "iuf":
        raise TypeError(f"{where}: coordinate must be numeric, got dtype {xa.dtype}")
    xa = xa.astype(np.float64, copy=False)
    if xa.shape[0] != n:
        raise ValueError(f"{where}: coordinate has {xa.shape[0]} values but the data has {n}")
    bad = np.flatnonzero(~np.isfinite(xa))
    if bad.size:
        raise ValueError(
            f"{where}: coordinate has {bad.size} non-finite value(s); first at position "
            f"{bad[0]} ({xa[bad[0]]})"
        )
    if n >= 2:
        d = np.diff(xa)
        sign = 1.0 if d[0] > 0 else -1.0
        off = np.flatnonzero(~(d * sign > 0))
        if off.size:
            i = int(off[0]) + 1
            kind = "a duplicate" if d[i - 1] == 0 else "not strictly monotonic"
            raise ValueError(
                f"{where}: coordinate is {kind} at position {i} "
                f"(value {xa[i]!r} after {xa[i - 1]!r}); it must be strictly increasing "
                "or strictly decreasing"
            )
    return xa


def uniform_step(x: np.ndarray) -> float | None:
    """The constant spacing of increasing x, or None when the spacing varies."""
    if x.shape[0] < 2:
        return None
    d = np.diff(x)
    h = (x[-1] - x[0]) / (x.shape[0] - 1)
    if np.all(np.abs(d - h) <= UNIFORM_RTOL * abs(h)):
        return float(h)
    return None


def check_data(y: Any, name: str = "y") -> Any:
    """TypeError for non-numeric data; integers and bools become float64."""
    dt = y.dtype
    kind = getattr(dt, "kind", None)
    if kind is None:  # array-API dtypes have no .kind
        xp = namespace(y)
        if xp.isdtype(dt, "real floating"):
            return y
        if xp.isdtype(dt, "integral"):
            return xp.astype(y, xp.float64)
        raise TypeError(f"{name}: data must be real numeric, got dtype {dt}")
    if kind == "f":
        return y
    if kind in "iu":
        return y.astype(np.float64)
    raise TypeError(f"{name}: data must be real numeric (float or int), got dtype {dt}")


def nan_report(mask: np.ndarray, limit: int = 5) -> str:
    """'3 NaN(s), first at index (0, 17), (2, 4)' for a boolean mask of any shape."""
    idx = np.argwhere(mask)
    first = ", ".join(str(tuple(int(v) for v in row)) for row in idx[:limit])
    more = " ..." if idx.shape[0] > limit else ""
    return f"{idx.shape[0]} NaN(s), at index {first}{more}"


def check_nans(spec: MethodSpec, y: Any, params: MethodParams, name: str = "y") -> None:
    """Apply the NaN policy that does not need the kernel: raise, or refuse 'omit'."""
    policy = params.nan_policy
    if policy == "propagate":
        return
    if policy == "omit" and not spec.nan_omit:
        raise ValueError(
            f"method {spec.name!r}: nan_policy='omit' is not supported; use 'raise' or "
            "'propagate' (methods that support it: "
            + ", ".join(s.describe()["name"] for s in _omit_methods())
            + ")"
        )
    if policy == "raise":
        if any_nan(y):
            mask = to_numpy(namespace(y).isnan(y))
            raise ValueError(
                f"{name}: data has {nan_report(mask)} (along the last axis); use "
                "nan_policy='omit' (methods that support it) or 'propagate'"
            )


def _omit_methods() -> list[MethodSpec]:
    from .registry import registered

    return [s for s in registered().values() if s.nan_omit]


def check_length(spec: MethodSpec, order: int, params: MethodParams, n: int, where: str) -> None:
    """ValueError when n samples are fewer than the method needs."""
    need = spec.min_samples(order, params)
    if n < need:
        raise ValueError(
            f"{where}: method {spec.name!r} with these parameters needs at least {need} "
            f"samples for order {order}, got {n}"
        )


def differentiate_array(
    y: Any,
    x: Any = None,
    method: str = "finite_difference",
    order: int = 1,
    axis: int = -1,
    *,
    return_smoothed: bool = False,
    return_choices: bool = False,
    device: str | None = None,
    allow_host: bool = False,
    **params: Any,
) -> Any:
    """Differentiate ``y`` along ``axis`` with respect to the coordinate ``x``.

    Parameters
    ----------
    y : array of shape (..., n, ...)
        Samples; every 1-D slice along ``axis`` is one series. NumPy, CuPy or array-API.
    x : array of shape (n,), optional
        Sample coordinates, strictly increasing or decreasing, possibly irregular.
        None means unit spacing (0, 1, ..., n-1).
    method : str
        A registered method name (see :func:`deltaflow.methods`).
    order : int
        Derivative order.
    return_smoothed : bool
        Also return the method's smoothed signal (methods with ``smoothed`` capability).
    return_choices : bool
        Also return the per-series automatic choices (dict of arrays of shape y.shape
        without ``axis``).
    device : {None, "cpu", "gpu"}
        None computes where y lives (CuPy on the GPU); "gpu" / "cpu" move y there first,
        and the result stays there.
    allow_host : bool
        Let a method without a GPU path run on GPU (or other non-NumPy) data by copying it
        to host memory and the results back; without it such a call raises TypeError.
    **params
        The method's parameters (``deltaflow.methods()`` lists them).

    Returns
    -------
    The derivative with y's shape, or a tuple (derivative, [smoothed], [choices]).
    """
    spec = get_method(method)
    spec.check_order(order)
    p = spec.make_params(params)
    if return_smoothed and not spec.has_smoothed:
        raise ValueError(f"method {spec.name!r} has no smoothed signal (return_smoothed=True)")
    if device is not None:
        from .._device import check_device, to_device

        y = to_device(y if hasattr(y, "shape") else np.asarray(y), check_device(device))
    xp = namespace(y)
    if not hasattr(y, "shape"):
        y = np.asarray(y)
        xp = np
    y = check_data(y)
    if y.ndim == 0:
        raise ValueError("y: data must have at least one dimension")
    y = xp.moveaxis(y, axis, -1)
    n = y.shape[-1]
    xa = np.arange(n, dtype=np.float64) if x is None else check_coordinate(x, n)
    check_length(spec, order, p, n, "y")
    if not spec.irregular and uniform_step(np.sort(xa)) is None:
        raise ValueError(f"method {spec.name!r} needs uniform spacing; x is irregular")
    out = run_checked(spec, y, xa, order, p, smoothed=return_smoothed, allow_host=allow_host)
    d = xp.moveaxis(out.output.derivative, -1, axis)
    result: list[Any] = [d]
    if return_smoothed:
        result.append(xp.moveaxis(out.output.smoothed, -1, axis))
    if return_choices:
        result.append(out.chosen)
    return result[0] if len(result) == 1 else tuple(result)


def check_namespace(spec: MethodSpec, xp: Any, where: str = "y", allow_host: bool = False) -> None:
    """TypeError naming ``where`` and the method unless it runs on arrays of ``xp`` (NumPy
    always; others when its spec says gpu) or ``allow_host`` lets it run on a host copy."""
    if is_numpy(xp) or spec.gpu or allow_host:
        return
    from .registry import registered

    able = ", ".join(sorted(n for n, s in registered().items() if s.gpu))
    raise TypeError(
        f"{where}: method {spec.name!r} has no GPU path (its spec says gpu=False) and the "
        f"data is a {xp.__name__} array; pass allow_host=True to run it on host copies "
        f"(results come back as {xp.__name__} arrays), use device='cpu', or a method that "
        f"runs there: {able}"
    )


def run_checked(
    spec: MethodSpec,
    y: Any,
    x: np.ndarray,
    order: int,
    params: MethodParams,
    *,
    name: str = "y",
    smoothed: bool = False,
    allow_host: bool = False,
) -> KernelRun:
    """:func:`check_nans` then :func:`run_kernel` on whole in-memory series; where the
    kernel finds NaN as it writes (``spec.checks_nan``), the kernel alone, and check_nans
    only to name (as ``name``) the NaN it met."""
    deferred = spec.defers_nan_check(params, namespace(y))
    if not deferred:
        check_nans(spec, y, params, name=name)
    try:
        with nan_check_in_kernel() if deferred else nullcontext():
            return run_kernel(spec, y, x, order, params, smoothed=smoothed, allow_host=allow_host)
    except NaNInInput:
        check_nans(spec, y, params, name=name)  # names the positions
        raise


class KernelRun:
    """The output of one kernel call and the automatic choices it used."""

    __slots__ = ("output", "chosen")

    def __init__(self, output: Output, chosen: dict[str, Any]):
        self.output = output
        self.chosen = chosen


def run_kernel(
    spec: MethodSpec,
    y: Any,
    x: np.ndarray,
    order: int,
    params: MethodParams,
    *,
    chosen: dict[str, Any] | None = None,
    smoothed: bool = False,
    allow_host: bool = False,
) -> KernelRun:
    """Call a kernel on validated input (last axis), handling decreasing x.

    ``chosen`` are per-series choices from an earlier ``choose`` pass; when None and the
    method has a ``choose``, they are computed here from y (which must then hold whole series).
    A method without a path for y's namespace raises TypeError, or with ``allow_host`` runs
    on a host copy of y and returns its outputs in y's namespace (choices stay on the host).
    """
    xp = namespace(y)
    check_namespace(spec, xp, allow_host=allow_host)
    home = None
    if not (is_numpy(xp) or spec.gpu):  # allowed: a host copy
        home, xp, y = xp, np, to_numpy(y)
    flip = x.shape[0] >= 2 and x[-1] < x[0]
    if flip:
        y = xp.flip(y, axis=-1)
        x = x[::-1].copy()
    out, chosen = _blocked(spec, y, x, order, params, chosen, xp, smoothed)
    if flip:
        out = Output(
            xp.flip(out.derivative, axis=-1),
            None if out.smoothed is None else xp.flip(out.smoothed, axis=-1),
        )
    if home is not None:
        out = Output(
            home.asarray(out.derivative),
            None if out.smoothed is None else home.asarray(out.smoothed),
        )
    return KernelRun(out, chosen)


def _blocked(
    spec: MethodSpec,
    y: Any,
    x: np.ndarray,
    order: int,
    params: MethodParams,
    chosen: dict[str, Any] | None,
    xp: Any,
    smoothed: bool,
) -> tuple[Output, dict[str, Any]]:
    """``choose`` (when ``chosen`` is None) and ``apply``, on blocks of ``spec.block_bytes``.

    Rows are independent, so each block of whole series gives what the full batch would;
    the outputs are written into arrays allocated once. Without ``block_bytes``, or for a
    batch that fits in one block, the kernel sees the batch as it is.
    """

    def choose(yb: Any) -> dict[str, Any]:
        return spec.choose(yb, x, order, params, xp) if spec.choose is not None else {}

    n = y.shape[-1]
    rows = math.prod(y.shape[:-1])
    per = None
    if spec.block_bytes is not None and n and rows > 1:
        row_bytes = n * y.dtype.itemsize
        per = max(
            1, spec.block_bytes // row_bytes, min(BLOCK_MIN_ROWS, BLOCK_CAP_BYTES // row_bytes)
        )
    if per is None or per >= rows:
        if chosen is None:
            chosen = choose(y)
        return spec.apply(y, x, order, params, chosen, xp, smoothed), chosen
    y2 = xp.reshape(y, (rows, n))
    flat = None if chosen is None else {k: _rows(v, rows, xp) for k, v in chosen.items()}
    parts: dict[str, list[Any]] = {}
    deriv = sm = None

    def block(a: int, b: int) -> tuple[dict[str, Any], Output]:
        yb = y2[a:b]
        cb = choose(yb) if flat is None else {k: v[a:b] for k, v in flat.items()}
        return cb, spec.apply(yb, x, order, params, cb, xp, smoothed)

    bounds = [(a, min(a + per, rows)) for a in range(0, rows, per)]
    ahead = 1
    if is_numpy(xp) and threading.current_thread() is threading.main_thread():
        ahead = max(1, min(_threads_for(y2.size), BLOCK_CAP_BYTES // (per * n * y.dtype.itemsize)))
    pending: deque[Any] = deque()
    for i, (a, b) in enumerate(bounds):
        if ahead > 1:  # keep up to ``ahead`` blocks in flight, written back in order
            while len(pending) < ahead and i + len(pending) < len(bounds):
                pending.append(_pool().submit(block, *bounds[i + len(pending)]))
            try:
                cb, o = pending.popleft().result()
            except BaseException:
                for f in pending:  # the error wins; blocks not started are dropped
                    f.cancel()
                raise
        else:
            cb, o = block(a, b)
        if flat is None:
            for k, v in cb.items():
                parts.setdefault(k, []).append(_rows(v, b - a, xp))
        if deriv is None:
            deriv = xp.empty((rows, n), dtype=o.derivative.dtype)
            if o.smoothed is not None:
                sm = xp.empty((rows, n), dtype=o.smoothed.dtype)
        deriv[a:b] = o.derivative
        if sm is not None:
            sm[a:b] = o.smoothed
    if flat is None:
        shape = y.shape[:-1]
        chosen = {k: xp.reshape(xp.concat(v), shape) for k, v in parts.items()}
    out = Output(xp.reshape(deriv, y.shape), None if sm is None else xp.reshape(sm, y.shape))
    return out, chosen


def _rows(v: Any, rows: int, xp: Any) -> Any:
    """A per-series choice as a flat (rows,) array (scalars broadcast)."""
    a = v if hasattr(v, "shape") else xp.asarray(v)
    return xp.reshape(xp.broadcast_to(a, (rows,)) if a.ndim == 0 else a, (rows,))
