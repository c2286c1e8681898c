"""Engine throughput: deltaflow on a chunked Dask array vs the same kernel on one numpy array.

A (65536, 1024) float64 array (512 MiB), differentiated along its last dim ("time"),
chunked 8-64 MiB along both dims. For each method the reference is
``deltaflow.differentiate_array`` on the whole numpy array in one call (the kernel, its
checks, and its own row threads); a ratio is reference time / deltaflow-on-dask time
(>= 1: as fast as the single call). Threaded scheduler, best of ``--repeat``.

Two ways to finish the Dask graph are timed, because they differ by a full copy:
``sink`` stores every block into a no-op target (pure throughput, as when streaming to
Zarr); ``compute`` assembles the result in memory (one extra copy of the output).
For comparison: dask's own ``map_overlap`` + ``np.gradient`` and ``xarray``'s
``differentiate`` on the same chunks.

    python benchmarks/engine_throughput.py [--rows 65536] [--cols 1024] [--repeat 3]

Measured 2026-11-26 on the shared 2-core machine while other benchmarks ran (load 6-12,
so single numbers scatter by 2x; ratios come from interleaved runs): finite_difference
sink ratio 0.67-0.97 (0.81 in a quieter rerun at 64 MiB chunks: numpy 0.40 s, sink
0.49 s), savgol (window 21) 0.53-0.80, best at 64 MiB chunks; the compute ratio was
0.11-0.35, but dask's own ``(a + 1).compute()`` on the same blocks managed only 0.43
against ``y + 1`` there: assembling 512 MiB in memory is Dask's cost, not the kernels'.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import dask
import dask.array as da
import numpy as np
import xarray as xr

import deltaflow as dfl
from deltaflow.kernels import get_method, registered, run_kernel

MiB = 2**20
# fixed parameters (no automatic per-series choice) so the kernels, not a search, are timed
PARAMS = {"savgol": {"window": 21, "polyorder": 3}, "lowess": {"window": 21}}


class NullSink:
    """A store target that drops what it is given (``da.store`` calls __setitem__)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)

    def __setitem__(self, key, value):
        pass


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_interleaved(fns, repeat):
    """Best time of each function, the runs interleaved (ABCABC...) so that a change in
    machine load hits all of them alike."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for t, fn in zip(times, fns, strict=True):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def blocked(y, rows, cols):
    """A dask array whose blocks are separate contiguous arrays (as read from a store)."""
    blocks = [
        [
            da.from_array(np.ascontiguousarray(y[i : i + rows, j : j + cols]), chunks=-1)
            for j in range(0, y.shape[1], cols)
        ]
        for i in range(0, y.shape[0], rows)
    ]
    return da.block(blocks)


def chunk_plans(nrows, ncols):
    """(rows, cols) per block for ~8, 16, 32 and 64 MiB float64 blocks."""
    plans = []
    for mib, cols in ((8, 128), (16, 256), (32, 256), (64, 512)):
        cols = min(cols, ncols)
        rows = min(nrows, mib * MiB // (8 * cols))
        plans.append((mib, rows, cols))
    return plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", default="finite_difference,savgol")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 10.0, args.cols)
    y = np.sin(x)[None, :] * rng.uniform(0.5, 2.0, (args.rows, 1))
    y += 0.01 * rng.standard_normal(y.shape)
    h = x[1] - x[0]
    print(
        f"array {y.shape} float64 ({y.nbytes / MiB:.0f} MiB), cores {os.cpu_count()}, "
        f"dask {dask.__version__}, xarray {xr.__version__}, threaded scheduler, best of "
        f"{args.repeat}"
    )
    methods = [m for m in args.methods.split(",") if m in registered()]
    with dask.config.set(scheduler="threads"):
        for method in methods:
            spec = get_method(method)
            kw = PARAMS.get(method, {})
            p = spec.make_params(kw)
            small = xr.DataArray(y[:64], dims=("series", "time"), coords={"time": x})
            dfl.differentiate(small.chunk({"time": 128}), "time", method, **kw).compute()
            dfl.differentiate_array(y[:64], x, method=method, **kw)  # compile / warm up
            print(f"\n{method} {kw}: reference = differentiate_array on the numpy array")
            print(
                f"  {'chunks':>22} {'numpy s':>8} {'kernel s':>8} {'sink s':>8} {'ratio':>6} "
                f"{'compute s':>9} {'ratio':>6}"
            )
            for mib, rows, cols in chunk_plans(*y.shape):
                arr = xr.DataArray(
                    blocked(y, rows, cols), dims=("series", "time"), coords={"time": x}
                )
                d = dfl.differentiate(arr, "time", method, **kw).data
                sink = NullSink(d.shape, d.dtype)
                t_ref, t_kernel, t_sink, t_comp = best_interleaved(
                    [
                        lambda m=method, kw=kw: dfl.differentiate_array(y, x, method=m, **kw),
                        lambda s=spec, p=p: run_kernel(s, y, x, 1, p),
                        lambda d=d, s=sink: da.store(d, s, lock=False),
                        lambda d=d: d.compute(),
                    ],
                    args.repeat,
                )
                label = f"{mib} MiB ({rows}x{cols})"
                print(
                    f"  {label:>22} {t_ref:8.3f} {t_kernel:8.3f} {t_sink:8.3f} "
                    f"{t_ref / t_sink:6.2f} {t_comp:9.3f} {t_ref / t_comp:6.2f}",
                    flush=True,
                )
                del arr, d
        # peers, first-order centred differences, on the same chunkings
        print("\npeers (first-order centred differences) vs np.gradient on the numpy array:")
        print(
            f"  {'chunks':>22} {'numpy s':>8} {'map_overlap':>11} {'ratio':>6} "
            f"{'xarray':>8} {'ratio':>6}"
        )
        for mib, rows, cols in chunk_plans(*y.shape):
            arr = blocked(y, rows, cols)
            mo = da.map_overlap(
                lambda b: np.gradient(b, h, axis=1, edge_order=2),
                arr,
                depth={0: 0, 1: 1},
                boundary="none",
                dtype=y.dtype,
            )
            sink = NullSink(mo.shape, mo.dtype)
            xa = xr.DataArray(arr, dims=("series", "time"), coords={"time": x})
            xd = xa.differentiate("time").data
            t_np, t_mo, t_xr = best_interleaved(
                [
                    lambda: np.gradient(y, h, axis=1, edge_order=2),
                    lambda mo=mo, s=sink: da.store(mo, s, lock=False),
                    lambda xd=xd, s=sink: da.store(xd, s, lock=False),
                ],
                args.repeat,
            )
            label = f"{mib} MiB ({rows}x{cols})"
            print(
                f"  {label:>22} {t_np:8.3f} {t_mo:11.3f} {t_np / t_mo:6.2f} {t_xr:8.3f} "
                f"{t_np / t_xr:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
