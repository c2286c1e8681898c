"""Figures of the applications (matplotlib, Agg, PNG): one function per figure.

Each function takes the result of an application, returns a
:class:`matplotlib.figure.Figure` (built without pyplot, so no GUI backend and no global
state), and writes a PNG when ``path`` is given.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "plot_discovery",
    "plot_greeks",
    "plot_gradient_check",
    "plot_landscape",
    "plot_residual",
    "plot_sensitivity",
    "save",
]

_KIND_STYLE = {
    "minimum": ("o", "tab:green"),
    "maximum": ("^", "tab:red"),
    "saddle": ("X", "tab:orange"),
    "degenerate": ("s", "tab:gray"),
}


def _figure(size: tuple[float, float] = (6.4, 4.8)) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: str | Path | None, dpi: int = 120) -> Any:
    """Write ``fig`` as PNG to ``path`` (parent folders created); returns fig."""
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, format="png", dpi=dpi)
    return fig


def plot_landscape(
    da: xr.DataArray,
    dims: Sequence[Hashable],
    critical: xr.Dataset | None = None,
    path: xr.Dataset | None = None,
    *,
    log: bool | None = None,
    output: str | Path | None = None,
) -> Any:
    """Filled contours of a 2-D landscape with its critical points (marker per kind)
    and descent paths (``descent_path`` output) drawn on top.

    ``log``: contour log10(f - min f + tiny) (default: when the largest rise above the
    minimum exceeds 8x the median rise, as in Rosenbrock's narrow valley).
    """
    dims = list(dims)
    if len(dims) != 2:
        raise ValueError(f"dims: a landscape figure needs 2 dims, got {dims}")
    z = da.transpose(*dims)
    x = np.asarray(z[dims[0]].values if dims[0] in z.coords else np.arange(z.shape[0]))
    y = np.asarray(z[dims[1]].values if dims[1] in z.coords else np.arange(z.shape[1]))
    v = np.asarray(z.values, dtype=np.float64)
    shifted = v - np.nanmin(v)
    top = np.nanmax(shifted)
    if log is None:
        positive = shifted[shifted > 0]
        log = positive.size > 0 and top / np.nanmedian(positive) > 8
    fig = _figure()
    ax = fig.add_subplot()
    if log:
        tiny = max(top * 1e-12, np.finfo(float).tiny)
        cs = ax.contourf(x, y, np.log10(shifted + tiny).T, levels=30, cmap="viridis")
        fig.colorbar(cs, ax=ax, label=f"log10({da.name or 'f'} - min)")
    else:
        cs = ax.contourf(x, y, v.T, levels=30, cmap="viridis")
        fig.colorbar(cs, ax=ax, label=str(da.name or "f"))
    if critical is not None and critical.sizes.get("point", 0):
        for kind, (marker, colour) in _KIND_STYLE.items():
            sel = critical.where(critical["kind"] == kind, drop=True)
            if sel.sizes.get("point", 0):
                ax.scatter(
                    sel[dims[0]].values,
                    sel[dims[1]].values,
                    marker=marker,
                    s=80,
                    c=colour,
                    edgecolors="white",
                    label=kind,
                    zorder=3,
                )
    if path is not None:
        px, py = np.atleast_2d(path[dims[0]].values), np.atleast_2d(path[dims[1]].values)
        for i in range(px.shape[0]):
            ax.plot(px[i], py[i], "-", color="white", lw=1.5, zorder=2)
            ax.plot(px[i, 0], py[i, 0], "o", color="white", ms=5, zorder=2)
        ax.plot([], [], "-", color="white", label="descent path")
    ax.set_xlabel(str(dims[0]))
    ax.set_ylabel(str(dims[1]))
    ax.set_title(f"landscape {da.name or ''}".strip())
    if critical is not None or path is not None:
        ax.legend(loc="upper right", fontsize="small", facecolor="lightgray")
    return save(fig, output)


def plot_sensitivity(
    result: xr.Dataset, *, measure: str = "mean_abs", output: str | Path | None = None
) -> Any:
    """Bar chart of a :func:`deltaflow.sensitivity` result, most important feature first;
    the spread of the local |partial| (10th-90th percentile) as error bars when there
    are several evaluation points."""
    if measure not in ("mean_abs", "scaled", "mean"):
        raise ValueError(f"measure: must be 'mean_abs', 'scaled' or 'mean', got {measure!r}")
    vals = result[measure]
    if vals.ndim != 1:
        raise ValueError(f"{measure}: expected one value per feature, got dims {vals.dims}")
    order = np.argsort(-np.abs(vals.values), kind="stable")
    labels = [str(v) for v in vals["feature"].values[order]]
    fig = _figure()
    ax = fig.add_subplot()
    err = None
    local = np.abs(result["local"])
    other = [d for d in local.dims if d != "feature"]
    if other and measure == "mean_abs" and local.size > local.sizes["feature"]:
        flat = np.asarray(local.transpose(..., "feature").values).reshape(
            -1, local.sizes["feature"]
        )
        lo, hi = np.percentile(flat, [10, 90], axis=0)
        m = vals.values
        err = np.stack([np.maximum(m - lo, 0), np.maximum(hi - m, 0)])[:, order]
    ax.bar(labels, vals.values[order], yerr=err, color="tab:blue", capsize=4)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(
        {
            "mean_abs": "mean |partial derivative|",
            "scaled": "mean |partial| x std",
            "mean": "mean partial derivative",
        }[measure]
    )
    ax.set_xlabel("feature")
    ax.set_title("sensitivity")
    return save(fig, output)


def plot_residual(
    result: xr.Dataset,
    dim: Hashable | None = None,
    *,
    max_series: int = 8,
    output: str | Path | None = None,
) -> Any:
    """A residual along its derivative dim for a few series (left) and the RMS per
    series (right) of a :func:`deltaflow.residual` result."""
    res = result["residual"]
    if dim is None:
        over = str(result["rms"].attrs.get("over", "")).split(", ")
        dim = over[0] if over and over[0] in res.dims else res.dims[-1]
    fig = _figure((10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    series = res.transpose(..., dim)
    coord = series[dim].values if dim in series.coords else np.arange(series.sizes[dim])
    flat = np.asarray(series.values).reshape(-1, series.sizes[dim])
    for i in range(min(max_series, flat.shape[0])):
        ax1.plot(coord, flat[i], lw=1)
    ax1.axhline(0, color="black", lw=0.8)
    ax1.set_xlabel(str(dim))
    ax1.set_ylabel("residual")
    ax1.set_title(str(result["residual"].attrs.get("expression", "")))
    rms = np.atleast_1d(np.asarray(result["rms"].values)).ravel()
    ax2.bar(np.arange(rms.size), rms, color="tab:purple")
    ax2.set_xlabel("series")
    ax2.set_ylabel("RMS residual")
    if np.all(rms > 0) and rms.size:
        ax2.set_yscale("log")
    return save(fig, output)


def plot_gradient_check(check: Any, *, output: str | Path | None = None) -> Any:
    """Relative error per component of a :func:`deltaflow.check_gradient` result (log
    scale), with the tolerance line."""
    rel = np.asarray(check.relative_error).ravel()
    fig = _figure()
    ax = fig.add_subplot()
    floor = np.finfo(float).eps
    colours = np.where(rel <= check.tolerance, "tab:green", "tab:red")
    ax.bar(np.arange(rel.size), np.maximum(rel, floor), color=colours)
    ax.axhline(check.tolerance, color="black", ls="--", lw=1, label="tolerance")
    ax.set_yscale("log")
    ax.set_xlabel("component")
    ax.set_ylabel("relative error")
    ax.set_title(f"gradient check: max relative error {check.max_relative_error:.2g}")
    ax.legend()
    return save(fig, output)


def plot_greeks(
    greeks: xr.Dataset,
    names: Sequence[str] | None = None,
    *,
    output: str | Path | None = None,
) -> Any:
    """Greeks surfaces: one panel per Greek over its first two dims (others at index 0)."""
    names = [n for n in (names or list(greeks.data_vars)) if n in greeks]
    if not names:
        raise ValueError(f"no Greeks to plot; have {list(greeks.data_vars)}")
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = _figure((4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        da = greeks[name]
        keep = [d for d in da.dims if da.sizes[d] > 1][:2]
        da = da.isel({d: 0 for d in da.dims if d not in keep}).squeeze(drop=True).load()
        if da.ndim == 2:
            y, x = da.dims
            mesh = ax.pcolormesh(
                da[x].values if x in da.coords else np.arange(da.sizes[x]),
                da[y].values if y in da.coords else np.arange(da.sizes[y]),
                da.values,
                shading="auto",
                cmap="viridis",
            )
            fig.colorbar(mesh, ax=ax)
            ax.set_xlabel(str(x))
            ax.set_ylabel(str(y))
        else:
            (x,) = da.dims
            ax.plot(da[x].values if x in da.coords else np.arange(da.sizes[x]), da.values)
            ax.set_xlabel(str(x))
        ax.set_title(da.attrs.get("long_name", name), fontsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    return save(fig, output)


def plot_discovery(
    result: xr.Dataset,
    observed: xr.Dataset,
    dim: Hashable,
    *,
    output: str | Path | None = None,
) -> Any:
    """Observed trajectories of one system against the discovered model's simulation."""
    from .apps.discovery import equations, simulate

    variables = list(result.attrs["deltaflow_variables"])
    obs = np.stack([np.asarray(observed[v].values) for v in variables], axis=-1)
    t = np.asarray(observed[dim].values, dtype=np.float64)
    sim = simulate(result, obs[0], t)
    fig = _figure((7.5, 2.0 + 1.6 * len(variables)))
    axes = fig.subplots(len(variables), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, v) in enumerate(zip(axes, variables, strict=True)):
        ax.plot(t, obs[:, i], ".", ms=2, color="0.5", label="observed")
        ax.plot(t[: sim.shape[0]], sim[:, i], color="tab:red", lw=1.2, label="discovered model")
        ax.set_ylabel(v)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(str(dim))
    fig.suptitle("\n".join(equations(result)), fontsize=8)
    return save(fig, output)
