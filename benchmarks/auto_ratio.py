"""How close ``auto`` comes to the best method tuned against the truth (not a test).

For noisy sin, exp, two-frequency, Black–Scholes call, damped-oscillator, irregularly
sampled sin, tanh-step and cubic curves at 1, 3, 5 and 10 % noise (standard deviation
relative to the range; each case its own seed), derivative orders 1 and 2: the RMSE of
``auto`` (which sees only the data) over the RMSE of the best (method, parameter) pair
chosen in hindsight with the truth, from a grid per registered method. Errors are RMS over
the interior (10 % trimmed at each end) and averaged over the series of a case; the "whole"
column is the same ratio over the whole range (its best in hindsight chosen separately). The
best in hindsight depends only on the data, so it is cached (``--cache``, a JSON file per
series count, length and hindsight grid under the system's temporary folder; ``--cache ''``
turns it off): a rerun after a change to ``auto`` takes seconds. ``--signals`` restricts the
run to some signals (comma-separated names).

    python benchmarks/auto_ratio.py [--series 10] [--n 201] [--time 2000x1000]
    python benchmarks/auto_ratio.py --peers [--method spectral]

``--time RxN`` also times ``auto`` (orders 1 and 2, choice and derivative) on R noisy sin
series of N samples, best of two runs. ``--peers`` instead reruns deltaflow (``auto``, or
``--method``) on the signals and noise draws of benchmarks/peers.py and divides its interior
and whole-range RMSE by the best oracle-tuned peer's stored in
benchmarks/results/peers.json (seconds, not the 15 minutes of a full peers run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import ndtr

import deltaflow as dfl
from deltaflow.kernels import registered


def _bs(s, k=100.0, r=0.02, sig=0.25, t=0.5):
    sq = sig * np.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * sig**2) * t) / sq
    price = s * ndtr(d1) - k * np.exp(-r * t) * ndtr(d1 - sq)
    gamma = np.exp(-0.5 * d1**2) / np.sqrt(2 * np.pi) / (s * sq)
    return price, ndtr(d1), gamma


SIGNALS = {
    "sin": (0.0, 2 * np.pi, lambda x: (np.sin(x), np.cos(x), -np.sin(x))),
    "exp": (0.0, 2.0, lambda x: (np.exp(x),) * 3),
    "two-freq": (
        0.0,
        4.0,
        lambda x: (
            np.sin(2 * x) + 0.3 * np.sin(9 * x),
            2 * np.cos(2 * x) + 2.7 * np.cos(9 * x),
            -4 * np.sin(2 * x) - 24.3 * np.sin(9 * x),
        ),
    ),
    "bs-call": (60.0, 140.0, _bs),
    "damped": (
        0.0,
        10.0,
        lambda t: (
            np.exp(-0.3 * t) * np.sin(2 * t),
            np.exp(-0.3 * t) * (2 * np.cos(2 * t) - 0.3 * np.sin(2 * t)),
            np.exp(-0.3 * t) * (-3.91 * np.sin(2 * t) - 1.2 * np.cos(2 * t)),
        ),
    ),
    # sin on a warped grid (spacing 2.3x end to end) with +-30 % jitter, as in peers.py
    "irr-sin": (0.0, 2 * np.pi, lambda x: (np.sin(x), np.cos(x), -np.sin(x))),
    # a step smoothed over a tenth of the range (roughness in one place) and a cubic trend
    # (a polynomial the quintic spline with corrected ends recovers at any smoothing): two
    # shapes that the others do not cover, against tuning auto to the others
    "tanh": (
        0.0,
        2.0,
        lambda x: (
            np.tanh(3 * (x - 1)),
            3 / np.cosh(3 * (x - 1)) ** 2,
            -18 * np.tanh(3 * (x - 1)) / np.cosh(3 * (x - 1)) ** 2,
        ),
    ),
    "cubic": (-1.5, 1.5, lambda x: (x**3 - x, 3 * x**2 - 1, 6 * x)),
}
IRREGULAR = {"irr-sin"}
NOISE = (0.01, 0.03, 0.05, 0.1)


def grid_for(name: str, n: int) -> np.ndarray:
    """The sample positions of signal ``name`` at n samples."""
    a, b, _ = SIGNALS[name]
    if name not in IRREGULAR:
        return np.linspace(a, b, n)
    u = np.linspace(0.0, 1.0, n)
    x = a + (b - a) * (0.6 * u + 0.4 * u**2)
    h = np.gradient(x)
    x[1:-1] += np.random.default_rng(7).uniform(-0.3, 0.3, n - 2) * h[1:-1]
    return x


def grids(sigma: float) -> dict[str, list[dict]]:
    """Parameter grids (hindsight tuning) for every method auto may pick."""
    g = {
        "finite_difference": [{"accuracy": a} for a in (2, 4, 6)],
        "spline": [
            {"smoothing": float(s), "degree": d}
            for d in (3, 5, 7)
            for s in 10.0 ** np.arange(-2.0, 11.01, 0.5)
        ],
        "spectral": [
            {"cutoff": float(c), "periodic": p}
            for c in np.geomspace(0.004, 1.0, 28)
            for p in (None, False, True)
        ],
        "tvr": [{"alpha": float(a) * sigma} for a in np.geomspace(0.1, 1e6, 15)],
        "savgol": [{"window": w, "polyorder": p} for p in (2, 3, 4) for w in range(p + 3, 160, 6)],
        "kalman": [{}],
        "lowess": [{}],
    }
    return {k: v for k, v in g.items() if k in registered()}


def rmse(d: np.ndarray, true: np.ndarray, whole: bool = False) -> float:
    t = 0 if whole else d.shape[-1] // 10
    sl = slice(t, d.shape[-1] - t)
    e = np.sqrt(np.mean((d - true)[..., sl] ** 2, axis=-1))
    return float(np.mean(e) / np.sqrt(np.mean(true[sl] ** 2)))


def _time_auto(rows: int, n: int) -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 2 * np.pi, n)
    y = np.sin(x * rng.uniform(0.5, 3, (rows, 1))) + 0.03 * rng.standard_normal((rows, n))
    dfl.differentiate_array(y[:4], x, method="auto")  # compile and warm
    for order in (1, 2):
        best = np.inf
        for _ in range(2):
            t0 = time.perf_counter()
            dfl.differentiate_array(y, x, method="auto", order=order)
            best = min(best, time.perf_counter() - t0)
        print(f"auto on {rows} x {n}, order {order}: {best:.1f} s")


def _peer_ratios(method: str) -> None:
    """deltaflow on peers.py's cases against the stored best oracle-tuned peer (noise >= 1 %)."""
    import json
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import peers

    stored = json.loads((here / "results" / "peers.json").read_text())
    rows = stored["accuracy"]
    draws = stored["meta"].get("draws", 1)  # noise draws per noisy case, RMSE pooled
    best: dict[tuple, float] = {}
    for r in rows:
        if r["package"] == "deltaflow" or not r["setting"].startswith("oracle-"):
            continue
        if r["status"] != "ok":
            continue
        key = (r["signal"], r["noise"], r["order"], r["setting"][7:])
        v = r[f"rmse_{r['setting'][7:]}"]
        best[key] = min(best.get(key, np.inf), v)
    print(
        f"deltaflow {method} over the best oracle-tuned peer (peers.json, {draws} draws per "
        "noisy case), interior / whole"
    )
    ratios: dict[tuple[int, str], list[float]] = {}
    t0 = time.perf_counter()
    for si, sig in enumerate(peers.make_signals()):
        levels = peers.NOISE_LEVELS
        which, Y = peers.noisy_batch(sig, si, levels, draws)
        for order in (1, 2):
            if sig.irregular and not dfl.get_method(method).irregular:
                continue
            d, ch = dfl.differentiate_array(
                Y, sig.x, method=method, order=order, return_choices=True
            )
            for li, lv in enumerate(levels):
                if lv < peers.TARGET_NOISE:
                    continue
                mine = [k for k, (lj, _) in enumerate(which) if lj == li]
                e = np.sqrt(np.mean([np.square(peers.score(sig, order, d[k])) for k in mine], 0))
                out = []
                for key, v in zip(("interior", "whole"), e, strict=True):
                    r = v / best[(sig.name, lv, order, key)]
                    ratios.setdefault((order, key), []).append(r)
                    out.append(f"{v:8.4f} {r:6.2f}")
                pick = ""
                if "method" in ch:
                    picks = [dfl.kernels.auto.CANDIDATES[int(ch["method"][k])] for k in mine]
                    pick = ",".join(dict.fromkeys(picks))
                print(f"{sig.name:26} {lv:5.2f} {order}  {'  '.join(out)}  {pick}")
    for (order, key), rs in sorted(ratios.items()):
        rs = np.array(rs)
        tgt = 1.25 if order == 1 else 1.5
        print(
            f"order {order} {key:8}: geometric mean {np.exp(np.mean(np.log(rs))):.2f}, "
            f"max {rs.max():.2f}, within {tgt}: {np.sum(rs <= tgt)}/{rs.size}"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


def _hindsight(y: np.ndarray, x: np.ndarray, sigma: float, order: int, true: np.ndarray):
    """(interior RMSE, its method and parameters, whole-range RMSE) of the best grid point."""
    best, best_at, w_best = np.inf, "", np.inf
    for m, grid in grids(sigma).items():
        if order not in dfl.get_method(m).orders:
            continue
        for p in grid:
            try:
                dm = dfl.differentiate_array(y, x, method=m, order=order, **p)
            except ValueError:
                continue
            e = rmse(dm, true)
            w_best = min(w_best, rmse(dm, true, whole=True))
            if e < best:
                best, best_at = e, f"{m} {p}"
    return best, best_at, w_best


def main() -> None:
    import json
    import tempfile
    import zlib
    from pathlib import Path

    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--n", type=int, default=201)
    ap.add_argument("--candidates", default=None, help="comma-separated auto candidates")
    ap.add_argument("--signals", default=None, help="comma-separated signals (default: all)")
    ap.add_argument("--time", default=None, help="also time auto on ROWSxN series")
    ap.add_argument("--cache", default=None, help="JSON cache of the best in hindsight")
    ap.add_argument("--peers", action="store_true", help="against peers.json's oracle peers")
    ap.add_argument("--method", default="auto", help="deltaflow method for --peers")
    args = ap.parse_args()
    if args.peers:
        _peer_ratios(args.method)
        return
    if args.time:
        _time_auto(*(int(v) for v in args.time.lower().split("x")))
    cache_path = args.cache
    if cache_path is None:
        # keyed by the hindsight grids too: a changed grid must not reuse stale bests
        key = zlib.crc32(repr(grids(1.0)).encode())
        cache_path = str(
            Path(tempfile.gettempdir())
            / f"deltaflow_auto_ratio_{args.series}x{args.n}_{key:08x}.json"
        )
    cache = {}
    if cache_path and Path(cache_path).exists():
        cache = json.loads(Path(cache_path).read_text())
    extra = {"candidates": tuple(args.candidates.split(","))} if args.candidates else {}
    names = args.signals.split(",") if args.signals else list(SIGNALS)
    print(f"auto vs best-in-hindsight: {args.series} series of {args.n} samples per case")
    print(
        f"{'signal':9} {'noise':>5} {'ord':>3} {'auto':>8} {'best':>8} {'ratio':>6} "
        f"{'whole':>6}  best method / auto's picks"
    )
    ratios: dict[int, list[float]] = {1: [], 2: []}
    whole_ratios: dict[int, list[float]] = {1: [], 2: []}
    t0 = time.perf_counter()
    for name in names:
        _, _, f = SIGNALS[name]
        x = grid_for(name, args.n)
        clean, *derivs = f(x)
        for level in NOISE:
            # each case its own seed: adding a signal or a level leaves the others' data alone
            rng = np.random.default_rng([7, zlib.crc32(name.encode()), int(level * 1000)])
            sigma = level * np.ptp(clean)
            y = clean + sigma * rng.standard_normal((args.series, args.n))
            for order in (1, 2):
                true = derivs[order - 1]
                d, ch = dfl.differentiate_array(
                    y, x, method="auto", order=order, return_choices=True, **extra
                )
                e_auto = rmse(d, true)
                w_auto = rmse(d, true, whole=True)
                key = f"{name} {level} {order}"
                if key not in cache:
                    cache[key] = _hindsight(y, x, sigma, order, true)
                    if cache_path:
                        Path(cache_path).write_text(json.dumps(cache))
                best, best_at, w_best = cache[key]
                codes, counts = np.unique(ch["method"], return_counts=True)
                picks = ", ".join(
                    f"{dfl.kernels.auto.CANDIDATES[c]}:{k}"
                    for c, k in zip(codes, counts, strict=True)
                )
                r = e_auto / best
                ratios[order].append(r)
                whole_ratios[order].append(w_auto / w_best)
                print(
                    f"{name:9} {level:5.2f} {order:3d} {e_auto:8.4f} {best:8.4f} {r:6.2f} "
                    f"{w_auto / w_best:6.2f}  {best_at[:40]} / {picks}"
                )
    for order, rs in ratios.items():
        rs, ws = np.array(rs), np.array(whole_ratios[order])
        tgt = 1.25 if order == 1 else 1.5
        print(
            f"order {order}: ratio geometric mean {np.exp(np.mean(np.log(rs))):.3f}, "
            f"max {rs.max():.2f}, within target ({tgt}): {np.sum(rs <= tgt)}/{rs.size}; "
            f"whole range {np.exp(np.mean(np.log(ws))):.3f}, max {ws.max():.2f}, "
            f"within {np.sum(ws <= tgt)}/{ws.size}"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
