"""Long series: does ``auto`` keep its accuracy and a per-sample cost as series grow? (not a test)

The published peers benchmark stops at 401 samples; sensor series run to 65,536 and more.
For auto_ratio.py's eight signals (sin, exp, two frequencies, a Black–Scholes call, a
damped oscillator, irregularly sampled sin, a tanh step, a cubic) at 1 and 5 % noise,
orders 1 and 2, this prints ``auto``'s relative RMSE (interior: 10 % trimmed per end;
whole range) over that of the spline's own automatic choice (septic, corrected ends, the
spline ``auto`` uses) on the same series, which method ``auto`` picked, and geometric means
per length. ``--time`` adds seconds per series of ``auto``, ``spline`` and ``spectral`` on
a batch of sin + 1 % noise (best of ``--repeat`` runs after a warm-up).

    python benchmarks/long_series.py [--n 1000,4000,16384] [--series 4] [--time 64]
"""

from __future__ import annotations

import argparse
import time
import zlib

import numpy as np
from auto_ratio import SIGNALS, grid_for

import deltaflow as dfl
from deltaflow.kernels import auto as A

SPLINE = {"degree": 7, "ends": "corrected"}


def _rel(d: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    k = t.shape[0] // 10
    inner = np.sqrt(np.mean((d[:, k:-k] - t[k:-k]) ** 2)) / np.sqrt(np.mean(t[k:-k] ** 2))
    whole = np.sqrt(np.mean((d - t) ** 2)) / np.sqrt(np.mean(t**2))
    return float(inner), float(whole)


def accuracy(lengths: list[int], series: int) -> None:
    """auto over the spline's own choice, per case and as geometric means per length."""
    print(f"{'case':34} {'auto in / whole':>18} {'spline in / whole':>18} {'ratio':>12}  pick")
    for n in lengths:
        ratios = []
        for name, (_, _, fn) in SIGNALS.items():
            x = grid_for(name, n)
            f0, f1, f2 = fn(x)
            for level in (0.01, 0.05):
                seed = zlib.crc32(f"{name} {level} {n}".encode())
                noise = np.random.default_rng(seed).standard_normal((series, n))
                y = f0 + level * np.ptp(f0) * noise
                for order, truth in ((1, f1), (2, f2)):
                    d, ch = dfl.differentiate_array(
                        y, x, method="auto", order=order, return_choices=True
                    )
                    s = dfl.differentiate_array(y, x, method="spline", order=order, **SPLINE)
                    ea, es = _rel(d, truth), _rel(s, truth)
                    r = (ea[0] / es[0], ea[1] / es[1])
                    ratios.append(r)
                    picks = ",".join(sorted({A.CANDIDATES[int(c)] for c in ch["method"]}))
                    case = f"{name} n={n} {level:.0%} order {order}"
                    print(
                        f"{case:34} {ea[0]:8.4f} / {ea[1]:7.4f} {es[0]:8.4f} / {es[1]:7.4f} "
                        f"{r[0]:5.2f} / {r[1]:4.2f}  {picks}",
                        flush=True,
                    )
        rr = np.log(np.array(ratios))
        print(
            f"n={n}: auto over spline, geometric mean {np.exp(rr[:, 0].mean()):.2f} interior / "
            f"{np.exp(rr[:, 1].mean()):.2f} whole, largest {np.exp(rr[:, 0].max()):.2f} / "
            f"{np.exp(rr[:, 1].max()):.2f} ({len(ratios)} cases)\n",
            flush=True,
        )


def timing(lengths: list[int], rows: int, repeat: int) -> None:
    """Seconds per series (and per sample) of auto, spline and spectral on sin + 1 % noise."""
    for n in lengths:
        x = np.linspace(0.0, 100.0 * n / 65536, n)
        y = np.sin(x) + 0.01 * np.random.default_rng(0).standard_normal((rows, n))
        for method in ("auto", "spline", "spectral"):
            dfl.differentiate_array(y[:2], x, method=method)  # compile and load caches
            best = np.inf
            for _ in range(repeat):
                t0 = time.perf_counter()
                dfl.differentiate_array(y, x, method=method)
                best = min(best, time.perf_counter() - t0)
            print(
                f"n={n:6d} {method:9s} {best / rows * 1e3:9.2f} ms per series "
                f"({best / rows / n * 1e9:6.0f} ns per sample, {rows} series, best of {repeat})",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1000,4000,16384", help="comma-separated lengths")
    ap.add_argument("--series", type=int, default=4, help="noise draws per case")
    ap.add_argument("--time", type=int, default=0, help="also time on this many series")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-accuracy", action="store_true")
    args = ap.parse_args()
    lengths = [int(v) for v in args.n.split(",")]
    if not args.no_accuracy:
        accuracy(lengths, args.series)
    if args.time:
        timing(lengths, args.time, args.repeat)


if __name__ == "__main__":
    main()
