"""Sensitivity analysis: local partial derivatives and a global ranking of features.

From scattered samples (model predictions at feature vectors) the partials come from
local polynomial fits (:func:`deltaflow.scattered.fit_local`); from a grid (a parameter
sweep) they come from :func:`deltaflow.calculus.gradient`. The global importance of a
feature is the mean absolute partial derivative over the evaluation points; ``scaled``
multiplies it by the feature's standard deviation so that features of different units
compare (the typical change of the prediction when the feature moves by one std).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..calculus import gradient
from ..scattered import FEATURE, QUERY, fit_local

__all__ = ["sensitivity"]


def _summary(local: xr.DataArray, spread: np.ndarray, over: Sequence[Hashable]) -> xr.Dataset:
    """Global measures from local partials (with a ``feature`` dim) reduced over ``over``."""
    mean_abs = np.abs(local).mean(over)
    scaled = mean_abs * xr.DataArray(spread, dims=FEATURE)
    rank = xr.apply_ufunc(
        lambda m: np.argsort(np.argsort(-m, axis=-1, kind="stable"), axis=-1) + 1,
        mean_abs.compute(),
        input_core_dims=[[FEATURE]],
        output_core_dims=[[FEATURE]],
    )
    return xr.Dataset(
        {
            "local": local,
            "mean_abs": mean_abs,
            "mean": local.mean(over),
            "scaled": scaled,
            "ranking": rank,
        }
    )


def sensitivity(
    features: Any,
    predictions: Any = None,
    *,
    at: Any = None,
    dims: Sequence[Hashable] | None = None,
    degree: Literal[1, 2] = 1,
    neighbours: int | Literal["auto"] = "auto",
    max_points: int | None = 2000,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Local sensitivities (partial derivatives) and a global ranking of features.

    Two forms:

    * scattered: ``sensitivity(features, predictions)`` with features (n, d) (array,
      DataFrame, 2-D DataArray, or Dataset of feature variables) and predictions (n,).
      Partials from local fits of ``degree`` (default 1: a local linear model) with
      ``neighbours`` samples each; evaluated at ``at`` (q, d) when given, otherwise at
      up to ``max_points`` of the samples (evenly spread over the sample order; None:
      all).
    * grid: ``sensitivity(da, dims=[...])`` with a DataArray sampled over the feature
      dims; partials from :func:`deltaflow.calculus.gradient` (``method``, ``per_dim``,
      ``**params``) at every grid point.

    Returns
    -------
    Dataset with ``local`` (point, feature) (grid form: the grid dims and ``feature``),
    and per feature ``mean_abs`` (mean |partial|, the global measure), ``mean``,
    ``scaled`` (mean_abs * std of the feature) and ``ranking`` (1 = most important, by
    ``mean_abs``).
    """
    if predictions is None:
        return _grid_sensitivity(features, dims, method, per_dim, params)
    if dims is not None:
        raise ValueError("dims: only for the grid form (predictions=None)")
    fit_at = at
    if at is None and max_points is not None:
        n = np.shape(np.asarray(predictions))[0]
        if n > max_points:
            pts = _points_array(features)
            fit_at = pts[np.unique(np.linspace(0, n - 1, max_points).astype(np.int64))]
    fit = fit_local(features, predictions, at=fit_at, degree=degree, neighbours=neighbours)
    local = fit["gradient"]
    if "output" in local.dims:
        raise ValueError(
            f"predictions: expected one value per sample, got shape {np.shape(predictions)}"
        )
    spread = _points_array(features).std(axis=0)
    out = _summary(local, spread, [QUERY])
    out = out.assign_coords({k: v for k, v in fit.coords.items() if k.startswith("at_")})
    out.attrs = {
        "operation": "sensitivity",
        "source": "scattered",
        "degree": degree,
        "neighbours": fit.attrs["neighbours"],
    }
    return out


def _points_array(features: Any) -> np.ndarray:
    from ..scattered import _as_points

    return _as_points(features, "features")[0]


def _grid_sensitivity(
    da: Any,
    dims: Sequence[Hashable] | None,
    method: str,
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None,
    params: dict[str, Any],
) -> xr.Dataset:
    if not isinstance(da, xr.DataArray):
        raise TypeError(
            "features: without predictions, features must be a DataArray sampled on a grid "
            f"(the grid form, with dims=...), got {type(da).__name__}"
        )
    if dims is None:
        raise ValueError("dims: name the feature dims of the grid, e.g. dims=['x', 'y']")
    dims = list(dims)
    local = gradient(da, dims, method=method, per_dim=per_dim, component_dim=FEATURE, **params)
    spread = np.array(
        [
            float(np.std(np.asarray(da[d].values, dtype=np.float64)))
            if d in da.coords
            else float(np.std(np.arange(da.sizes[d])))
            for d in dims
        ]
    )
    out = _summary(local, spread, dims)
    out.attrs = {"operation": "sensitivity", "source": "grid", "method": method}
    return out
