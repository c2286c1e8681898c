"""Vector calculus on labelled grids: gradient, Jacobian, Hessian, Laplacian, divergence, curl.

Every partial derivative goes through the engine (:func:`deltaflow.engine.differentiate`),
one dim at a time, so any registered method works along any dim, dask-backed input stays
lazy and chunked, and a mixed partial is a derivative along one dim of the derivative along
the other (true mixed partials; nothing is assumed to vanish).

Results are labelled: the vector index of a gradient is a new dim (``component`` by
default) whose labels are the names of the dims differentiated along; a Hessian has two
such dims (``component_i``, ``component_j``); a Jacobian has ``variable`` (one label per
input variable) by ``component``.

Choosing methods: ``method`` and ``**params`` apply to every dim; ``per_dim`` overrides
them for single dims, e.g. ``per_dim={"t": {"method": "savgol", "window": 11}}``. Common
``**params`` apply only to the dims that use the common ``method``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .kernels import get_method

__all__ = [
    "curl",
    "directional_derivative",
    "divergence",
    "gradient",
    "hessian",
    "jacobian",
    "jacobian_logdet",
    "laplacian",
    "partial",
]

COMPONENT = "component"
HESSIAN_DIMS = ("component_i", "component_j")
VARIABLE = "variable"


def _engine_differentiate(obj: Any, dim: Hashable, method: str, order: int, **params: Any) -> Any:
    from .engine import differentiate

    return differentiate(obj, dim, method=method, order=order, **params)


@dataclass(frozen=True)
class _Plan:
    """Which method and parameters to use along each dim."""

    method: str
    params: dict[str, Any]
    per_dim: dict[Hashable, dict[str, Any]] = field(default_factory=dict)

    def along(self, dim: Hashable) -> tuple[str, dict[str, Any]]:
        own = dict(self.per_dim.get(dim, {}))
        method = own.pop("method", self.method)
        common = self.params if method == self.method else {}
        return method, {**common, **own}

    def diff(self, obj: Any, dim: Hashable, order: int = 1) -> Any:
        """Derivative of ``order`` along ``dim`` (repeated first derivatives when the
        method gives no higher order)."""
        method, params = self.along(dim)
        spec = get_method(method)
        if order in spec.orders:
            return _engine_differentiate(obj, dim, method, order, **params)
        out = obj
        for _ in range(order):
            out = _engine_differentiate(out, dim, method, 1, **params)
        return out


def _plan(
    method: str, params: Mapping[str, Any], per_dim: Mapping[Hashable, Any] | None, dims: list
) -> _Plan:
    get_method(method)  # unknown method: ValueError listing the known ones
    per = {}
    for dim, opts in dict(per_dim or {}).items():
        if dim not in dims:
            raise ValueError(f"per_dim: dim {dim!r} is not one of the dims {dims}")
        if not isinstance(opts, Mapping):
            raise TypeError(
                f"per_dim[{dim!r}]: expected a mapping like {{'method': ..., **params}}, "
                f"got {type(opts).__name__}"
            )
        per[dim] = dict(opts)
        if "method" in per[dim]:
            get_method(per[dim]["method"])
    return _Plan(method, dict(params), per)


def _check_dims(obj: Any, dims: Any, what: str = "dims", n: int | None = None) -> list[Hashable]:
    """The dims as a list, checked: present on obj, no repeats, optionally exactly n."""
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        dims = [dims]
    dims = list(dims)
    if not dims:
        raise ValueError(f"{what}: give at least one dim")
    if len(set(dims)) != len(dims):
        raise ValueError(f"{what}: repeated dim in {dims}")
    for d in dims:
        if d not in obj.dims:
            name = getattr(obj, "name", None)
            where = f" of {name!r}" if isinstance(obj, xr.DataArray) and name else ""
            raise ValueError(
                f"{what}: dim {d!r} is not a dim{where}; its dims are {list(obj.dims)}"
            )
    if n is not None and len(dims) != n:
        raise ValueError(f"{what}: expected {n} dims, got {len(dims)} ({dims})")
    return dims


def _check_variables(ds: xr.Dataset, variables: Any, dims: list) -> list[Hashable]:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset of the variables, got {type(ds).__name__}")
    if isinstance(variables, str) or not isinstance(variables, Sequence):
        variables = [variables]
    variables = list(variables)
    if not variables:
        raise ValueError("variables: give at least one variable")
    for v in variables:
        if v not in ds.data_vars:
            raise ValueError(
                f"variables: {v!r} is not a data variable; the dataset has {list(ds.data_vars)}"
            )
        missing = [d for d in dims if d not in ds[v].dims]
        if missing:
            raise ValueError(
                f"variables: {v!r} lacks dim(s) {missing}; its dims are {list(ds[v].dims)}"
            )
    return variables


def _stack(parts: list[Any], labels: list[Hashable], dim: str) -> Any:
    """Concatenate along a new labelled dim, placed last (so (..., d) and (..., d, d))."""
    out = xr.concat(parts, dim=pd.Index(labels, name=dim), coords="minimal", compat="override")
    lazy = any(v.chunks is not None for v in _variables(out))
    if lazy:  # one chunk along the component dim: blocks hold whole vectors / matrices
        out = out.chunk({dim: -1})
    return out.transpose(..., dim)


def _variables(obj: Any) -> list[Any]:
    return [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())


def _named(out: Any, op: str, source: Any, dims: list, plan: _Plan) -> Any:
    attrs = {
        "operation": op,
        "dims": ", ".join(str(d) for d in dims),
        "method": ", ".join(f"{d}: {plan.along(d)[0]}" for d in dims),
    }
    if isinstance(out, xr.DataArray):
        name = getattr(source, "name", None)
        out.name = f"{op}_{name}" if name is not None else op
        out.attrs = {**getattr(source, "attrs", {}), **attrs}
    else:
        out.attrs = {**out.attrs, **attrs}
    return out


def partial(
    da: xr.DataArray | xr.Dataset,
    dims: Hashable | Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.DataArray | xr.Dataset:
    """The partial derivative along each of ``dims`` in turn (``["x", "y"]`` is d2/dxdy;
    a repeated dim differentiates along it again): same dims, coords and chunks as ``da``."""
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        dims = [dims]
    dims = list(dims)
    _check_dims(da, sorted(set(dims), key=dims.index))
    plan = _plan(method, params, per_dim, dims)
    counts: dict[Hashable, int] = {}
    for d in dims:
        counts[d] = counts.get(d, 0) + 1
    out = da
    for d, k in counts.items():
        out = plan.diff(out, d, k)
    return _named(out, "partial", da, dims, plan)


def gradient(
    da: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    component_dim: str = COMPONENT,
    **params: Any,
) -> xr.DataArray | xr.Dataset:
    """The gradient of ``da`` with respect to ``dims``.

    Returns ``da``'s dims plus ``component_dim`` (labels: the dims), the component along
    a dim having ``da``'s units divided by that dim's coordinate units.
    """
    dims = _check_dims(da, dims)
    plan = _plan(method, params, per_dim, dims)
    out = _stack([plan.diff(da, d) for d in dims], dims, component_dim)
    return _named(out, "gradient", da, dims, plan)


def directional_derivative(
    da: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable],
    direction: Sequence[float] | Mapping[Hashable, Any] | xr.DataArray,
    *,
    normalize: bool = True,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    component_dim: str = COMPONENT,
    **params: Any,
) -> xr.DataArray | xr.Dataset:
    """The derivative of ``da`` along ``direction`` (grad(da) . u).

    ``direction``: one number per dim (a sequence in the order of ``dims``, or a mapping
    dim -> number or DataArray), or a DataArray with ``component_dim`` (a direction field).
    ``normalize=True`` scales it to unit length first (pointwise for a field).
    """
    dims = _check_dims(da, dims)
    if isinstance(direction, xr.DataArray):
        if component_dim not in direction.dims:
            raise ValueError(
                f"direction: a DataArray direction needs the dim {component_dim!r} labelled "
                f"by {dims}; its dims are {list(direction.dims)}"
            )
        comps = {d: direction.sel({component_dim: d}, drop=True) for d in dims}
    elif isinstance(direction, Mapping):
        extra = [k for k in direction if k not in dims]
        if extra:
            raise ValueError(f"direction: key(s) {extra} are not among the dims {dims}")
        comps = {d: direction.get(d, 0.0) for d in dims}
    else:
        vals = list(np.asarray(direction, dtype=np.float64).ravel())
        if len(vals) != len(dims):
            raise ValueError(
                f"direction: expected {len(dims)} components (one per dim {dims}), got {len(vals)}"
            )
        comps = dict(zip(dims, vals, strict=True))
    if normalize:
        norm = sum(c * c for c in comps.values()) ** 0.5
        if np.isscalar(norm) or isinstance(norm, np.ndarray):
            if not np.all(np.asarray(norm) > 0):
                raise ValueError("direction: the direction vector has zero length")
        comps = {d: c / norm for d, c in comps.items()}
    plan = _plan(method, params, per_dim, dims)
    out = None
    for d, c in comps.items():
        if isinstance(c, int | float | np.floating) and c == 0:
            continue
        term = plan.diff(da, d) * c
        out = term if out is None else out + term
    if out is None:
        out = plan.diff(da, dims[0]) * 0.0
    return _named(out, "directional_derivative", da, dims, plan)


def hessian(
    da: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    component_dims: tuple[str, str] = HESSIAN_DIMS,
    **params: Any,
) -> xr.DataArray | xr.Dataset:
    """The Hessian of ``da``: second derivatives along each dim and true mixed partials.

    Returns ``da``'s dims plus the two ``component_dims`` (labels: the dims). A mixed
    partial d2/dx dy is the derivative along y of the derivative along x, computed once
    and placed at (x, y) and (y, x).
    """
    dims = _check_dims(da, dims)
    if len(component_dims) != 2 or component_dims[0] == component_dims[1]:
        raise ValueError(f"component_dims: need two distinct names, got {component_dims!r}")
    plan = _plan(method, params, per_dim, dims)
    first = {d: plan.diff(da, d) for d in dims}
    cell: dict[tuple[Hashable, Hashable], Any] = {}
    for i, a in enumerate(dims):
        cell[a, a] = plan.diff(da, a, 2)
        for b in dims[i + 1 :]:
            cell[a, b] = cell[b, a] = plan.diff(first[a], b)
    rows = [_stack([cell[a, b] for b in dims], dims, component_dims[1]) for a in dims]
    out = _stack(rows, dims, component_dims[0]).transpose(..., *component_dims)
    return _named(out, "hessian", da, dims, plan)


def laplacian(
    da: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.DataArray | xr.Dataset:
    """The Laplacian of ``da``: the sum of its second derivatives along ``dims``."""
    dims = _check_dims(da, dims)
    plan = _plan(method, params, per_dim, dims)
    out = None
    for d in dims:
        term = plan.diff(da, d, 2)
        out = term if out is None else out + term
    return _named(out, "laplacian", da, dims, plan)


def jacobian(
    ds: xr.Dataset,
    variables: Sequence[Hashable],
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    variable_dim: str = VARIABLE,
    component_dim: str = COMPONENT,
    **params: Any,
) -> xr.DataArray:
    """The Jacobian d(variable_i)/d(dim_j) of the vector field ``ds[variables]``.

    Returns the variables' dims plus ``variable_dim`` (labels: the variables) and
    ``component_dim`` (labels: the dims).
    """
    dims = _check_dims(ds, dims)
    variables = _check_variables(ds, variables, dims)
    plan = _plan(method, params, per_dim, dims)
    rows = [_stack([plan.diff(ds[v], d) for d in dims], dims, component_dim) for v in variables]
    out = _stack(rows, variables, variable_dim).transpose(..., variable_dim, component_dim)
    return _named(out, "jacobian", None, dims, plan)


def jacobian_logdet(
    ds: xr.Dataset,
    variables: Sequence[Hashable],
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.DataArray:
    """log |det J| of the square Jacobian of ``ds[variables]`` with respect to ``dims``.

    The change-of-variables term of a map x -> (variables)(x), as in normalizing flows;
    -inf where the map is singular. Same dims as the variables.
    """
    dims = _check_dims(ds, dims)
    variables = _check_variables(ds, variables, dims)
    if len(variables) != len(dims):
        raise ValueError(
            f"jacobian_logdet: the Jacobian must be square; got {len(variables)} variables "
            f"{variables} and {len(dims)} dims {dims}"
        )
    jac = jacobian(ds, variables, dims, method=method, per_dim=per_dim, **params)

    def _logabsdet(a: np.ndarray) -> np.ndarray:
        return np.linalg.slogdet(a)[1]

    out = xr.apply_ufunc(
        _logabsdet,
        jac,
        input_core_dims=[[VARIABLE, COMPONENT]],
        dask="parallelized",
        output_dtypes=[jac.dtype],
    )
    plan = _plan(method, params, per_dim, dims)
    return _named(out, "jacobian_logdet", None, dims, plan)


def divergence(
    ds: xr.Dataset,
    variables: Sequence[Hashable],
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.DataArray:
    """The divergence sum_i d(variable_i)/d(dim_i); variables and dims pair up in order."""
    dims = _check_dims(ds, dims)
    variables = _check_variables(ds, variables, dims)
    if len(variables) != len(dims):
        raise ValueError(
            f"divergence: need one variable per dim; got {len(variables)} variables "
            f"{variables} and {len(dims)} dims {dims}"
        )
    plan = _plan(method, params, per_dim, dims)
    out = None
    for v, d in zip(variables, dims, strict=True):
        term = plan.diff(ds[v], d)
        out = term if out is None else out + term
    return _named(out, "divergence", None, dims, plan)


def curl(
    ds: xr.Dataset,
    variables: Sequence[Hashable],
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    component_dim: str = COMPONENT,
    **params: Any,
) -> xr.DataArray:
    """The curl of a 2-D or 3-D vector field; variables and dims pair up in order.

    2-D (u, v) over (x, y): the scalar dv/dx - du/dy. 3-D (u, v, w) over (x, y, z): a
    vector with ``component_dim`` labelled by the dims:
    (dw/dy - dv/dz, du/dz - dw/dx, dv/dx - du/dy).
    """
    dims = _check_dims(ds, dims)
    if len(dims) not in (2, 3):
        raise ValueError(f"curl: dims must name 2 or 3 dims, got {len(dims)} ({dims})")
    variables = _check_variables(ds, variables, dims)
    if len(variables) != len(dims):
        raise ValueError(
            f"curl: need one variable per dim; got {len(variables)} variables "
            f"{variables} and {len(dims)} dims {dims}"
        )
    plan = _plan(method, params, per_dim, dims)

    def d(i: int, j: int) -> Any:
        return plan.diff(ds[variables[i]], dims[j])

    if len(dims) == 2:
        out = d(1, 0) - d(0, 1)
    else:
        parts = [d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1)]
        out = _stack(parts, dims, component_dim)
    return _named(out, "curl", None, dims, plan)
