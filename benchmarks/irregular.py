"""Derivatives on irregular grids: spectral's least-squares path against the spline and auto.

Three grids over [0, 2 pi] (both ends sampled): the warped, jittered grid of peers.py (201
samples, spacing varying 2.3x end to end, +-30 % jitter), a jittered uniform grid (201, +-35
%) and uniformly random times (150 samples, gaps of several mean steps). Signals: sin over
the period (periodic: spectral's home ground), exp(x / 3) and sin(3 x / 4) (not periodic:
spectral takes its reflection, auto should keep the spline). Gaussian noise of the stated
fraction of each signal's spread, 20 series per case, one fixed seed per case. Prints the
relative RMSE (interior, 10 % trimmed at each end / whole range) of the first and second
derivative, and how often auto picked spectral. Asserts nothing.

    python benchmarks/irregular.py                  # every grid, signal and noise level
    python benchmarks/irregular.py --noise 0.01,0.05 --orders 1
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from peers import _irregular_grid as irregular_grid

import deltaflow as dfl
from deltaflow.kernels.auto import CANDIDATES

SERIES = 20
TRIM = 0.1


def grids() -> dict[str, np.ndarray]:
    """The three grids, each over [0, 2 pi] with both ends."""
    n = 201
    warped = irregular_grid(n, 0.0, 2 * np.pi)  # peers.py's irregular signal's grid
    jittered = np.linspace(0.0, 2 * np.pi, n)
    step = jittered[1] - jittered[0]
    jittered[1:-1] += np.random.default_rng(4).uniform(-0.35, 0.35, n - 2) * step
    rand = np.r_[0.0, np.sort(np.random.default_rng(2).uniform(0, 2 * np.pi, 148)), 2 * np.pi]
    return {"warped 201": warped, "jittered 201": jittered, "random 150": rand}


SIGNALS = {
    "sin (period)": (np.sin, np.cos, lambda t: -np.sin(t)),
    "exp(x/3)": (lambda t: np.exp(t / 3), lambda t: np.exp(t / 3) / 3, lambda t: np.exp(t / 3) / 9),
    "sin(3x/4)": (
        lambda t: np.sin(0.75 * t),
        lambda t: 0.75 * np.cos(0.75 * t),
        lambda t: -0.5625 * np.sin(0.75 * t),
    ),
}


def rmse(d: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Relative RMSE over the rows of d (rows, n): interior and whole range."""
    k = int(round(TRIM * truth.shape[0]))
    scale = np.sqrt(np.mean(truth**2))
    err = d - truth
    return (
        float(np.sqrt(np.mean(err[:, k:-k] ** 2)) / scale),
        float(np.sqrt(np.mean(err**2)) / scale),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", default="0.001,0.01,0.05,0.1", help="noise levels (of the spread)")
    ap.add_argument("--orders", default="1,2")
    args = ap.parse_args()
    levels = [float(v) for v in args.noise.split(",")]
    orders = [int(v) for v in args.orders.split(",")]
    warnings.simplefilter("ignore")
    print("relative RMSE interior / whole; 'spectral picked': auto's share of the series")
    print(f"{'grid':13s} {'signal':13s} noise order   spectral          spline            auto")
    for gname, x in grids().items():
        for sname, funcs in SIGNALS.items():
            y0 = funcs[0](x)
            for li, level in enumerate(levels):
                rng = np.random.default_rng(1000 * li + 17)
                y = y0[None] + level * np.ptp(y0) * rng.standard_normal((SERIES, x.size))
                for order in orders:
                    truth = funcs[order](x)
                    cells = []
                    for method in ("spectral", "spline", "auto"):
                        d, ch = dfl.differentiate_array(
                            y, x, method=method, order=order, return_choices=True
                        )
                        a, b = rmse(np.asarray(d), truth)
                        cells.append(f"{a:7.3g} / {b:7.3g}")
                        if method == "auto":
                            share = np.mean(
                                np.asarray(ch["method"]) == CANDIDATES.index("spectral")
                            )
                    print(
                        f"{gname:13s} {sname:13s} {level:5.3f} {order:5d}   "
                        + "  ".join(cells)
                        + f"   spectral picked {share:.0%}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
