"""A figure of a stored signal and its derivatives along one dim (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def related(ds: Any, var: str) -> list[str]:
    """``var`` followed by the variables derived from it (smoothed, then by order)."""
    found = []
    for name in ds.data_vars:
        a = ds[name].attrs
        if a.get("deltaflow_source_var") == var and name != var:
            found.append((int(a.get("deltaflow_order", 0)), str(name)))
    return [var] + [n for _, n in sorted(found)]


def select_series(da: Any, sel: Mapping[str, Any]) -> Any:
    """One 1-D series: label selection (nearest for numbers), index 0 of remaining dims."""
    unknown = [d for d in sel if d not in da.dims]
    if unknown:
        raise ValueError(
            f"--sel: no dim {unknown[0]!r} in {da.name!r}; dims: {', '.join(map(str, da.dims))}"
        )
    for d, v in sel.items():
        if isinstance(v, dict):
            da = da.sel({d: slice(v.get("start"), v.get("stop"))})
            continue
        try:
            da = da.sel({d: v})
        except KeyError:
            try:
                da = da.sel({d: v}, method="nearest")
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"--sel: no label {v!r} along {d!r}") from None
    while da.ndim > 1:
        sizes = dict(da.sizes)
        da = da.isel({min(sizes, key=lambda k: sizes[k]): 0})
    return da


def plot_store(
    path: str,
    var: str,
    *,
    sel: Mapping[str, Any] | None = None,
    out: str | Path,
    max_points: int = 5000,
    allow_incomplete: bool = False,
) -> Path:
    """Draw ``var`` and every stored variable derived from it, one panel each; returns out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import open_store

    ds = open_store(path, allow_incomplete=allow_incomplete)
    if var not in ds.data_vars:
        raise ValueError(
            f"no variable {var!r} in {path}; variables: {', '.join(map(str, ds.data_vars))}"
        )
    names = related(ds, var)
    series = [select_series(ds[n], sel or {}) for n in names]
    dim = series[0].dims[0] if series[0].ndim else None
    if dim is None:
        raise ValueError(f"{var!r} has no dim left to plot along after --sel")
    n = series[0].sizes[dim]
    step = max(1, -(-n // max_points))
    fig, axes = plt.subplots(len(names), 1, sharex=True, figsize=(9, 2.2 * len(names) + 0.6))
    axes = [axes] if len(names) == 1 else list(axes)
    for ax, name, s in zip(axes, names, series, strict=True):
        s = s.isel({dim: slice(None, None, step)}).load()
        ax.plot(s[dim].values, s.values, lw=0.8)
        units = s.attrs.get("units", "")
        ax.set_ylabel(f"{name}" + (f"\n[{units}]" if units else ""), fontsize=8)
        ax.grid(alpha=0.3)
    picked = ", ".join(f"{d}={v.values.item()}" for d, v in series[0].coords.items() if v.ndim == 0)
    axes[0].set_title(
        f"{path}: {var} and its derivatives" + (f" ({picked})" if picked else ""), fontsize=9
    )
    axes[-1].set_xlabel(str(dim))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
