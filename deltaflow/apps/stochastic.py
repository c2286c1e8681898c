"""Rates of change of stochastic price paths: Itô and Stratonovich log-return rates.

A price path S(t) of geometric Brownian motion is nowhere differentiable, so the ordinary
chain rule does not give d log S from dS. In Itô calculus (increments evaluated at the
start of each step) d log S = dS/S - sigma^2/2 dt; in Stratonovich calculus (midpoint
evaluation) the ordinary chain rule holds, d log S = dS/S. Both estimate the same drift of
log S; the naive dS/S/dt without the correction estimates the drift of S instead.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

import numpy as np
import xarray as xr

from .._coords import numeric_axis

__all__ = ["log_return_rate"]

Calculus = Literal["ito", "stratonovich"]


def log_return_rate(
    prices: xr.DataArray,
    dim: Hashable,
    *,
    calculus: Calculus = "ito",
    datetime_unit: str = "s",
) -> xr.Dataset:
    """Per-step log-return rate of price paths along ``dim``, with volatility.

    Parameters
    ----------
    prices : DataArray
        Positive prices; every series along ``dim`` is one path (other dims are batch).
    dim : str
        The time dim (numeric or datetime; datetimes in ``datetime_unit``).
    calculus : {"ito", "stratonovich"}
        ``ito``: (dS/S)/dt with S at the start of each step, minus sigma^2/2;
        ``stratonovich``: dS/dt over the midpoint price (S_i + S_i+1)/2, no correction.

    Returns
    -------
    Dataset with ``rate`` (per step, on the left end of each step: n-1 points along
    ``dim``, units 1/time), ``mean_rate`` and ``sigma`` per path (sigma from the realised
    quadratic variation of log S: sqrt(sum (d log S)^2 / T)), and ``naive_rate``, the mean
    of (dS/S)/dt without the Itô correction (the drift of S, not of log S).
    """
    if not isinstance(prices, xr.DataArray):
        raise TypeError(f"prices must be an xarray.DataArray, got {type(prices).__name__}")
    if dim not in prices.dims:
        raise ValueError(f"dim {dim!r} is not a dim of the prices; dims are {list(prices.dims)}")
    if calculus not in ("ito", "stratonovich"):
        raise ValueError(f"calculus must be 'ito' or 'stratonovich', got {calculus!r}")
    n = prices.sizes[dim]
    if n < 3:
        raise ValueError(f"dim {dim!r}: a path needs at least 3 samples, got {n}")
    if prices.chunks is None:
        others = [d for d in prices.dims if d != dim]
        low = np.asarray(prices.min(dim=others) if others else prices)
        bad = np.flatnonzero(~(low > 0))
        if bad.size:
            raise ValueError(
                f"prices must be positive and finite; first offending position along {dim!r}: "
                f"{int(bad[0])}"
            )
    axis = numeric_axis(prices, dim, datetime_unit, where=f"variable {prices.name!r}, dim {dim!r}")
    step = np.diff(axis.values)
    if step[0] < 0:
        raise ValueError(f"dim {dim!r}: time must increase along the path")
    dt = xr.DataArray(step, dims=[dim])
    left = prices.isel({dim: slice(None, -1)})
    right = prices.isel({dim: slice(1, None)})
    if dim in right.coords:
        right = right.drop_vars(dim)  # positional pairing; the result keeps left's labels
    dlog = np.log(right) - np.log(left)
    total = float(step.sum())
    sigma = np.sqrt((dlog**2).sum(dim) / total)
    simple = (right - left) / left / dt
    if calculus == "ito":
        rate = simple - 0.5 * sigma**2
    else:
        rate = (right - left) / (0.5 * (left + right)) / dt
    weights = dt / total
    out = xr.Dataset(
        {
            "rate": rate.transpose(*prices.dims),
            "mean_rate": (rate * weights).sum(dim),
            "sigma": sigma,
            "naive_rate": (simple * weights).sum(dim),
        }
    )
    if axis.units:
        for k in ("rate", "mean_rate", "naive_rate"):
            out[k].attrs["units"] = f"{axis.units}-1"
        out["sigma"].attrs["units"] = f"{axis.units}-1/2"
    out["rate"].attrs["long_name"] = f"log-return rate ({calculus})"
    out["mean_rate"].attrs["long_name"] = f"mean log-return rate per path ({calculus})"
    out["sigma"].attrs["long_name"] = "volatility from realised quadratic variation of log S"
    out["naive_rate"].attrs["long_name"] = "mean (dS/S)/dt, no Itô correction (drift of S)"
    out.attrs["deltaflow_calculus"] = calculus
    return out
