"""A self-contained demo: differentiate thousands of noisy sensor series, score every method.

``python -m deltaflow.demo`` generates a batch of sensor-like series (a sine of random
amplitude, frequency and phase on a linear trend, plus Gaussian noise) whose derivatives are
known in closed form, differentiates it with every registered method on its automatic
defaults, and prints each method's error against the analytic truth and its throughput.
Methods that search per series (``auto``, ``tvr``) run on a subset of the series (say so
in the table) so that the demo stays within about 30 seconds on a laptop.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .kernels import differentiate_array, registered

# methods whose automatic choice searches per series: run on at most this many series
SLOW_METHODS = {"auto": 100, "tvr": 50, "lowess": 100}


@dataclass(frozen=True)
class Dataset:
    """Series y (rows, n) sampled at t (n,) seconds, with exact derivatives d1 and d2."""

    t: np.ndarray
    y: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    noise: float


def make_dataset(series: int, length: int, noise: float, seed: int = 0) -> Dataset:
    """Sine-plus-trend sensor series with noise of ``noise`` times each series' range (std)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 10.0, length)
    amp = rng.uniform(0.5, 2.0, (series, 1))
    omega = rng.uniform(0.5, 3.0, (series, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (series, 1))
    slope = rng.uniform(-0.5, 0.5, (series, 1))
    level = rng.uniform(-5.0, 5.0, (series, 1))
    arg = omega * t + phase
    clean = amp * np.sin(arg) + slope * t + level
    d1 = amp * omega * np.cos(arg) + slope
    d2 = -amp * omega**2 * np.sin(arg)
    sigma = noise * np.ptp(clean, axis=1, keepdims=True)
    y = clean + sigma * rng.standard_normal(clean.shape)
    return Dataset(t, y, d1, d2, noise)


def relative_rmse(d: np.ndarray, true: np.ndarray, trim: int) -> float:
    """Median over series of RMSE / RMS(true), ``trim`` samples dropped at each end."""
    sl = slice(trim, d.shape[-1] - trim)
    err = np.sqrt(np.mean((d[:, sl] - true[:, sl]) ** 2, axis=1))
    return float(np.median(err / np.sqrt(np.mean(true[:, sl] ** 2, axis=1))))


def run(
    series: int = 1000,
    length: int = 400,
    noise: float = 0.02,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    out=None,
) -> list[dict]:
    """Differentiate the demo dataset with each method; print and return one row per method."""
    out = out or sys.stdout
    data = make_dataset(series, length, noise, seed)
    names = list(methods) if methods else sorted(registered())
    trim = length // 20
    print(
        f"deltaflow demo: {series} sensor series x {length} samples, sine + trend + "
        f"{noise:.0%} noise; derivatives against the analytic truth",
        file=out,
    )
    print(
        f"{'method':18} {'series':>6} {'d/dt err':>9} {'d2/dt2 err':>10} "
        f"{'series/s':>10} {'MB/s':>8}",
        file=out,
    )
    rows = []
    for name in names:
        rows_used = min(series, SLOW_METHODS.get(name, series))
        y = data.y[:rows_used]
        start = time.perf_counter()
        d1 = differentiate_array(y, data.t, method=name, order=1)
        elapsed = time.perf_counter() - start
        e2 = float("nan")
        if 2 in registered()[name].orders:
            d2 = differentiate_array(y, data.t, method=name, order=2)
            e2 = relative_rmse(d2, data.d2[:rows_used], trim)
        row = {
            "method": name,
            "series": rows_used,
            "err1": relative_rmse(d1, data.d1[:rows_used], trim),
            "err2": e2,
            "series_per_s": rows_used / elapsed,
            "mb_per_s": y.nbytes / elapsed / 1e6,
        }
        rows.append(row)
        print(
            f"{name:18} {rows_used:6d} {row['err1']:9.2%} {row['err2']:10.2%} "
            f"{row['series_per_s']:10.0f} {row['mb_per_s']:8.1f}",
            file=out,
        )
    print(
        "errors: median over series of RMSE / RMS of the true derivative (5 % of samples "
        "trimmed at each end); throughput of the order-1 call, choices included "
        "(first calls include numba compilation when the cache is cold)",
        file=out,
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deltaflow.demo", description=__doc__)
    ap.add_argument("--series", type=int, default=1000, help="number of series")
    ap.add_argument("--length", type=int, default=400, help="samples per series")
    ap.add_argument("--noise", type=float, default=0.02, help="noise std / series range")
    ap.add_argument("--methods", default=None, help="comma-separated method names")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.series < 1 or args.length < 50:
        ap.error("--series must be >= 1 and --length >= 50")
    methods = args.methods.split(",") if args.methods else None
    run(args.series, args.length, args.noise, methods, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
