"""Scale beyond memory: a Zarr dataset >= 4x the workers' total memory limit, through a workflow.

Builds a Zarr store of noisy sensor series (sensor, time), then runs one workflow that
differentiates it with a local method (finite differences) and a global one (spectral when
registered, else a smoothing spline), twice:

* distributed: a LocalCluster of ``--workers`` worker processes limited to
  ``--memory-limit`` each (the ``local`` cluster profile with configs/dask.yaml's memory
  thresholds), through ``run_workflow(..., client=...)``;
* threaded: the same workflow on the threaded scheduler of this process, with as many
  threads as the cluster has.

It samples the resident memory of every process (psutil, every 0.1 s) and reports per
process peaks, worker restarts, bytes spilled to disk, throughput (input bytes / s) and the
ratio distributed / threaded, plus the disk used. Everything it wrote is removed at the end
unless ``--keep``.

    python benchmarks/scale.py                       # 4 GiB through 2 x 512 MiB workers
    python benchmarks/scale.py --size-gib 8 --memory-limit 1GiB
    python benchmarks/scale.py --size-gib 1 --memory-limit 128MiB --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_TIME = 8192  # samples per series; a global method needs whole series in one chunk


# --------------------------------------------------------------------------- data


def _block(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    """Deterministic noisy sinusoids for one (sensor, time) block."""
    (s0, s1), (t0, t1) = block_info[None]["array-location"]  # type: ignore[index]
    s = np.arange(s0, s1, dtype=np.float64)[:, None]
    t = np.arange(t0, t1, dtype=np.float64)[None, :] * 0.01
    f = 0.05 + 0.4 * ((s * 0.6180339887) % 1.0)
    rng = np.random.default_rng(int(s0) * 7919 + int(t0))
    y = 290.0 + np.sin(2 * np.pi * f * t + s) + 0.3 * np.sin(2 * np.pi * 3.1 * f * t)
    return y + 0.01 * rng.standard_normal(y.shape)


def build_source(path: Path, n_series: int, chunk_series: int) -> float:
    """Write the input store with the threaded scheduler; returns seconds taken."""
    import dask
    import dask.array as da
    import xarray as xr

    t0 = time.perf_counter()
    arr = da.zeros((n_series, N_TIME), chunks=(chunk_series, N_TIME), dtype=np.float64)
    arr = arr.map_blocks(_block, dtype=np.float64)
    ds = xr.Dataset(
        {"temperature": (("sensor", "time"), arr, {"units": "K"})},
        coords={"sensor": np.arange(n_series), "time": ("time", np.arange(N_TIME) * 0.01)},
    )
    ds["time"].attrs["units"] = "s"
    with dask.config.set(scheduler="threads"):
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return time.perf_counter() - t0


def global_method(name: str = "auto") -> tuple[str, dict[str, Any]] | None:
    """The global method to run and its parameters (None: none; auto: the fastest known)."""
    from deltaflow import methods

    if name == "none":
        return None
    known = methods()
    if name == "auto":
        name = "spectral" if "spectral" in known else "spline"
    return name, {"spectral": {"cutoff": 0.2}, "spline": {"smoothing": 1e-3}}.get(name, {})


def workflow(
    source: Path, sink: Path, chunk_series: int, glob: tuple[str, dict[str, Any]] | None
) -> dict[str, Any]:
    """The benchmark workflow as a mapping (the same shape as a workflow YAML file)."""
    cfg = {
        "name": "scale-benchmark",
        "source": {
            "kind": "zarr",
            "path": str(source),
            "chunks": {"sensor": chunk_series, "time": -1},
        },
        "steps": [
            {
                "differentiate": {
                    "var": "temperature",
                    "dim": "time",
                    "method": "finite_difference",
                    "order": 1,
                    "accuracy": 4,
                    "out": "dT_local",
                }
            },
        ],
        "sink": {
            "path": str(sink),
            "mode": "overwrite",
            "chunks": {"sensor": chunk_series, "time": N_TIME},
            "variables": ["dT_local"],
        },
    }
    if glob is not None:
        gname, gparams = glob
        cfg["steps"].append(
            {
                "differentiate": {
                    "var": "temperature",
                    "dim": "time",
                    "method": gname,
                    "order": 1,
                    **gparams,
                    "out": "dT_global",
                }
            }
        )
        cfg["sink"]["variables"].append("dT_global")
    return cfg


# --------------------------------------------------------------------------- memory


class RSSSampler:
    """Peak resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.1, extra_pids: tuple[int, ...] = ()):
        self.interval = interval
        self.extra = extra_pids
        self.peaks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _procs(self) -> list[psutil.Process]:
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
        for pid in self.extra:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        return procs

    def _loop(self) -> None:
        while not self._stop.is_set():
            for p in self._procs():
                try:
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if rss > self.peaks.get(p.pid, 0):
                    self.peaks[p.pid] = rss
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- runs


def warm(cfg: dict[str, Any]) -> None:
    """Import deltaflow and compile/run every method of the workflow once, on tiny data.

    Run in each process before timing, so neither run pays for imports or JIT compilation.
    """
    import numpy as np

    from deltaflow import differentiate_array

    x = np.arange(256) * 0.01
    y = np.sin(x)[None, :].repeat(4, axis=0)
    for step in cfg["steps"]:
        d = dict(step["differentiate"])
        params = {k: v for k, v in d.items() if k not in ("var", "dim", "method", "order", "out")}
        differentiate_array(y, x, method=d["method"], order=d["order"], **params)


def _dask_settings() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / "configs" / "dask.yaml").read_text())


def run_distributed(
    cfg: dict[str, Any], workers: int, threads: int, memory_limit: str
) -> dict[str, Any]:
    """The workflow on a LocalCluster of worker processes with a memory limit each."""
    from dask.utils import parse_bytes

    from deltaflow.cluster import get_client
    from deltaflow.workflow import run_workflow

    profile = {
        "kind": "local",
        "processes": True,
        "n_workers": workers,
        "threads_per_worker": threads,
        "memory_limit": memory_limit,
        "dashboard_address": ":0",
        "dask": _dask_settings(),
    }
    with get_client(profile) as client:
        client.run(warm, cfg)
        worker_pids = client.run(os.getpid)  # address -> pid
        before = set(worker_pids)
        labels = {pid: f"worker {addr}" for addr, pid in worker_pids.items()}
        labels[os.getpid()] = "client + scheduler"
        with RSSSampler() as rss:
            t0 = time.perf_counter()
            summary = run_workflow(cfg, client=client)
            seconds = time.perf_counter() - t0
        after = set(client.scheduler_info()["workers"])

        def _spilled(dask_worker: Any) -> int:
            total = getattr(dask_worker.data, "spilled_total", None)
            return int(getattr(total, "disk", 0) or 0)

        spilled = client.run(_spilled)
    for pid in rss.peaks:
        labels.setdefault(pid, "nanny/other")
    limit = parse_bytes(memory_limit)
    worker_peaks = [rss.peaks.get(pid, 0) for pid in worker_pids.values()]
    return {
        "run": "distributed",
        "seconds": seconds,
        "summary": str(summary),
        "regions": summary.regions_written,
        "workers": workers,
        "threads_per_worker": threads,
        "memory_limit_bytes": limit,
        "workers_restarted": len(before - after),
        "spilled_bytes": int(sum(spilled.values())),
        "peak_rss": {f"{labels[pid]} (pid {pid})": peak for pid, peak in sorted(rss.peaks.items())},
        "max_worker_rss_over_limit": max(worker_peaks) / limit if worker_peaks else None,
    }


def run_threaded(cfg: dict[str, Any], n_threads: int) -> dict[str, Any]:
    """The same workflow on the threaded scheduler of this process."""
    import dask

    from deltaflow.workflow import run_workflow

    warm(cfg)
    with dask.config.set(num_workers=n_threads), RSSSampler() as rss:
        t0 = time.perf_counter()
        summary = run_workflow(cfg)
        seconds = time.perf_counter() - t0
    return {
        "run": "threaded",
        "seconds": seconds,
        "summary": str(summary),
        "regions": summary.regions_written,
        "threads": n_threads,
        "peak_rss": {f"pid {pid}": peak for pid, peak in sorted(rss.peaks.items())},
    }


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from dask.utils import format_bytes, parse_bytes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=4.0, help="input size (GiB)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--memory-limit", default="512MiB", help="per worker")
    ap.add_argument("--chunk-mib", type=float, default=16.0, help="input chunk size (MiB)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--skip-threaded", action="store_true")
    ap.add_argument(
        "--global-method", default="auto", help="auto (spectral, else spline), a name, or none"
    )
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    limit = parse_bytes(args.memory_limit)
    size = int(args.size_gib * 2**30)
    row = N_TIME * 8
    chunk_series = max(1, int(args.chunk_mib * 2**20) // row)
    n_series = max(chunk_series, size // row // chunk_series * chunk_series)
    size = n_series * row
    total_limit = limit * args.workers
    if size < 4 * total_limit:
        print(
            f"note: input {format_bytes(size)} is less than 4x the workers' total memory "
            f"limit ({format_bytes(total_limit)})",
            file=sys.stderr,
        )
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="deltaflow-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    source, sink = work / "source.zarr", work / "out.zarr"
    results: dict[str, Any] = {
        "input_bytes": size,
        "n_series": n_series,
        "n_time": N_TIME,
        "chunk_series": chunk_series,
        "global_method": (global_method(args.global_method) or ("none",))[0],
        "workers_total_memory_limit": total_limit,
        "size_over_total_limit": size / total_limit,
    }
    try:
        print(f"building {format_bytes(size)} input ({n_series} x {N_TIME}) in {work}")
        results["build_seconds"] = build_source(source, n_series, chunk_series)
        cfg = workflow(source, sink, chunk_series, global_method(args.global_method))
        runs = []
        print(
            f"distributed: {args.workers} workers x {args.threads_per_worker} threads, "
            f"{args.memory_limit} each"
        )
        runs.append(run_distributed(cfg, args.workers, args.threads_per_worker, args.memory_limit))
        results["disk_bytes"] = _du(work)
        if not args.skip_threaded:
            print(f"threaded: {args.workers * args.threads_per_worker} threads")
            runs.append(run_threaded(cfg, args.workers * args.threads_per_worker))
        for r in runs:
            r["throughput_mib_s"] = size / r["seconds"] / 2**20
        results["runs"] = runs
        if len(runs) == 2:
            results["throughput_ratio_distributed_over_threaded"] = (
                runs[0]["throughput_mib_s"] / runs[1]["throughput_mib_s"]
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def _report(r: dict[str, Any]) -> None:
    from dask.utils import format_bytes

    print(
        f"\ninput {format_bytes(r['input_bytes'])} = {r['size_over_total_limit']:.1f}x the "
        f"workers' total memory limit ({format_bytes(r['workers_total_memory_limit'])}); "
        f"global method: {r['global_method']}; disk used {format_bytes(r.get('disk_bytes', 0))}"
    )
    for run in r.get("runs", []):
        print(
            f"{run['run']:>11}: {run['seconds']:.1f} s, {run['throughput_mib_s']:.1f} MiB/s, "
            f"{run['regions']} regions"
        )
        for who, peak in run["peak_rss"].items():
            print(f"{'':>13}peak RSS {format_bytes(peak):>10}  {who}")
        if run["run"] == "distributed":
            print(
                f"{'':>13}workers restarted: {run['workers_restarted']}, spilled to disk: "
                f"{format_bytes(run['spilled_bytes'])}, max worker RSS / limit: "
                f"{run['max_worker_rss_over_limit']:.2f}"
            )
    if "throughput_ratio_distributed_over_threaded" in r:
        print(
            "throughput distributed / threaded: "
            f"{r['throughput_ratio_distributed_over_threaded']:.2f}"
        )


if __name__ == "__main__":
    main()
