"""Cumulative integration along a dim: the way back from a derivative, with an error estimate.

``integrate(da, dim, initial)`` returns F with F[0] = initial and
F[i] = initial + integral of da from x[0] to x[i]. Per-interval increments are local
(a halo of at most two samples), so a chunked ``dim`` stays chunked: the increments run
through the engine's halo blocks and the running sum through Dask's blocked cumsum.

Rules, any spacing, increasing or decreasing coordinates:

* ``"trapezoid"``: (x[i] - x[i-1]) (y[i-1] + y[i]) / 2; second order.
* ``"simpson"``: the integral over [x[i-1], x[i]] of the cubic through the four nearest
  samples (i-2 .. i+1 inside, one-sided at the ends). On uniform spacing this is
  h/24 (-y[i-2] + 13 y[i-1] + 13 y[i] - y[i+1]), the mean of Simpson's quadratic rule
  from either side; fourth order on smooth data.

``return_error=True`` also gives |F_trapezoid - F_simpson|: the trapezoid's error up to
higher-order terms (Richardson's idea with the two rules as the two estimates). For
``method="simpson"`` it is a conservative bound: the cubic rule is more accurate still.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._attrs import integral_units
from ._blocks import blockwise_with_halo, merge_chunks
from ._coords import numeric_axis
from ._device import check_device, to_device
from .engine import LOGGER, is_dask, kernel_axis
from .kernels._xp import asarray_like, namespace

IntegrationMethod = Literal["trapezoid", "simpson"]
_HALO = {"trapezoid": (1, 0), "simpson": (2, 1)}
_NEED = {"trapezoid": 2, "simpson": 4}
_GAUSS = np.array([-1.0, 1.0]) / np.sqrt(3.0)  # 2-point Gauss-Legendre: exact for cubics


def trapezoid_increments(y: Any, x: np.ndarray) -> Any:
    """Per-interval trapezoid integrals along the last axis; element 0 is 0. Shape of y
    (NumPy or CuPy; x on the host)."""
    xp = namespace(y)
    out = xp.empty_like(y)
    out[..., 0] = 0.0
    dx = asarray_like(np.diff(x), xp, dtype=y.dtype)
    xp.add(y[..., 1:], y[..., :-1], out=out[..., 1:])
    out[..., 1:] *= 0.5 * dx
    return out


def cubic_weights(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (n-1,) and weights (n-1, 4) of the cubic rule for intervals 1..n-1.

    Interval i spans [x[i-1], x[i]] and uses samples start[i-1] .. start[i-1] + 3, the
    Lagrange cubic through them integrated exactly by 2-point Gauss-Legendre.
    """
    n = x.shape[0]
    i = np.arange(1, n)
    start = np.clip(i - 2, 0, n - 4)
    nodes = x[start[:, None] + np.arange(4)]  # (n-1, 4)
    a, b = x[i - 1], x[i]
    half = 0.5 * (b - a)
    mid = 0.5 * (a + b)
    w = np.zeros((n - 1, 4))
    for g in _GAUSS:
        t = mid + half * g
        for j in range(4):
            lj = np.ones(n - 1)
            for m in range(4):
                if m != j:
                    lj = lj * (t - nodes[:, m]) / (nodes[:, j] - nodes[:, m])
            w[:, j] += half * lj
    return start, w


def cubic_increments(y: Any, x: np.ndarray) -> Any:
    """Per-interval cubic-rule integrals along the last axis; element 0 is 0."""
    xp = namespace(y)
    start, w = cubic_weights(x)
    out = xp.empty_like(y)
    out[..., 0] = 0.0
    acc = out[..., 1:]
    w = asarray_like(w.T.copy(), xp, dtype=y.dtype)  # (4, n - 1)
    xp.multiply(xp.take(y, asarray_like(start, xp, dtype=np.int64), axis=-1), w[0], out=acc)
    for j in range(1, 4):
        acc += xp.take(y, asarray_like(start + j, xp, dtype=np.int64), axis=-1) * w[j]
    return out


def _increments(method: str, with_error: bool, y: Any, x: np.ndarray, extras: list) -> tuple:
    main = trapezoid_increments(y, x) if method == "trapezoid" else cubic_increments(y, x)
    if not with_error:
        return (main,)
    other = cubic_increments(y, x) if method == "trapezoid" else trapezoid_increments(y, x)
    return main, other - main


def _cumulative(
    data: Any, ax: int, x: np.ndarray, method: str, with_error: bool, where: str
) -> tuple[Any, Any]:
    """(integral from x[0] with initial 0, error estimate or None), numpy or dask."""
    func = functools.partial(_increments, method, with_error)
    if not is_dask(data):
        y = np.moveaxis(data, ax, -1)
        outs = func(y, x, [])
        cum = np.moveaxis(np.cumsum(outs[0], axis=-1), -1, ax)
        err = np.moveaxis(np.abs(np.cumsum(outs[1], axis=-1)), -1, ax) if with_error else None
        return cum, err
    halo = _HALO["simpson" if with_error else method]
    need = _NEED["simpson" if with_error else method]
    original = data.chunks
    minimum = max(max(halo), need)
    merged = merge_chunks(data.chunks[ax], minimum)
    if merged != data.chunks[ax]:
        LOGGER.info(
            "%s: merging %d chunks along the dim into %d (integration needs %d samples each)",
            where,
            len(data.chunks[ax]),
            len(merged),
            minimum,
        )
        data = data.rechunk({ax: merged})
    outs = blockwise_with_halo(
        data,
        ax,
        x,
        func,
        halo=halo,
        need=need,
        outputs=[(data.dtype, True)] * (2 if with_error else 1),
        name=f"deltaflow-integrate-{method}",
        token=("integrate", method, with_error),
    )
    cum = outs[0].cumsum(axis=ax)
    err = abs(outs[1].cumsum(axis=ax)) if with_error else None
    if cum.chunks != original:
        cum = cum.rechunk(original)
        err = err.rechunk(original) if err is not None else None
    return cum, err


def _integrate_one(
    da: xr.DataArray,
    dim: str,
    initial: Any,
    method: str,
    return_error: bool,
    datetime_unit: str,
    device: str | None = None,
) -> tuple[xr.DataArray, xr.DataArray | None]:
    where = f"variable {da.name!r}, dim {dim!r}"
    axis = numeric_axis(da, dim, datetime_unit, where=where)
    need = _NEED["simpson" if return_error else method]
    if axis.n < need:
        what = "method 'simpson' and return_error=True need" if need == 4 else "needs"
        raise ValueError(f"{where}: integration {what} at least {need} samples, got {axis.n}")
    kind = da.dtype.kind
    if kind not in "iufb":
        raise TypeError(f"{where}: data must be real numeric, got dtype {da.dtype}")
    data = to_device(da.data if kind == "f" else da.data.astype(np.float64), device)
    ax = da.get_axis_num(dim)
    cum, err = _cumulative(data, ax, kernel_axis(axis.values), method, return_error, where)
    label = da.attrs.get("long_name") or (str(da.name) if da.name is not None else "data")
    attrs = {
        "long_name": f"integral of {label} along {dim}",
        "deltaflow_integral_method": method,
        "deltaflow_dim": dim,
        **axis.attrs,
    }
    units = integral_units(da.attrs.get("units"), axis.units)
    if units is not None:
        attrs["units"] = units
    out = xr.DataArray(cum, dims=da.dims, coords=da.coords, name=da.name, attrs=attrs)
    if isinstance(initial, xr.DataArray):
        if dim in initial.dims:
            raise ValueError(f"{where}: initial must not have dim {dim!r} (one value per series)")
        out = (out + initial).transpose(*da.dims, ...)
        out.attrs = attrs
    elif isinstance(initial, int | float | np.number) and not isinstance(initial, bool):
        if initial != 0:
            out = out + initial
            out.attrs = attrs
        out.attrs["deltaflow_initial"] = float(initial)
    else:
        raise TypeError(f"{where}: initial must be a number or a DataArray without {dim!r}")
    error = None
    if err is not None:
        eattrs = {
            "long_name": f"error estimate of the integral of {label} along {dim}",
            "deltaflow_error_estimate": "|trapezoid - cubic rule|, cumulative",
            "deltaflow_dim": dim,
        }
        if units is not None:
            eattrs["units"] = units
        error = xr.DataArray(
            err, dims=da.dims, coords=da.coords, name=f"{da.name}_error", attrs=eattrs
        )
    return out, error


def integrate(
    obj: xr.DataArray | xr.Dataset,
    dim: str,
    initial: float | xr.DataArray = 0.0,
    method: IntegrationMethod = "trapezoid",
    *,
    return_error: bool = False,
    datetime_unit: str = "s",
    device: str | None = None,
) -> Any:
    """Cumulative integral along ``dim``, starting from ``initial`` at the first sample.

    Parameters
    ----------
    obj : DataArray or Dataset (numeric variables with ``dim``), numpy- or Dask-backed.
    dim : the dim to integrate along (coordinate as for :func:`deltaflow.differentiate`).
    initial : value at the first sample: a number, or a DataArray without ``dim``
        (one value per series, e.g. ``u.isel(time=0)``).
    method : {"trapezoid", "simpson"}
        Second-order trapezoid, or the fourth-order cubic rule (module docstring).
    return_error : bool
        Also return |F_trapezoid - F_simpson| (same shape) as an error estimate.
    device : {None, "cpu", "gpu"}
        Where to compute, as for :func:`deltaflow.differentiate`.

    Returns the integral (same kind, dims, coords, chunks), or (integral, error).
    Units are the data's times the coordinate's (``m s-1`` over ``s`` gives ``m``).
    """
    if method not in _HALO:
        raise ValueError(f"method must be 'trapezoid' or 'simpson', got {method!r}")
    check_device(device)
    if isinstance(obj, xr.DataArray):
        out, err = _integrate_one(obj, dim, initial, method, return_error, datetime_unit, device)
        return (out, err) if return_error else out
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(obj).__name__}")
    names: list[Hashable] = [
        k for k, v in obj.data_vars.items() if dim in v.dims and v.dtype.kind in "iuf"
    ]
    outs, errs = {}, {}
    for k in names:
        init = initial[k] if isinstance(initial, xr.Dataset) else initial
        outs[k], e = _integrate_one(obj[k], dim, init, method, return_error, datetime_unit, device)
        if e is not None:
            errs[k] = e.rename(k)
    res = obj.copy(deep=False).assign(outs)
    if not return_error:
        return res
    return res, xr.Dataset(errs, attrs=dict(obj.attrs))
