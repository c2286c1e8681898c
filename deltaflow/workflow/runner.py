"""Run a workflow: validate, build the lazy graph, write the store region by region.

``run_workflow`` is the one entry point the CLI, schedulers and tests use. The order of
a run (see :mod:`deltaflow.io` for the store layout):

1. load and validate the file (overrides applied); open the source lazily and build every
   step's graph (nothing computed) — any problem is a ConfigError before data is read;
2. take the store's lock; write ``state.json`` and the metadata template
   (``to_zarr(compute=False)``), or for ``resume`` check the recorded workflow hash;
3. compute the regions not yet in the ledger (each a whole number of store chunks); each
   region's ledger entry is written after its last byte;
4. write the append tail, flip the status to ``complete``, consolidate, release the lock.

``append`` extends the store along ``sink.append_dim`` (see :mod:`.append`): re-running
the same window is an error, not a no-op.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .._device import move_data
from ..io import (
    STATUS_ATTR,
    IncompleteStoreError,
    RegionGrid,
    Store,
    StoreLockedError,
    consolidate,
    record_region,
    set_root_attrs,
    write_block,
)
from . import append as append_mod
from .config import ConfigError, LoadedWorkflow, Problem, cluster_kind, load_workflow
from .steps import StepContext, StepError

LOGGER = logging.getLogger("deltaflow.workflow")

Progress = Callable[[int, int, str], None]


class RunError(RuntimeError):
    """A run that failed after validation (exit code 1 on the command line)."""


class RegionError(RuntimeError):
    """Regions whose computation or write failed (``dim=a-b,...`` each) and the first cause."""

    def __init__(self, regions: list[str], cause: BaseException | None):
        self.regions = regions
        self.cause = cause
        shown = "; ".join(regions[:10]) + (
            f"; ... ({len(regions)} in all)" if len(regions) > 10 else ""
        )
        super().__init__(f"failed region(s) {shown}: {type(cause).__name__}: {cause}")


@dataclass
class RunSummary:
    """What a run did."""

    path: str
    mode: str
    workflow: str
    sha256: str
    regions_total: int
    regions_written: int
    regions_skipped: int
    bytes_written: int
    bytes_on_disk: int
    seconds: float
    complete: bool
    plot: str | None = None

    def __str__(self) -> str:
        rate = self.bytes_written / self.seconds / 2**20 if self.seconds > 0 else 0.0
        skipped = f", {self.regions_skipped} already done" if self.regions_skipped else ""
        plot = f"; plot {self.plot}" if self.plot else ""
        return (
            f"{self.workflow}: wrote {self.regions_written}/{self.regions_total} regions"
            f"{skipped} ({_fmt_bytes(self.bytes_written)} of data, "
            f"{_fmt_bytes(self.bytes_on_disk)} on disk) in {self.seconds:.1f} s "
            f"({rate:.0f} MiB/s) to {self.path} [{self.mode}]{plot}"
        )


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"


# --------------------------------------------------------------------------- build


@dataclass
class Built:
    """A validated workflow turned into a lazy dataset and a region grid."""

    loaded: LoadedWorkflow
    store: Store
    mode: str
    source: Any
    out: Any
    write_vars: list[str]
    chunks: dict[str, int]
    grid: RegionGrid
    halos: list[dict[str, int | None]]
    state: dict[str, Any] | None = None
    append: dict[str, Any] | None = None
    steps_info: list[dict[str, Any]] = field(default_factory=list)


def _wrap(loaded: LoadedWorkflow, path: tuple[Any, ...], err: Exception) -> ConfigError:
    msg = str(err).strip() or type(err).__name__
    if isinstance(err, FileNotFoundError) and not str(err):
        msg = "file not found"
    return loaded.error([Problem(path, msg)])


def open_source(loaded: LoadedWorkflow) -> Any:
    """The source dataset (lazy), cut to its ``time_range``; ConfigError at ``source`` (or
    the key under it) when it cannot be opened."""
    from .sources import SourceError

    src = loaded.config.source
    try:
        return src.open_window()
    except SourceError as err:
        raise _wrap(loaded, ("source", *err.key), err) from None
    except IncompleteStoreError as err:
        raise _wrap(loaded, ("source", "path"), err) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        where = ("source", "path") if isinstance(err, OSError) else ("source",)
        raise _wrap(loaded, where, err) from None


def apply_steps(loaded: LoadedWorkflow, ds: Any) -> Any:
    """Run every step lazily; a problem becomes a ConfigError at ``steps[i].<kind>.<key>``."""
    for i, step in enumerate(loaded.config.step_list()):
        base: tuple[Any, ...] = ("steps", i, step.kind)
        try:
            ds = step.run(ds, StepContext(index=i, allow_host=loaded.config.allow_host))
        except StepError as err:
            key = tuple(err.key.split(".")) if err.key else ()
            raise _wrap(loaded, base + key, err) from None
        except (ValueError, TypeError, KeyError) as err:
            raise _wrap(loaded, base, err) from None
    return ds


def build(loaded: LoadedWorkflow, *, mode: str | None = None) -> Built:
    """Open the source, build the steps and lay out the store; reads no chunk data."""
    cfg = loaded.config
    sink = cfg.sink
    mode = mode or sink.mode
    store = Store(sink.path, sink.storage_options)
    state = store.read_state() if store.exists() or store.occupied() else None

    if mode == "create" and store.occupied():
        raise loaded.error(
            [
                Problem(
                    ("sink", "path"),
                    f"{sink.path} already exists (mode create refuses to touch it); use "
                    "mode overwrite to replace it, resume to finish it, or append to extend it",
                )
            ]
        )
    resuming_append = (
        mode == "resume"
        and state is not None
        and state.get("status") == "writing"
        and state.get("op") == "append"
    )
    append: dict[str, Any] | None = None
    source = open_source(loaded)
    halos = [s.halo() for s in cfg.step_list()]

    if mode == "append" or resuming_append:
        append = append_mod.setup(loaded, store, state, source, halos, resuming=resuming_append)
        joined = append["joined"]
    else:
        joined = source
    if cfg.device == "gpu":
        try:
            joined = move_data(joined, "gpu")
        except RuntimeError as err:
            raise loaded.error([Problem(("device",), str(err))]) from None
    if sink.append_dim and sink.append_dim not in joined.dims:
        raise loaded.error(
            [Problem(("sink", "append_dim"), f"no dim {sink.append_dim!r} in the source")]
        )

    ds = apply_steps(loaded, joined)
    names = sink.variables if sink.variables is not None else [str(v) for v in ds.data_vars]
    missing = [v for v in names if v not in ds.data_vars]
    if missing:
        raise loaded.error(
            [
                Problem(
                    ("sink", "variables"),
                    f"no variable(s) {', '.join(missing)} after the steps; variables: "
                    + ", ".join(map(str, ds.data_vars)),
                )
            ]
        )
    if not names:
        raise loaded.error([Problem(("sink",), "nothing to write: the dataset has no variables")])
    for v in names:
        if ds[v].dtype.kind not in "fiub":
            raise loaded.error(
                [
                    Problem(
                        ("sink", "variables"),
                        f"variable {v!r} has dtype {ds[v].dtype}; "
                        "only numeric variables are written region by region",
                    )
                ]
            )
    out = ds[names]
    unknown = [d for d in sink.chunks if d not in out.dims]
    if unknown:
        raise loaded.error(
            [
                Problem(
                    ("sink", "chunks", unknown[0]),
                    f"no dim {unknown[0]!r} in the output; dims: {', '.join(map(str, out.dims))}",
                )
            ]
        )
    chunks: dict[str, int] = {}
    for d in out.dims:
        d = str(d)
        if d in sink.chunks:
            chunks[d] = min(sink.chunks[d], out.sizes[d])
            continue
        first = 0
        for v in names:
            if d in out[v].dims and out[v].chunks is not None:
                first = max(first, out[v].chunks[out[v].dims.index(d)][0])
        chunks[d] = first or out.sizes[d]

    offsets = {d: 0 for d in chunks}
    totals = {d: int(out.sizes[d]) for d in chunks}
    if append is not None:
        dim = sink.append_dim
        c = chunks[dim]
        if append["chunk"] is not None and append["chunk"] != c:
            c = chunks[dim] = append["chunk"]
        start = (max(append["n_old"] - append["halo"], 0) // c) * c
        rel = start - append["tail_start"]
        if rel < 0:
            raise RunError(
                f"append: the stored tail starts at {append['tail_start']} but the rewrite "
                f"starts at {start}; the store's tail is too short"
            )
        out = out.isel({dim: slice(rel, None)})
        offsets[dim] = start
        totals[dim] = append["n_old"] + append["n_new"]
        append["start"] = start
    out = out.chunk({d: c for d, c in chunks.items()})
    out = out.assign_coords({k: v.load() for k, v in out.coords.items() if v.chunks})
    dims = tuple(chunks)
    edges = tuple(tuple(list(range(offsets[d], totals[d], chunks[d])) + [totals[d]]) for d in dims)
    grid = RegionGrid(dims, edges)
    for v in names:
        expect = tuple(
            tuple(
                b - a
                for a, b in zip(edges[dims.index(d)][:-1], edges[dims.index(d)][1:], strict=True)
            )
            for d in out[v].dims
        )
        if tuple(out[v].chunks) != expect:
            raise RunError(f"internal: chunks of {v!r} {out[v].chunks} != store grid {expect}")
    info = [{**s.describe(), "halo": h} for s, h in zip(cfg.step_list(), halos, strict=True)]
    return Built(
        loaded, store, mode, source, out, list(names), chunks, grid, halos, state, append, info
    )


# --------------------------------------------------------------------------- run


def _provenance(built: Built, start: str) -> dict[str, Any]:
    import deltaflow

    cfg = built.loaded.config
    return {
        "deltaflow_version": deltaflow.__version__,
        "workflow_name": cfg.name,
        "workflow_sha256": built.loaded.sha256,
        "workflow_file": built.loaded.file or "",
        "steps": built.steps_info,
        "source": cfg.source.describe(),
        "run_start": start,
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _template(built: Built, prov: Mapping[str, Any]) -> None:
    """Write the metadata template: every array's shape, chunks, codec and attrs, no data."""
    import warnings

    sink = built.loaded.config.sink
    tmpl = move_data(built.out, "cpu")  # never computed; a host meta for zarr
    tmpl.attrs = {**prov, STATUS_ATTR: "incomplete"}
    enc = {}
    for v in built.write_vars:
        tmpl[v].encoding = {}
        enc[v] = {
            "chunks": tuple(built.chunks[str(d)] for d in tmpl[v].dims),
            "compressors": sink.codec_for(v).compressors(),
        }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")
        warnings.filterwarnings("ignore", message=".*consolidated.*")
        tmpl.to_zarr(
            built.store.zarr_target(),
            mode="a",
            compute=False,
            zarr_format=3,
            consolidated=False,
            encoding=enc,
        )


@contextmanager
def _client_for(spec: Any, client: Any) -> Iterator[Any]:
    """The Dask client to run on: the one given, one from ``deltaflow.cluster`` for a
    cluster spec, or None (the in-process threaded scheduler) when no cluster is named."""
    if client is not None or spec is None:
        yield client
        return
    try:
        from .. import cluster as _cluster
    except ImportError:  # pragma: no cover - the cluster module ships with deltaflow
        _cluster = None
    if _cluster is not None and hasattr(_cluster, "get_client"):
        with _cluster.get_client(spec) as c:
            yield c
        return
    if cluster_kind(spec) == "address":  # pragma: no cover - without deltaflow.cluster
        from distributed import Client

        with Client(spec) as c:
            yield c
        return
    raise ConfigError(  # pragma: no cover
        [Problem(("cluster",), f"cluster {spec!r} needs deltaflow.cluster")]
    )


def check_cluster_spec(loaded: LoadedWorkflow, spec: Any) -> None:
    """Resolve a cluster spec (profile name, file, mapping, address) without starting it."""
    if spec is None:
        return
    try:
        from ..cluster import resolve_profile
    except ImportError:  # pragma: no cover
        return
    try:
        resolve_profile(spec, source=loaded.file or "<workflow>", prefix="cluster")
    except ValueError as err:
        msg = str(err)
        for pre in (f"{loaded.file or '<workflow>'}: cluster: ", "<cluster>: cluster: "):
            msg = msg.removeprefix(pre)
        raise loaded.error([Problem(("cluster",), msg)]) from None


def _execute(
    built: Built, epoch: str, done: set[str], client: Any, progress: Progress | None
) -> tuple[int, int]:
    """Compute and write every region not in ``done``; returns (regions, bytes) written.

    A failure raises RegionError naming every failed region (in grid order) and the first
    cause, after the regions that do not depend on it have finished and been recorded
    (on a distributed client and on the threaded scheduler alike).
    """
    from functools import partial

    import dask
    from dask.callbacks import Callback
    from dask.delayed import delayed

    from .settle import Failed, settling_get

    grid, out, store = built.grid, built.out, built.store
    blocks = {v: out[v].data.to_delayed(optimize_graph=False) for v in built.write_vars}
    records = []
    names: dict[str, str] = {}
    for idx in grid.indices():
        key = grid.key(idx)
        if key in done:
            continue
        bounds = grid.bounds(idx)
        writes = []
        for v in built.write_vars:
            vdims = tuple(str(d) for d in out[v].dims)
            if any(i != 0 for d, i in zip(grid.dims, idx, strict=True) if d not in vdims):
                continue  # a variable without this dim is written once, with index 0 there
            bidx = tuple(idx[grid.dims.index(d)] for d in vdims)
            writes.append(
                delayed(write_block, pure=False)(
                    blocks[v][bidx],
                    store.path,
                    store.storage_options,
                    v,
                    bounds,
                    vdims,
                    dask_key_name=f"deltaflow-write-{v}-{epoch}-{key}",
                )
            )
        name = f"deltaflow-region-{epoch}-{key}"
        names[name] = key
        records.append(
            delayed(record_region, pure=False)(
                store.path, store.storage_options, epoch, key, *writes, dask_key_name=name
            )
        )
    total = len(grid)
    base = total - len(records)
    written = [0]
    if progress:
        progress(base, total, "")
    if not records:
        return 0, 0
    if client is not None:
        from distributed import as_completed

        futures = client.compute(records)
        nbytes = 0
        for fut in as_completed(futures):
            if fut.status == "error":
                # let the rest settle (finished regions stay recorded), then name every
                # failed region: a bad input block fails each region whose halo reads it
                from distributed import wait

                wait(futures)
                failed = [names.get(str(f.key), str(f.key)) for f in futures if f.status == "error"]
                raise RegionError(failed, fut.exception())
            nbytes += int(fut.result())
            written[0] += 1
            if progress:
                progress(base + written[0], total, "")
        return written[0], nbytes

    class _Tick(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            k = key if isinstance(key, str) else str(key)
            if k in names and not isinstance(result, Failed):
                written[0] += 1
                if progress:
                    progress(base + written[0], total, names[k])

    # threads: one execution of the whole graph; after a failure every region that does
    # not depend on it still finishes (and is recorded), then the failed ones are named
    failures: list[Failed] = []
    with _Tick():
        results = dask.compute(*records, scheduler=partial(settling_get, failures=failures))
    failed = [k for k, r in zip(names.values(), results, strict=True) if isinstance(r, Failed)]
    if failed:
        first = failures[0] if failures else next(r for r in results if isinstance(r, Failed))
        raise RegionError(failed, first.exc) from first.exc
    return len(results), int(sum(results))


def run_workflow(
    config_or_path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Iterable[str] = (),
    cluster: str | None = None,
    resume: bool = False,
    client: Any = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunSummary:
    """Validate and run a workflow; returns what was written.

    ``overrides`` are ``key.path=value`` strings; ``cluster`` replaces the workflow's
    ``cluster:`` ('local', a profile name or file, or a scheduler address); ``resume``
    runs in mode resume whatever the file says; ``client`` is an existing Dask client;
    ``progress(done, total, region_key)`` is called as regions finish. Raises ConfigError
    for invalid input (nothing touched), StoreLockedError when another writer holds the
    store, RunError or the underlying exception when the run fails.
    """
    t0 = time.perf_counter()
    loaded = load_workflow(config_or_path, overrides=overrides, environ=environ)
    cfg = loaded.config
    if cluster is not None:
        from .config import check_cluster

        try:
            check_cluster(cluster)
        except ValueError as err:
            raise ConfigError([Problem(("cluster",), str(err))]) from None
    check_cluster_spec(loaded, cluster if cluster is not None else cfg.cluster)
    mode = "resume" if resume else cfg.sink.mode
    built = build(loaded, mode=mode)
    store = built.store
    run_id = uuid.uuid4().hex[:12]
    start = _now()
    store.acquire(run_id)
    try:
        summary = _run_locked(built, run_id, start, cluster or cfg.cluster, client, progress, t0)
    finally:
        store.release(run_id)
    if cfg.plot is not None and summary.complete:
        from .plot import plot_store

        plot_store(
            cfg.sink.path,
            cfg.plot.var,
            sel=cfg.plot.sel,
            out=cfg.plot.out,
            max_points=cfg.plot.max_points,
        )
        summary.plot = cfg.plot.out
    return summary


def _run_locked(
    built: Built,
    run_id: str,
    start: str,
    cluster: Any,
    client: Any,
    progress: Progress | None,
    t0: float,
) -> RunSummary:
    store, loaded = built.store, built.loaded
    sink = loaded.config.sink
    state = store.read_state()
    mode = built.mode
    epoch: str
    done: set[str] = set()
    prov = _provenance(built, start)

    fresh = mode in ("create", "overwrite")
    if mode == "resume":
        if state is None:
            if store.exists():
                raise ConfigError(
                    [
                        Problem(
                            ("sink", "path"),
                            f"{sink.path} is a Zarr store that deltaflow did "
                            "not write (no _deltaflow/state.json); refusing to resume into it",
                        )
                    ]
                )
            fresh = True  # nothing there yet: a resume starts from scratch
        elif state.get("status") == "template":
            fresh = True  # killed while writing the template: no region was written
        elif state.get("workflow_sha256") != loaded.sha256 and state.get("op") != "append":
            raise loaded.error(
                [
                    Problem(
                        (),
                        f"resume: {sink.path} was written by a different workflow (hash "
                        f"{state.get('workflow_sha256', '?')[:12]}, this one "
                        f"{loaded.sha256[:12]}); use mode overwrite to replace it",
                    )
                ]
            )
        elif (
            state.get("op") == "append"
            and state.get("status") == "writing"
            and (state.get("append", {}).get("workflow_sha256") != loaded.sha256)
        ):
            raise loaded.error(
                [
                    Problem(
                        (),
                        "resume: the interrupted append was run with a different "
                        "workflow (source window or settings); rerun that same append",
                    )
                ]
            )
    if fresh:
        if store.exists() or store.occupied():
            store.clear()
        epoch = uuid.uuid4().hex[:8]
        store.write_state({"status": "template", "epoch": epoch})
        _template(built, prov)
        store.ensure_meta_group()
        state = {
            "format": 1,
            "status": "writing",
            "op": "create",
            "mode": mode,
            "epoch": epoch,
            "run_id": run_id,
            "regions": built.grid.to_json(),
            "chunks": built.chunks,
            "sizes": {d: e[-1] for d, e in zip(built.grid.dims, built.grid.edges, strict=True)},
            "workflow_sha256": loaded.sha256,
            "pipeline_sha256": loaded.pipeline_sha256,
            "append_dim": sink.append_dim,
            "tail": None,
            "history": [],
        }
        store.write_state(state)
    elif built.append is not None and state.get("status") == "complete":
        epoch = uuid.uuid4().hex[:8]
        a = built.append
        state = {
            **state,
            "status": "writing",
            "op": "append",
            "mode": mode,
            "epoch": epoch,
            "run_id": run_id,
            "regions": built.grid.to_json(),
            "append": {
                "dim": a["dim"],
                "n_old": a["n_old"],
                "n_new": a["n_new"],
                "tail": a["tail"],
                "start": a["start"],
                "workflow_sha256": loaded.sha256,
            },
        }
        store.write_state(state)
        set_root_attrs(store, {STATUS_ATTR: "incomplete"})
        append_mod.extend(built)
        consolidate(store)
    else:
        assert state is not None
        if state.get("status") == "complete":
            LOGGER.info("%s is already complete; nothing to do", sink.path)
            return RunSummary(
                sink.path,
                mode,
                loaded.config.name,
                loaded.sha256,
                len(built.grid),
                0,
                len(built.grid),
                0,
                store.size_on_disk(),
                time.perf_counter() - t0,
                True,
            )
        epoch = state["epoch"]
        if built.append is not None:
            append_mod.extend(built)  # idempotent: finishes a resize the kill interrupted
        grid = RegionGrid.from_json(state["regions"])
        if grid != built.grid:
            raise RunError(
                f"resume: the region grid of {sink.path} differs from this workflow's "
                "(chunks or sizes changed); use mode overwrite"
            )
        done = store.recorded(epoch)

    try:
        with _client_for(cluster, client) as c:
            n, nbytes = _execute(built, epoch, done, c, progress)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the compute is a failed run
        raise RunError(
            f"run failed after {len(store.recorded(epoch))}/{len(built.grid)} regions: "
            f"{type(err).__name__}: {err}; finish it with --resume"
        ) from err

    # finish: tail, provenance, status, consolidation
    missing = len(built.grid) - len(store.recorded(epoch) & _keys(built.grid))
    if missing:
        raise RunError(f"{missing} region(s) were not recorded; finish with --resume")
    tail = append_mod.write_tail(built, epoch)
    old_tail = state.get("tail")
    end = _now()
    history = list(state.get("history", [])) + [
        {
            "op": state.get("op"),
            "start": start,
            "end": end,
            "regions": n,
            "workflow_sha256": loaded.sha256,
            "time_range": _json_range(loaded.config.source),
        }
    ]
    sizes = {d: e[-1] for d, e in zip(built.grid.dims, built.grid.edges, strict=True)}
    set_root_attrs(store, {**prov, "run_end": end, STATUS_ATTR: "complete"})
    state = {
        **state,
        "status": "complete",
        "tail": tail or old_tail,
        "sizes": sizes,
        "history": history,
        "workflow_sha256": loaded.sha256,
        # where the next time_range window must start (None: not windowed by time_range)
        "window_end": append_mod.window_end(loaded, sink.append_dim),
    }
    state.pop("append", None)
    store.write_state(state)
    consolidate(store)
    if tail and old_tail and old_tail != tail:
        try:
            store.fs.rm(store.path_of(store.tail_path(old_tail)), recursive=True)
        except FileNotFoundError:
            pass
    return RunSummary(
        path=sink.path,
        mode=mode,
        workflow=loaded.config.name,
        sha256=loaded.sha256,
        regions_total=len(built.grid),
        regions_written=n,
        regions_skipped=len(built.grid) - n,
        bytes_written=nbytes,
        bytes_on_disk=store.size_on_disk(),
        seconds=time.perf_counter() - t0,
        complete=True,
    )


def _json_range(source: Any) -> list[Any] | None:
    rng = getattr(source, "time_range", None)
    return None if rng is None else list(rng)


def _keys(grid: RegionGrid) -> set[str]:
    return {grid.key(i) for i in grid.indices()}


# --------------------------------------------------------------------------- plan


def validate_workflow(
    config_or_path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Built:
    """Validate in full (file, source metadata, every step's graph, sink); computes nothing."""
    loaded = load_workflow(config_or_path, overrides=overrides, environ=environ)
    check_cluster_spec(loaded, loaded.config.cluster)
    return build(loaded)


def plan_workflow(
    config_or_path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    threads_per_worker: int | None = None,
) -> dict[str, Any]:
    """What a run would do: steps and halos, the chunk grid, tasks and memory per worker.

    Memory per worker is estimated as threads x 2 x (the largest region's output bytes +
    its input bytes widened by the halos), the factor 2 for kernel temporaries.
    """
    import dask

    built = validate_workflow(config_or_path, overrides=overrides, environ=environ)
    out, src = built.out, built.source
    threads = threads_per_worker or os.cpu_count() or 1
    region_out = 0
    for v in built.write_vars:
        region_out += out[v].dtype.itemsize * math.prod(built.chunks[str(d)] for d in out[v].dims)
    region_in = 0
    for v in src.data_vars:
        n = src[v].dtype.itemsize
        for d in src[v].dims:
            c = built.chunks.get(str(d), src.sizes[d])
            h = append_mod.total_halo(built.halos, str(d))
            n *= src.sizes[d] if h is None else min(c + 2 * h, src.sizes[d])
        region_in += n
    tasks = len(dask.optimize(out)[0].__dask_graph__())
    total_bytes = sum(int(out[v].nbytes) for v in built.write_vars)
    return {
        "workflow": built.loaded.config.name,
        "sha256": built.loaded.sha256,
        "sink": {"path": built.store.path, "mode": built.mode},
        "device": built.loaded.config.device,
        "allow_host": built.loaded.config.allow_host,
        "steps": built.steps_info,
        "source": {
            "kind": built.loaded.config.source.kind,
            "dims": {str(k): int(v) for k, v in src.sizes.items()},
            "variables": [str(v) for v in src.data_vars],
        },
        "outputs": {
            v: {
                "dims": [str(d) for d in out[v].dims],
                "shape": list(out[v].shape),
                "chunks": [built.chunks[str(d)] for d in out[v].dims],
                "dtype": str(out[v].dtype),
                "bytes": int(out[v].nbytes),
            }
            for v in built.write_vars
        },
        "chunk_grid": {
            d: len(e) - 1 for d, e in zip(built.grid.dims, built.grid.edges, strict=True)
        },
        "halos": {str(d): append_mod.total_halo(built.halos, str(d)) for d in built.grid.dims},
        "regions": len(built.grid),
        "tasks": tasks,
        "bytes": total_bytes,
        "threads_per_worker": threads,
        "memory_per_worker": int(threads * 2 * (region_out + region_in)),
    }


__all__ = [
    "Built",
    "ConfigError",
    "RunError",
    "RunSummary",
    "StoreLockedError",
    "build",
    "plan_workflow",
    "run_workflow",
    "validate_workflow",
]
