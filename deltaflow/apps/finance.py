"""Option Greeks and risk-neutral densities from labelled price surfaces.

Prices are any xarray object whose dims include some of spot, volatility, rate, time and
strike (named by the caller); every other dim (underlying, trade date, ...) is a batch
dim, so many surfaces are differentiated at once, chunked like the input. Each Greek is a
partial derivative taken by the engine along the named dim(s), so the method (and its
automatic smoothing for noisy quotes) is any registered one.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..engine import differentiate

__all__ = ["greeks", "risk_neutral_density"]

TimeKind = Literal["expiry", "calendar"]


def _check_dim(obj: Any, dim: Hashable | None, role: str) -> None:
    if dim is not None and dim not in obj.dims:
        raise ValueError(
            f"{role}={dim!r} is not a dim of the prices; dims are {list(map(str, obj.dims))}"
        )


def greeks(
    prices: xr.DataArray,
    spot: Hashable | None = None,
    vol: Hashable | None = None,
    rate: Hashable | None = None,
    time: Hashable | None = None,
    *,
    time_kind: TimeKind = "expiry",
    method: str = "finite_difference",
    per_dim: dict[Hashable, dict[str, Any]] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Greeks of an option price surface, one variable per Greek the dims allow.

    Parameters
    ----------
    prices : DataArray
        Option prices; dims name the risk factors given below plus any batch dims.
    spot, vol, rate, time : str, optional
        The dims holding spot price, volatility, interest rate and time. ``time`` is time
        to expiry (years) when ``time_kind='expiry'`` (Theta = -dV/dtime), calendar time
        when ``'calendar'`` (Theta = dV/dtime).
    method, **params
        The differentiation method and its parameters for every dim;
        ``per_dim={dim: {"method": ..., param: ...}}`` overrides them per dim.

    Returns
    -------
    Dataset with ``delta``, ``gamma`` (spot); ``vega``, ``volga`` (vol); ``rho`` (rate);
    ``theta`` (time); ``vanna`` (spot and vol); ``charm`` (spot and time): those whose
    dims exist. Units follow the coordinates' units. Read Delta as ``g["delta"]``:
    ``g.delta`` is deltaflow's Dataset accessor, which takes precedence over attribute
    access to a variable of that name.
    """
    if not isinstance(prices, xr.DataArray):
        raise TypeError(f"prices must be an xarray.DataArray, got {type(prices).__name__}")
    roles = {"spot": spot, "vol": vol, "rate": rate, "time": time}
    named = {r: d for r, d in roles.items() if d is not None}
    if not named:
        raise ValueError("greeks needs at least one of spot=, vol=, rate=, time= (dim names)")
    for role, d in named.items():
        _check_dim(prices, d, role)
    if time_kind not in ("expiry", "calendar"):
        raise ValueError(f"time_kind must be 'expiry' or 'calendar', got {time_kind!r}")
    per_dim = dict(per_dim or {})
    bad = [d for d in per_dim if d not in named.values()]
    if bad:
        raise ValueError(f"per_dim: {bad[0]!r} is not one of the named dims {list(named.values())}")

    def d(obj: Any, dim: Hashable, order: int = 1) -> Any:
        own = dict(per_dim.get(dim, {}))
        m = own.pop("method", method)
        kw = {**(params if m == method else {}), **own}
        return differentiate(obj, dim, method=m, order=order, **kw)

    out: dict[str, Any] = {}
    sign = -1.0 if time_kind == "expiry" else 1.0
    if spot is not None:
        out["delta"] = d(prices, spot)
        out["gamma"] = d(prices, spot, 2)
    if vol is not None:
        out["vega"] = d(prices, vol)
        out["volga"] = d(prices, vol, 2)
    if rate is not None:
        out["rho"] = d(prices, rate)
    if time is not None:
        out["theta"] = sign * d(prices, time)
    if spot is not None and vol is not None:
        out["vanna"] = d(out["delta"], vol)
    if spot is not None and time is not None:
        out["charm"] = sign * d(out["delta"], time)
    names = {
        "delta": "dV/dS",
        "gamma": "d2V/dS2",
        "vega": "dV/dsigma",
        "volga": "d2V/dsigma2",
        "rho": "dV/dr",
        "theta": "-dV/dtau" if time_kind == "expiry" else "dV/dt",
        "vanna": "d2V/dS dsigma",
        "charm": "-d2V/dS dtau" if time_kind == "expiry" else "d2V/dS dt",
    }
    for k, v in out.items():
        v.attrs = {**v.attrs, "long_name": f"{k} ({names[k]})", "deltaflow_greek": k}
        out[k] = v.rename(k)
    ds = xr.Dataset(out)
    ds.attrs["deltaflow_roles"] = str({r: str(dm) for r, dm in named.items()})
    return ds


def _as_array(value: Any, prices: xr.DataArray, what: str) -> Any:
    """A number, a coordinate/variable name of prices, or a DataArray."""
    if value is None:
        raise ValueError(
            f"risk_neutral_density needs {what}= (a number, a coordinate name or a DataArray)"
        )
    if isinstance(value, str):
        if value not in prices.coords:
            raise ValueError(f"{what}={value!r} is not a coordinate of the prices")
        return prices.coords[value]
    if isinstance(value, xr.DataArray):
        return value
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return v


def risk_neutral_density(
    prices: xr.DataArray,
    strike: Hashable = "strike",
    *,
    rate: Any = None,
    time: Any = None,
    method: str = "finite_difference",
    **params: Any,
) -> xr.DataArray:
    """Risk-neutral density of the underlying at expiry from call prices over strikes.

    Breeden–Litzenberger: q(K) = exp(r T) d2C/dK2. ``rate`` and ``time`` (years to expiry)
    are numbers, coordinate names of ``prices`` or DataArrays broadcasting against it.
    Noisy quotes call for a smoothing ``method`` (e.g. ``spline``); ``deltaflow_mass``
    in the attrs records the integral of the density over the strike range (1 when the
    strikes cover the distribution), computed only for in-memory data.
    """
    if not isinstance(prices, xr.DataArray):
        raise TypeError(f"prices must be an xarray.DataArray, got {type(prices).__name__}")
    _check_dim(prices, strike, "strike")
    r = _as_array(rate, prices, "rate")
    t = _as_array(time, prices, "time")
    curv = differentiate(prices, strike, method=method, order=2, **params)
    q = np.exp(r * t) * curv
    q = q.transpose(*prices.dims).rename("risk_neutral_density")
    units = prices[strike].attrs.get("units")
    q.attrs = {
        "long_name": "risk-neutral density of the underlying at expiry",
        "deltaflow_method": method,
        "deltaflow_dim": str(strike),
        **({"units": f"{units}-1"} if units else {}),
    }
    if not q.chunks:
        mass = q.integrate(strike)
        q.attrs["deltaflow_mass"] = float(mass.mean())
    return q
