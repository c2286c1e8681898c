"""The engine: differentiate labelled xarray data, numpy- or Dask-backed, chunk-exact.

Validation happens once per call (method, order, parameters, coordinate, length, NaN
policy); the work runs in :func:`deltaflow.kernels.run_kernel` on blocks with the
differentiated dim last. The engine never names a method: it asks the method's spec
for its footprint (halo, or global), its automatic choices, its smoothed signal, its
minimum length and whether it takes irregular spacing.

Dask paths (array level, see :mod:`deltaflow._blocks`):

* local methods: one overlap layer + one kernel layer, exact across chunks of ``dim``;
  chunks shorter than the halo are merged first (logged on the ``deltaflow`` logger);
* per-series automatic choices (``spec.choose``) on a chunked ``dim``: a first pass on
  whole series (``dim`` in one chunk for that pass only), whose small result feeds the
  kernel pass, so chunked == unchunked;
* global methods: ``dim`` in one chunk, parallel over the other dims; a chunked ``dim``
  is rechunked with a warning stating the memory per block, or refused above
  ``max_block_bytes`` (keyword, or Dask config ``deltaflow.max-block-bytes``).

Outputs keep the input's dims, coords and chunks. Building the graph computes nothing.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._attrs import choices_summary, derivative_attrs, json_params
from ._blocks import blockwise_with_halo, format_bytes, merge_chunks, merge_for_segments
from ._coords import Axis, numeric_axis
from ._device import array_module, check_device, check_method_device, is_dask, to_device
from .kernels import MethodParams, MethodSpec, get_method, run_kernel, uniform_step
from .kernels._xp import astype, to_numpy
from .kernels.api import check_length, check_nans, run_checked

LOGGER = logging.getLogger("deltaflow")

DEFAULT_MAX_BLOCK_BYTES = 4 * 2**30
DEFAULT_TARGET_BLOCK_BYTES = 64 * 2**20


def _config_bytes(key: str, default: int, value: int | str | None = None) -> int:
    """A byte size from the keyword, else Dask config ``deltaflow.<key>``, else default."""
    from dask.utils import parse_bytes

    if value is None:
        import dask.config

        value = dask.config.get(f"deltaflow.{key}", default)
    out = parse_bytes(value) if isinstance(value, str) else int(value)
    if out <= 0:
        raise ValueError(f"{key} must be a positive number of bytes, got {value!r}")
    return out


def _user_stacklevel() -> int:
    """The stacklevel that points a warning at the first frame outside deltaflow."""
    import sys

    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("deltaflow"):
        frame = frame.f_back
        level += 1
    return level


# ----------------------------------------------------------------------------- plan


class Plan:
    """A validated request: the method spec, order, parameters and what to return."""

    def __init__(
        self,
        method: str,
        order: int,
        params: dict[str, Any] | MethodParams,
        *,
        smoothed: bool = False,
        choices: bool = False,
        max_block_bytes: int | str | None = None,
        device: str | None = None,
        allow_host: bool = False,
    ) -> None:
        self.device = check_device(device)
        self.allow_host = bool(allow_host)
        self.spec: MethodSpec = get_method(method)
        self.spec.check_order(order)
        self.order = int(order)
        self.params = self.spec.make_params(params)
        if smoothed and not self.spec.has_smoothed:
            with_smoothed = sorted(n for n, s in _registered().items() if s.has_smoothed)
            raise ValueError(
                f"method {self.spec.name!r} has no smoothed signal (return_smoothed=True / "
                f"smooth); methods with one: {', '.join(with_smoothed) or 'none yet'}"
            )
        self.smoothed = bool(smoothed)
        self.choices = bool(choices)
        self.probe_cache: dict[int, list] = {}
        self.halo = self.spec.footprint(self.order, self.params)
        self.need = int(self.spec.min_samples(self.order, self.params))
        self.max_block_bytes = _config_bytes(
            "max-block-bytes", DEFAULT_MAX_BLOCK_BYTES, max_block_bytes
        )
        self.target_block_bytes = _config_bytes(
            "target-block-bytes", DEFAULT_TARGET_BLOCK_BYTES, None
        )
        if self.params.nan_policy == "omit":
            check_nans(self.spec, np.zeros(0), self.params)  # raises when unsupported

    @property
    def token(self) -> tuple:
        p = json_params(self.params)
        return (self.spec.name, self.order, p, self.smoothed, self.allow_host)

    def check_axis(self, axis: Axis, where: str) -> None:
        """Length and spacing checks against this method."""
        check_length(self.spec, self.order, self.params, axis.n, where)
        if not self.spec.irregular and uniform_step(np.sort(axis.values)) is None:
            raise ValueError(
                f"{where}: method {self.spec.name!r} needs uniform spacing, but the "
                f"coordinate of dim {axis.dim!r} is irregular"
            )


def _registered() -> dict[str, MethodSpec]:
    from .kernels import registered

    return registered()


def choice_keys(plan: Plan, x: np.ndarray) -> list[tuple[str, np.dtype]]:
    """Names and dtypes of the method's per-series choices, from a one-series probe.

    The engine needs them to lay out the graph before any data is read; the probe is a
    smooth signal with a little noise on the real coordinate (host memory O(n)); what the
    method warns about it is silenced (it is not the user's data).
    """
    if plan.spec.choose is None:
        return []
    key = hash(np.ascontiguousarray(x).tobytes())
    if key not in plan.probe_cache:
        plan.probe_cache[key] = _probe(plan, x)
    return plan.probe_cache[key]


def _probe(plan: Plan, x: np.ndarray) -> list[tuple[str, np.dtype]]:
    xs = np.sort(x)
    span = xs[-1] - xs[0] if xs.shape[0] > 1 else 1.0
    rng = np.random.default_rng(0)
    probe = np.sin(2 * np.pi * (xs - xs[0]) / span)[None, :]
    probe = probe + 0.01 * rng.standard_normal(probe.shape)
    with warnings.catch_warnings():  # warnings about the synthetic probe would mislead
        warnings.simplefilter("ignore")
        chosen = plan.spec.choose(probe, xs, plan.order, plan.params, np)
    return [(k, np.asarray(v).dtype) for k, v in chosen.items()]


# ----------------------------------------------------------------------------- arrays


def _segment(
    spec: MethodSpec,
    order: int,
    params: MethodParams,
    smoothed: bool,
    keys: tuple[str, ...],
    emit_choices: bool,
    allow_host: bool,
    y: Any,
    x: np.ndarray,
    extras: list[Any],
) -> tuple:
    """Segment function for :func:`blockwise_with_halo`: the kernel on one segment."""
    chosen = dict(zip(keys, extras, strict=True)) if extras else None
    run = run_kernel(
        spec, y, x, order, params, chosen=chosen, smoothed=smoothed, allow_host=allow_host
    )
    outs = [astype(run.output.derivative, y.dtype)]
    if smoothed:
        outs.append(astype(run.output.smoothed, y.dtype))
    if emit_choices:
        outs.extend(np.asarray(run.chosen[k]) for k in keys)
    return tuple(outs)


def _choose_segment(
    spec: MethodSpec, order: int, params: MethodParams, keys: tuple[str, ...], y, x, extras
) -> tuple:
    """Segment function of the choice pass: per-series choices from whole series."""
    xs, ys = x, (y if spec.gpu else to_numpy(y))  # a host copy only where allow_host let it
    if x.shape[0] >= 2 and x[-1] < x[0]:
        xs, ys = x[::-1].copy(), ys[..., ::-1]
    chosen = spec.choose(ys, xs, order, params, np)
    return tuple(np.asarray(chosen[k]) for k in keys)


def apply_numpy(
    plan: Plan, data: Any, ax: int, x: np.ndarray, where: str
) -> tuple[Any, Any, dict[str, Any]]:
    """Derivative, smoothed (or None) and choices for an in-memory array, one kernel call."""
    y = np.moveaxis(data, ax, -1)
    run = run_checked(
        plan.spec,
        y,
        x,
        plan.order,
        plan.params,
        name=where,
        smoothed=plan.smoothed,
        allow_host=plan.allow_host,
    )
    d = np.moveaxis(run.output.derivative, -1, ax)
    s = np.moveaxis(run.output.smoothed, -1, ax) if plan.smoothed else None
    return d, s, dict(run.chosen)


def _whole_dim_chunks(plan: Plan, y: Any, ax: int, why: str, where: str) -> tuple:
    """Chunks with ``ax`` in one piece and blocks no larger than needed (checked)."""
    n = y.shape[ax]
    item = y.dtype.itemsize
    other = [c for a, c in enumerate(y.chunks) if a != ax]
    block = n * item * math.prod(max(c) if c else 1 for c in other)
    chunks: dict[int, Any] = {ax: -1}
    if block > plan.target_block_bytes and other:
        # split the other dims so a whole-dim block stays near the target size
        from dask.array.core import normalize_chunks

        shape = tuple(s if a != ax else n for a, s in enumerate(y.shape))
        auto = tuple("auto" if a != ax else n for a in range(y.ndim))
        new = normalize_chunks(
            auto,
            shape,
            limit=max(plan.target_block_bytes, n * item),
            dtype=y.dtype,
            previous_chunks=y.chunks,
        )
        chunks = {a: (c if a != ax else -1) for a, c in enumerate(new)}
        block = n * item * math.prod(max(c) for a, c in enumerate(new) if a != ax)
    if block > plan.max_block_bytes:
        raise ValueError(
            f"{where}: {why} needs dim in one chunk; each block would take "
            f"{format_bytes(block)} ({n} samples), above max_block_bytes="
            f"{format_bytes(plan.max_block_bytes)}; raise it (keyword max_block_bytes= or "
            "Dask config 'deltaflow.max-block-bytes') or use a local method"
        )
    return chunks, block


def apply_dask(
    plan: Plan, y: Any, ax: int, x: np.ndarray, where: str
) -> tuple[Any, Any, dict[str, Any]]:
    """Lazy derivative, smoothed (or None) and choices for a Dask array."""
    spec, order, p = plan.spec, plan.order, plan.params
    original = y.chunks
    nan_where = where if p.nan_policy == "raise" else None
    deferred = spec.defers_nan_check(p, array_module(y))  # the kernel finds NaN as it writes
    extras: list[Any] = []
    if plan.halo is None:
        if len(y.chunks[ax]) > 1:
            chunks, block = _whole_dim_chunks(
                plan, y, ax, f"method {spec.name!r} is global and", where
            )
            warnings.warn(
                f"{where}: method {spec.name!r} is global along dim {where.split('dim ')[-1]}: "
                f"rechunking it from {len(y.chunks[ax])} chunks to one; each block takes "
                f"{format_bytes(block)} in memory (plus the kernel's work arrays)",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )
            y = y.rechunk(chunks)
        halo = (0, 0)
    else:
        h = int(plan.halo)
        halo = (h, h)
        y = _merge_small_chunks(plan, y, ax, x, halo, where)
    per_series = spec.choose is not None and (plan.choices or len(y.chunks[ax]) > 1)
    keys_dt = choice_keys(plan, x) if per_series else []
    keys = tuple(k for k, _ in keys_dt)
    if plan.halo is not None and len(y.chunks[ax]) > 1 and keys:
        # where the kernel reports NaN in the pass below, the choice pass (whose choice
        # tolerates NaN) reads the data without a check of its own
        extras = _choice_pass(plan, y, ax, x, keys_dt, where, None if deferred else nan_where)
    emit = bool(keys) and not extras and plan.choices
    outputs: list[tuple[Any, bool]] = [(y.dtype, True)]
    if plan.smoothed:
        outputs.append((y.dtype, True))
    if emit:
        outputs.extend((dt, False) for _, dt in keys_dt)
    func = functools.partial(_segment, spec, order, p, plan.smoothed, keys, emit, plan.allow_host)
    outs = blockwise_with_halo(
        y,
        ax,
        x,
        func,
        halo=halo,
        need=plan.need,
        outputs=outputs,
        extras=extras,
        nan_where=nan_where,
        nan_deferred=deferred,
        segment_ok=_segment_check(x) if plan.halo is not None else None,
        name=f"deltaflow-{spec.name}",
        token=(plan.token, keys, emit),
    )
    d = _restore(outs[0], original)
    s = _restore(outs[1], original) if plan.smoothed else None
    chosen: dict[str, Any] = {}
    if plan.choices:
        other = tuple(c for a, c in enumerate(original) if a != ax)
        arrays = outs[len(outputs) - len(keys) :] if emit else extras
        chosen = {k: _restore(a, other) for k, a in zip(keys, arrays, strict=True)}
    return d, s, chosen


@functools.lru_cache(maxsize=8)
def _irregular_checker(x_bytes: bytes) -> Any:
    x = np.frombuffer(x_bytes, dtype=np.float64)

    def ok(lo: int, hi: int) -> bool:
        return uniform_step(np.sort(x[max(lo, 0) : hi])) is None

    return ok


def _segment_check(x: np.ndarray) -> Any:
    """None when x is uniform; else a predicate: does x[lo:hi] stay irregular?

    Kernels choose their stencils from the spacing they see; a uniformly spaced piece of
    an irregular coordinate would get a different stencil than in the whole series.
    """
    if x.shape[0] < 2 or uniform_step(np.sort(x)) is not None:
        return None
    return _irregular_checker(np.ascontiguousarray(x, dtype=np.float64).tobytes())


def _merge_small_chunks(
    plan: Plan, y: Any, ax: int, x: np.ndarray, halo: tuple[int, int], where: str
) -> Any:
    """Rechunk ``ax`` (once) so every chunk covers the halo and the method's minimum
    length, and no block sees a uniform piece of an irregular x; logged when it acts."""
    h = max(halo)
    minimum = max(h, plan.need - h, 1)
    chunks = y.chunks[ax]
    merged = merge_chunks(chunks, minimum)
    reasons = []
    if merged != chunks:
        reasons.append(
            f"method {plan.spec.name!r} needs chunks of at least {minimum} samples for its "
            f"halo of {h}"
        )
    final = merge_for_segments(merged, halo, _segment_check(x))
    if final != merged:
        reasons.append("no block may see a uniformly spaced piece of an irregular coordinate")
    if final == chunks:
        return y
    LOGGER.info(
        "%s: merging %d chunks along the dim into %d (%s)",
        where,
        len(chunks),
        len(final),
        "; ".join(reasons),
    )
    return y.rechunk({ax: final})


def _restore(a: Any, chunks: tuple) -> Any:
    return a if a.chunks == chunks else a.rechunk(chunks)


def _choice_pass(
    plan: Plan,
    y: Any,
    ax: int,
    x: np.ndarray,
    keys_dt: list,
    where: str,
    nan_where: str | None,
) -> list[Any]:
    """Per-series choices from whole series, laid out like y's blocks without ``ax``."""
    chunks, _ = _whole_dim_chunks(plan, y, ax, "the per-series choice pass", where)
    yf = y.rechunk(chunks)
    keys = tuple(k for k, _ in keys_dt)
    func = functools.partial(_choose_segment, plan.spec, plan.order, plan.params, keys)
    outs = blockwise_with_halo(
        yf,
        ax,
        x,
        func,
        halo=(0, 0),
        need=plan.need,
        outputs=[(dt, False) for _, dt in keys_dt],
        nan_where=nan_where,
        name=f"deltaflow-{plan.spec.name}-choose",
        token=(plan.token, keys),
    )
    other = tuple(c for a, c in enumerate(y.chunks) if a != ax)
    return [_restore(o, other) for o in outs]


# ----------------------------------------------------------------------------- labelled


def kernel_axis(x: np.ndarray) -> np.ndarray:
    """The coordinates handed to kernels: offsets from x[0], exactly uniform when uniform.

    Derivatives do not depend on the origin, and offsets keep the spacing's precision.
    A coordinate that counts as uniform (within the kernels' tolerance) becomes
    ``h * arange(n)``, so every block estimates the same step to the last bits and a
    chunked result equals the unchunked one (1e-12) even for x = 1000 + 0.01 k.
    """
    n = x.shape[0]
    if n >= 2 and uniform_step(np.sort(x)) is not None:
        return ((x[-1] - x[0]) / (n - 1)) * np.arange(n, dtype=np.float64)
    return x - x[0] if n else x


def _as_float(da: xr.DataArray, where: str) -> Any:
    kind = da.dtype.kind
    if kind == "f":
        return da.data
    if kind in "iub":
        return da.data.astype(np.float64)
    raise TypeError(f"{where}: data must be real numeric (float or int), got dtype {da.dtype}")


def _one(
    plan: Plan, da: xr.DataArray, axis: Axis, where: str
) -> tuple[xr.DataArray, xr.DataArray | None, dict[str, xr.DataArray]]:
    """Differentiate one DataArray along ``axis.dim``."""
    plan.check_axis(axis, where)
    data = to_device(_as_float(da, where), plan.device)
    check_method_device(plan.spec, data, where, plan.allow_host)
    ax = da.get_axis_num(axis.dim)
    x = kernel_axis(axis.values)
    if is_dask(data):
        d, s, chosen = apply_dask(plan, data, ax, x, where)
    else:
        d, s, chosen = apply_numpy(plan, data, ax, x, where)
    common = dict(
        method=plan.spec.name,
        order=plan.order,
        dim=axis.dim,
        params=plan.params,
        axis_units=axis.units,
        axis_attrs=axis.attrs,
    )
    attrs = derivative_attrs(da.attrs, da.name, **common)
    if plan.spec.choose is not None:
        if is_dask(data):
            attrs["deltaflow_choices"] = "per series; differentiate(..., return_choices=True)"
        elif chosen:
            attrs["deltaflow_choices"] = choices_summary(chosen)
    out = xr.DataArray(d, dims=da.dims, coords=da.coords, name=da.name, attrs=attrs)
    sm = None
    if s is not None:
        sattrs = derivative_attrs(da.attrs, da.name, smoothed=True, **common)
        sm = xr.DataArray(s, dims=da.dims, coords=da.coords, name=da.name, attrs=sattrs)
    choice_das: dict[str, xr.DataArray] = {}
    if plan.choices:
        dims = tuple(dm for dm in da.dims if dm != axis.dim)
        coords = {k: v for k, v in da.coords.items() if axis.dim not in v.dims}
        for k, v in chosen.items():
            choice_das[k] = xr.DataArray(
                v,
                dims=dims,
                coords=coords,
                name=k,
                attrs={
                    "long_name": f"{k} chosen per series by {plan.spec.name}",
                    "deltaflow_method": plan.spec.name,
                    "deltaflow_dim": axis.dim,
                },
            )
    return out, sm, choice_das


def _select_variables(
    ds: xr.Dataset, dim: str, variables: Iterable[Hashable] | None
) -> list[Hashable]:
    if variables is None:
        return [k for k, v in ds.data_vars.items() if dim in v.dims and v.dtype.kind in "iuf"]
    names = [variables] if isinstance(variables, str) else list(variables)
    for k in names:
        if k not in ds.data_vars:
            raise ValueError(
                f"variables: {k!r} is not a data variable; data variables are {list(ds.data_vars)}"
            )
        if dim not in ds[k].dims:
            raise ValueError(
                f"variables: variable {k!r} has no dim {dim!r} (its dims: {ds[k].dims})"
            )
        if ds[k].dtype.kind not in "iuf":
            raise TypeError(f"variables: variable {k!r} is not real numeric (dtype {ds[k].dtype})")
    return names


def _run(
    obj: xr.DataArray | xr.Dataset,
    dim: str,
    plan: Plan,
    variables: Iterable[Hashable] | None,
    datetime_unit: str,
) -> tuple[Any, Any, Any]:
    """(derivative, smoothed or None, choices Dataset or None) of the same kind as obj."""
    if isinstance(obj, xr.DataArray):
        where = f"variable {obj.name!r}, dim {dim!r}"
        axis = numeric_axis(obj, dim, datetime_unit, where=where)
        d, s, ch = _one(plan, obj, axis, where)
        return d, s, (xr.Dataset(ch) if plan.choices else None)
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(obj).__name__}")
    names = _select_variables(obj, dim, variables)
    first = names[0] if names else None
    axis = numeric_axis(obj, dim, datetime_unit, where=f"variable {first!r}, dim {dim!r}")
    d_vars: dict[Hashable, Any] = {}
    s_vars: dict[Hashable, Any] = {}
    c_vars: dict[Hashable, Any] = {}
    for k in names:
        d, s, ch = _one(plan, obj[k], axis, f"variable {k!r}, dim {dim!r}")
        d_vars[k] = d
        if s is not None:
            s_vars[k] = s
        for key, v in ch.items():
            c_vars[f"{k}_{key}"] = v.rename(f"{k}_{key}")
    der = obj.copy(deep=False)
    der = der.assign(d_vars)
    for k in names:
        der[k].encoding = {}
    sm = None
    if plan.smoothed:
        sm = obj.copy(deep=False).assign(s_vars)
        for k in names:
            sm[k].encoding = {}
    ch_ds = xr.Dataset(c_vars, attrs=dict(obj.attrs)) if plan.choices else None
    return der, sm, ch_ds


def differentiate(
    obj: xr.DataArray | xr.Dataset,
    dim: str,
    method: str = "finite_difference",
    order: int = 1,
    *,
    variables: Sequence[Hashable] | Hashable | None = None,
    return_smoothed: bool = False,
    datetime_unit: str = "s",
    return_choices: bool = False,
    max_block_bytes: int | str | None = None,
    device: str | None = None,
    allow_host: bool = False,
    **params: Any,
) -> Any:
    """Differentiate labelled data along ``dim`` with a registered method.

    Parameters
    ----------
    obj : DataArray or Dataset, numpy- or Dask-backed
        A Dataset differentiates its real numeric variables that have ``dim`` (or those
        named in ``variables``) and passes the rest through untouched.
    dim : str
        The dimension to differentiate along. Its coordinate may be numeric (possibly
        irregular, increasing or decreasing), datetime64 or cftime (converted to
        ``datetime_unit``), or absent (unit spacing).
    method : str
        A registered method (``deltaflow.methods()``).
    order : int
        Derivative order, within the method's orders.
    variables : names, optional
        Dataset variables to differentiate (default: every numeric one with ``dim``).
    return_smoothed : bool
        Also return the method's smoothed signal (methods with one).
    datetime_unit : {"W", "D", "h", "m", "s", "ms", "us", "ns"}
        Unit of a datetime/cftime/timedelta coordinate; derivatives are per this unit.
    return_choices : bool
        Also return the per-series automatic choices as a Dataset without ``dim``
        (variables named after the choice; ``<var>_<choice>`` for a Dataset input).
    max_block_bytes : int or str, optional
        Largest block a global method (or the choice pass) may need with ``dim`` in one
        chunk; default from Dask config ``deltaflow.max-block-bytes`` (4 GiB).
    device : {None, "cpu", "gpu"}
        Where the differentiated variables are computed and their results stay: None
        leaves the data where it is (CuPy-backed data runs on the GPU), "gpu" moves it to
        the current CUDA device through CuPy (Dask arrays chunk by chunk, lazily), "cpu"
        to host memory. Methods without a GPU path (``deltaflow methods``) refuse GPU data
        unless ``allow_host``.
    allow_host : bool
        Let a method without a GPU path run on GPU data: each block is copied to host
        memory, differentiated there, and its result copied back to the device.
    **params
        The method's parameters.

    Returns
    -------
    The derivative, of the same kind, dims, coords and chunks as ``obj``; with
    ``return_smoothed`` / ``return_choices`` a tuple (derivative, [smoothed], [choices]).
    """
    plan = Plan(
        method,
        order,
        params,
        smoothed=return_smoothed,
        choices=return_choices,
        max_block_bytes=max_block_bytes,
        device=device,
        allow_host=allow_host,
    )
    d, s, ch = _run(obj, dim, plan, variables, datetime_unit)
    result = [d]
    if return_smoothed:
        result.append(s)
    if return_choices:
        result.append(ch)
    return result[0] if len(result) == 1 else tuple(result)


def smooth(
    obj: xr.DataArray | xr.Dataset,
    dim: str,
    method: str,
    *,
    variables: Sequence[Hashable] | Hashable | None = None,
    datetime_unit: str = "s",
    max_block_bytes: int | str | None = None,
    device: str | None = None,
    allow_host: bool = False,
    **params: Any,
) -> Any:
    """The smoothed signal of a method that has one (same kind, dims, coords, chunks);
    ``device`` and ``allow_host`` as for :func:`differentiate`."""
    spec = get_method(method)
    plan = Plan(
        method,
        spec.min_order,
        params,
        smoothed=True,
        max_block_bytes=max_block_bytes,
        device=device,
        allow_host=allow_host,
    )
    _, s, _ = _run(obj, dim, plan, variables, datetime_unit)
    return s
