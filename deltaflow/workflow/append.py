"""Append mode: extend a store along ``sink.append_dim`` so it equals a full recompute.

The new source window is joined to the input tail the previous run stored (``2 * halo +
chunk`` samples along the dim, under ``_deltaflow/tail_<epoch>``); the steps run on that,
and the runner (re)writes the regions from the last chunk the old edge's halo touched. An
append that does not start after the stored end, that changes the pipeline, or whose steps
need whole series along the dim is refused; with ``source.time_range`` a window that
starts after the previous window's end is refused too (the samples between would be lost).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..io import Store
from .config import LoadedWorkflow, Problem

if TYPE_CHECKING:
    from .runner import Built


def total_halo(halos: list[dict[str, int | None]], dim: str) -> int | None:
    """Samples needed on each side along ``dim`` by all steps in sequence (None: global)."""
    h = 0
    for one in halos:
        if dim in one:
            if one[dim] is None:
                return None
            h += int(one[dim])  # type: ignore[arg-type]
    return h


def setup(
    loaded: LoadedWorkflow,
    store: Store,
    state: dict[str, Any] | None,
    source: Any,
    halos: list[dict[str, int | None]],
    *,
    resuming: bool,
) -> dict[str, Any]:
    """Check an append (or its resume) and join the stored tail to the new data."""
    import numpy as np
    import xarray as xr

    sink = loaded.config.sink
    dim = sink.append_dim or (state or {}).get("append", {}).get("dim")
    if state is None or not store.exists():
        raise loaded.error(
            [
                Problem(
                    ("sink", "mode"),
                    f"append: no deltaflow store at {sink.path} to extend; "
                    "run once with mode create first",
                )
            ]
        )
    if not resuming and state.get("status") != "complete":
        raise loaded.error(
            [
                Problem(
                    ("sink", "mode"),
                    f"append: {sink.path} is incomplete (status "
                    f"{state.get('status')!r}); finish it with --resume first",
                )
            ]
        )
    if state.get("pipeline_sha256") != loaded.pipeline_sha256:
        raise loaded.error(
            [
                Problem(
                    ("steps",),
                    "append: the steps or sink layout differ from the ones that "
                    "wrote the store; an append must use the same pipeline",
                )
            ]
        )
    if dim is None or dim != state.get("append_dim"):
        raise loaded.error(
            [
                Problem(
                    ("sink", "append_dim"),
                    f"append: the store was written with append_dim "
                    f"{state.get('append_dim')!r}, not {dim!r}",
                )
            ]
        )
    h = total_halo(halos, dim)
    if h is None:
        raise loaded.error(
            [
                Problem(
                    ("steps",),
                    f"append: a step needs the whole of dim {dim!r} (a global "
                    "method, a running integral or a selection along it); appended results "
                    "could not equal a full recompute",
                )
            ]
        )
    for i, step in enumerate(loaded.config.step_list()):
        spec = getattr(step, "_spec", None)
        if spec is not None and spec.choose is not None and getattr(step, "dim", None) == dim:
            raise loaded.error(
                [
                    Problem(
                        ("steps", i, step.kind, "method"),
                        f"append: method {spec.name!r} "
                        f"chooses its parameters from whole series along {dim!r}, so "
                        "appended results would differ from a full recompute",
                    )
                ]
            )
    info = state.get("append") if resuming else None
    tail_name = info["tail"] if info else state.get("tail")
    if not tail_name:
        raise loaded.error(
            [
                Problem(
                    ("sink", "append_dim"),
                    f"append: {sink.path} keeps no input tail (written without append_dim)",
                )
            ]
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tail = xr.open_zarr(
            store.zarr_target(), group=f"_deltaflow/{tail_name}", consolidated=False
        ).load()
    n_old = info["n_old"] if info else int(state["sizes"][dim])
    if dim not in source.dims:
        raise loaded.error([Problem(("sink", "append_dim"), f"the source has no dim {dim!r}")])
    new_first = source[dim].values[0]
    old_last = tail[dim].values[-1]
    shown = {
        "new": str(getattr(new_first, "item", lambda: new_first)()),
        "old": str(getattr(old_last, "item", lambda: old_last)()),
    }
    if not np.all(new_first > old_last):
        raise loaded.error(
            [
                Problem(
                    ("source",),
                    f"append: the new data starts at {dim}={shown['new']}, which "
                    f"is not after the stored end {dim}={shown['old']}; overlapping or "
                    "out-of-order appends (and re-running the same window) are refused",
                )
            ]
        )
    if not resuming:
        check_no_gap(loaded, state, dim)
    try:
        joined = xr.concat(
            [tail, source.chunk({dim: -1}) if not source.chunks else source],
            dim=dim,
            join="exact",
            data_vars="all",
            coords="different",
            compat="equals",
        )
    except ValueError as err:
        raise loaded.error(
            [
                Problem(
                    ("source",),
                    f"append: the new data does not match the stored data "
                    f"apart from {dim!r}: {err}",
                )
            ]
        ) from None
    return {
        "dim": dim,
        "halo": h,
        "n_old": n_old,
        "n_new": int(source.sizes[dim]),
        "tail_start": n_old - int(tail.sizes[dim]),
        "tail": tail_name,
        "chunk": state.get("chunks", {}).get(dim),
        "joined": joined,
    }


def window_end(loaded: LoadedWorkflow, dim: str | None) -> float | str | None:
    """The end of the source's time_range when it windows ``dim`` (else None)."""
    src = loaded.config.source
    rng = getattr(src, "time_range", None)
    if rng is None or dim is None or getattr(src, "time_dim", None) != dim:
        return None
    return rng[1]


def check_no_gap(loaded: LoadedWorkflow, state: dict[str, Any], dim: str) -> None:
    """Refuse a time_range append that starts after the previous window's end: the samples
    in between would never be written (a missed or late scheduled run)."""
    from .sources import range_key

    src = loaded.config.source
    prev = state.get("window_end")
    rng = getattr(src, "time_range", None)
    if prev is None or rng is None or getattr(src, "time_dim", None) != dim:
        return
    start = rng[0]
    if isinstance(prev, float | int) != isinstance(start, float | int):
        return  # numbers then datetimes: the coordinate check reports that
    if range_key(start) > range_key(prev):
        raise loaded.error(
            [
                Problem(
                    ("source", "time_range"),
                    f"append: the window starts at {start}, but the store's last window "
                    f"ended at {prev}: [{prev}, {start}) would never be written; append "
                    f"that window first, or start this one at {prev} to include it",
                )
            ]
        )


def write_tail(built: Built, epoch: str) -> str | None:
    """Keep the last 2*halo+chunk input samples along append_dim for the next append."""
    import warnings

    dim = built.loaded.config.sink.append_dim
    if not dim:
        return None
    h = total_halo(built.halos, dim)
    if h is None:
        return None
    src = built.append["joined"] if built.append else built.source
    n = 2 * h + built.chunks[dim]
    tail = src.isel({dim: slice(-n, None)}).load()
    for v in tail.variables.values():
        v.encoding = {}
    name = f"tail_{epoch}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tail.to_zarr(
            built.store.zarr_target(),
            group=f"_deltaflow/{name}",
            mode="w",
            zarr_format=3,
            consolidated=False,
        )
    return name


def extend(built: Built) -> None:
    """Grow every array along the append dim and write the new coordinate values."""
    import warnings

    import zarr

    a = built.append
    assert a is not None
    dim, total = a["dim"], a["n_old"] + a["n_new"]
    target = built.store.zarr_target()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(target, mode="r+", zarr_format=3, use_consolidated=False)
        coord = g[dim] if dim in g else None
        if coord is not None and coord.shape[0] == a["n_old"]:
            import xarray as xr

            new = built.out[dim].isel({dim: slice(a["n_old"] - a["start"], None)})
            xr.Dataset(coords={dim: (dim, new.values, dict(new.attrs))}).to_zarr(
                target, append_dim=dim, mode="a", zarr_format=3, consolidated=False
            )
        for name, arr in g.arrays():
            dims = list(arr.metadata.dimension_names or arr.attrs.get("_ARRAY_DIMENSIONS", []))
            if dim in dims and name != dim:
                shape = list(arr.shape)
                shape[dims.index(dim)] = total
                if tuple(shape) != arr.shape:
                    arr.resize(tuple(shape))
