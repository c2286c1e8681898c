"""I/O throughput of workflow runs, and the codec choice for noisy float64.

Two measurements, each the best of ``--repeats`` runs in this process:

1. codec: write the same in-memory noisy float64 array (``--mib`` MiB) to a Zarr v3 store
   uncompressed and with zstd (level 3, the sink's zstd default); report write GB/s and the
   compression ratio. deltaflow's default sink codec is chosen from this.
2. end to end: a workflow that reads a Zarr store, differentiates every series along time
   and writes the derivative (the same number of bytes) with the same codec, against a
   plain ``xr.open_zarr(a).to_zarr(b)`` copy of the same bytes with that codec: the copy
   of the run's own output store (same bytes written; with zstd the derivative's bits
   compress slower than the input's, so copying the input would flatter the baseline),
   and, for reference, the copy of the input store. The ratio copy_time / run_time is the
   run's throughput relative to bare I/O (target >= 0.8).

    python benchmarks/io_throughput.py --mib 512 --repeats 3 [--method savgol --window 21]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from deltaflow.workflow.runner import run_workflow

CODECS = {"none": None, "zstd": (ZstdCodec(level=3),)}


def noisy(n_series: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """A smooth signal plus noise at full float64 precision (what sensors produce)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) * 0.01
    f = rng.uniform(0.05, 0.5, (n_series, 1))
    return 290 + np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal((n_series, n_samples))


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def codec_write(data: np.ndarray, chunks: tuple[int, int], root: Path, repeats: int) -> dict:
    out = {}
    for name, comp in CODECS.items():
        path = root / f"codec-{name}.zarr"

        def write(path=path, comp=comp):
            shutil.rmtree(path, ignore_errors=True)
            arr = zarr.create_array(
                str(path),
                shape=data.shape,
                chunks=chunks,
                dtype="f8",
                compressors=comp,
                zarr_format=3,
            )
            arr[...] = data

        t = best(write, repeats)
        stored = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        out[name] = {
            "write_GBps": data.nbytes / t / 1e9,
            "ratio": data.nbytes / stored,
            "seconds": t,
        }
    return out


def end_to_end(
    data: np.ndarray,
    chunks: tuple[int, int],
    root: Path,
    codec: str,
    repeats: int,
    method: str,
    params: dict,
) -> dict:
    src = root / f"src-{codec}.zarr"
    ds = xr.Dataset(
        {"u": (("sensor", "time"), data)},
        coords={"sensor": np.arange(data.shape[0]), "time": np.arange(data.shape[1]) * 0.01},
    ).chunk({"sensor": chunks[0], "time": chunks[1]})
    enc = {"u": {"compressors": CODECS[codec], "chunks": chunks}}
    ds.to_zarr(src, mode="w", zarr_format=3, consolidated=True, encoding=enc)
    dst = root / f"copy-{codec}.zarr"

    def copy(path=src, var="u"):
        shutil.rmtree(dst, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = xr.open_zarr(path)[[var]]
            x[var].encoding = {}
            e = {var: {"compressors": CODECS[codec], "chunks": chunks}}
            x.to_zarr(dst, mode="w", zarr_format=3, consolidated=True, encoding=e)

    sink = root / f"run-{codec}.zarr"
    wf = {
        "name": "io-bench",
        "source": {"kind": "zarr", "path": str(src)},
        "steps": [
            {
                "differentiate": {
                    "var": "u",
                    "dim": "time",
                    "method": method,
                    "order": 1,
                    "out": "du",
                    **params,
                }
            }
        ],
        "sink": {"path": str(sink), "mode": "overwrite", "variables": ["du"], "codec": codec},
    }

    def run():
        run_workflow(wf, environ={})

    run()  # warm: numba compilation, imports; leaves the output store to copy

    def copy_out():
        copy(sink, "du")

    t_copy = best(copy_out, repeats)
    t_run = best(run, repeats)
    t_copy = min(t_copy, best(copy_out, 1))  # once more, against drift in machine load
    t_copy_in = best(copy, repeats)
    nbytes = data.nbytes
    return {
        "copy_GBps": nbytes / t_copy / 1e9,
        "run_GBps": nbytes / t_run / 1e9,
        "ratio_run_to_copy": t_copy / t_run,
        "copy_seconds": t_copy,
        "run_seconds": t_run,
        "input_copy_seconds": t_copy_in,
        "ratio_run_to_input_copy": t_copy_in / t_run,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="data size in MiB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--series-per-chunk", type=int, default=64)
    ap.add_argument("--samples", type=int, default=65536, help="samples per series")
    ap.add_argument("--method", default="finite_difference")
    ap.add_argument("--window", type=int, default=None, help="savgol window")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()

    n_series = max(1, args.mib * 2**20 // (8 * args.samples))
    data = noisy(n_series, args.samples)
    chunks = (min(args.series_per_chunk, n_series), args.samples)
    params = {"window": args.window} if args.window else {}
    root = Path(tempfile.mkdtemp(prefix="deltaflow-io-", dir=args.dir))
    try:
        report = {
            "bytes": int(data.nbytes),
            "shape": list(data.shape),
            "chunks": list(chunks),
            "chunk_MiB": chunks[0] * chunks[1] * 8 / 2**20,
            "method": args.method,
            "codec_write": codec_write(data, chunks, root, args.repeats),
            "end_to_end": {
                c: end_to_end(data, chunks, root, c, args.repeats, args.method, params)
                for c in CODECS
            },
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
