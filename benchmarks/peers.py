"""Accuracy and speed of deltaflow against the differentiation libraries users would otherwise use.

One command writes ``benchmarks/results/peers.md``, ``peers.json`` and PNG figures::

    python benchmarks/peers.py            # full run (about 10-15 min on 2 cores)
    python benchmarks/peers.py --quick    # smoke test (seconds), written to a scratch folder

Signals have exact derivatives; Gaussian noise of 0 to 10 % of the signal's spread is added,
``--draws`` independent draws per noisy case (fixed seeds), RMSEs pooled over the draws.
Every peer method runs with its defaults and with its best parameters from a grid scored
against the truth (the "oracle": an upper bound on what a user could get by tuning).
deltaflow runs every registered method with its automatic parameters, and ``auto``;
it is never tuned against the truth. RMSE is relative to the RMS of the true derivative, over
the interior (10 % trimmed at each end) and over the whole range.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import deltaflow as dfl  # noqa: E402
from deltaflow.kernels.api import run_kernel  # noqa: E402

NOISE_LEVELS = (0.0, 0.001, 0.01, 0.05, 0.1)
QUICK_NOISE_LEVELS = (0.0, 0.01)
PEER_PACKAGES = ("numpy", "scipy", "xarray", "findiff", "PyDelt", "derivative", "PyNumDiff")
ORDERS = (1, 2)
TRIM = 0.10  # fraction of points dropped at each end for the interior RMSE
TARGET_RATIO = {1: 1.25, 2: 1.5}  # auto vs best oracle-tuned peer, at noise >= TARGET_NOISE
TARGET_NOISE = 0.01
TARGET_SPEEDUP = 100.0  # batch throughput vs PyDelt / PyNumDiff, same method family
BATCH_SERIES, BATCH_LENGTH = 10_000, 1_000
PEER_BUDGET_S, DF_BUDGET_S = 0.75, 4.0  # throughput time budget per method (s)
TPUT_REPEATS = 3  # timed runs of a batch (the best kept) while the budget lasts
# batch APIs are also timed in calls of this many series (the faster of the two is kept)
TPUT_CHUNK = 256
SKIPPED = "skipped: expensive peer, oracle grid run only at noise >= 1 %"
# independent noise draws per noisy case: RMSEs are pooled over them (root mean square), and
# an oracle is the grid point with the least pooled RMSE, so no result rests on one draw
DRAWS, QUICK_DRAWS = 5, 2


# ---------------------------------------------------------------------------------------------
# signals with exact derivatives
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """One test signal: sample coordinates and the exact function and derivatives there."""

    name: str
    x: np.ndarray
    derivs: tuple[Callable[[np.ndarray], np.ndarray], ...]
    irregular: bool = False

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def truth(self, order: int) -> np.ndarray:
        return self.derivs[order](self.x)


def _bs(s: np.ndarray, k=100.0, r=0.02, sigma=0.25, t=0.5) -> tuple[np.ndarray, ...]:
    sq = sigma * math.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * sigma**2) * t) / sq
    price = s * ndtr(d1) - k * math.exp(-r * t) * ndtr(d1 - sq)
    delta = ndtr(d1)
    gamma = np.exp(-0.5 * d1**2) / math.sqrt(2 * math.pi) / (s * sq)
    return price, delta, gamma


def _damped(a: float = 0.3, w: float = 2.0) -> tuple[Callable, Callable, Callable]:
    def f0(t):
        return np.exp(-a * t) * np.cos(w * t)

    def f1(t):
        return np.exp(-a * t) * (-a * np.cos(w * t) - w * np.sin(w * t))

    def f2(t):
        return np.exp(-a * t) * ((a * a - w * w) * np.cos(w * t) + 2 * a * w * np.sin(w * t))

    return f0, f1, f2


def _irregular_grid(n: int, a: float, b: float, seed: int = 7) -> np.ndarray:
    """A warped grid (spacing varies 2.3x end to end) with +-30 % jitter of the local step."""
    u = np.linspace(0.0, 1.0, n)
    x = a + (b - a) * (0.6 * u + 0.4 * u**2)
    h = np.gradient(x)
    rng = np.random.default_rng(seed)
    x[1:-1] += rng.uniform(-0.3, 0.3, n - 2) * h[1:-1]
    return x


def make_signals(quick: bool = False) -> list[Signal]:
    """The benchmark signals (a small set in quick mode)."""
    sin = (np.sin, np.cos, lambda x: -np.sin(x))
    exp = (np.exp, np.exp, np.exp)
    two = (
        lambda x: np.sin(x) + 0.3 * np.sin(7 * x),
        lambda x: np.cos(x) + 2.1 * np.cos(7 * x),
        lambda x: -np.sin(x) - 14.7 * np.sin(7 * x),
    )
    bs = (lambda s: _bs(s)[0], lambda s: _bs(s)[1], lambda s: _bs(s)[2])
    if quick:
        return [
            Signal("sin n=101", np.linspace(0, 2 * np.pi, 101), sin),
            Signal("irregular sin n=101", _irregular_grid(101, 0, 2 * np.pi), sin, True),
        ]
    return [
        Signal("sin n=101", np.linspace(0, 2 * np.pi, 101), sin),
        Signal("sin n=401", np.linspace(0, 2 * np.pi, 401), sin),
        Signal("exp n=101", np.linspace(0, 2, 101), exp),
        Signal("exp n=201", np.linspace(0, 2, 201), exp),
        Signal("two-frequency n=201", np.linspace(0, 2 * np.pi, 201), two),
        Signal("irregular sin n=201", _irregular_grid(201, 0, 2 * np.pi), sin, True),
        Signal("Black-Scholes call n=201", np.linspace(60.0, 140.0, 201), bs),
        Signal("damped oscillator n=201", np.linspace(0.0, 10.0, 201), _damped()),
    ]


def noise_seed(si: int, li: int, draw: int) -> int:
    """Seed of draw ``draw`` of noise level ``li`` on signal ``si`` (draw 0: the old seeds)."""
    return 1000 * si + li + 10 * draw


def draws_at(level: float, draws: int) -> int:
    """Noise draws of one case: noise-free data are the same every time."""
    return 1 if level == 0 else draws


def add_noise(y: np.ndarray, level: float, seed: int) -> np.ndarray:
    """y plus Gaussian noise of standard deviation ``level`` times y's spread (max - min)."""
    if level == 0:
        return y.copy()
    rng = np.random.default_rng(seed)
    return y + level * np.ptp(y) * rng.standard_normal(y.shape)


def noisy_batch(
    sig: Signal, si: int, levels: tuple[float, ...], draws: int
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Every draw of every noise level of signal ``si``: the (level index, draw) of each row
    and the rows (draws, n), in that order (the seeds of ``noise_seed``)."""
    which = [(li, d) for li, lv in enumerate(levels) for d in range(draws_at(lv, draws))]
    rows = [add_noise(sig.truth(0), levels[li], seed=noise_seed(si, li, d)) for li, d in which]
    return which, np.stack(rows)


# ---------------------------------------------------------------------------------------------
# peers: one adapter per method, called as fn(x, Y, nu, **params) -> (m, n); nu: derivative order
# ---------------------------------------------------------------------------------------------


@dataclass
class Peer:
    """A peer method: how to call it, its defaults and its oracle grid."""

    package: str
    name: str
    family: str
    call: Callable[..., np.ndarray]
    defaults: dict[str, Any]
    grid: Callable[[Signal, int], list[dict[str, Any]]]
    irregular: str = "native"  # "native" | "ignored (mean step)" | "ignored (first step)"
    orders: str = "native"  # "native" | "1 only, applied twice for order 2"
    batched: bool = False  # the package differentiates a 2-D batch in one call
    edge_note: str = ""
    default_note: str = ""
    oracle_low_noise: bool = True  # False: expensive; oracle grid only at noise >= TARGET_NOISE

    @property
    def label(self) -> str:
        return f"{self.package} {self.name}"


def _mean_step(x: np.ndarray) -> float:
    return float((x[-1] - x[0]) / (x.shape[0] - 1))


def _rows(fn: Callable[[np.ndarray], np.ndarray], Y: np.ndarray) -> np.ndarray:
    """Apply a one-series function to each row (the peer has no batch path)."""
    return np.stack([np.asarray(fn(y), dtype=np.float64).reshape(-1) for y in Y])


def _twice(first: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Order 2 from a first-derivative-only method: differentiate its own output again."""

    def call(x, Y, nu, **p):
        d = first(x, Y, **p)
        for _ in range(nu - 1):
            d = first(x, d, **p)
        return d

    return call


def _odd_windows(n: int, sizes: Iterable[int], min_w: int = 3) -> list[int]:
    return [w for w in sizes if min_w <= w < n // 2]


def _spline_s(sig: Signal, cs: Iterable[float]) -> list[float]:
    """Smoothing levels s = n (c * spread)^2 for scipy-style smoothing splines."""
    spread = float(np.ptp(sig.truth(0)))
    return [sig.n * (c * spread) ** 2 for c in cs]


def _grid(**axes: list[Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, vals, strict=True)) for vals in product(*(axes[k] for k in keys))]


def _numpy_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """numpy.gradient (twice for order 2)."""
    peers: list[Peer] = []

    def np_gradient(x, Y, nu, edge_order=1):
        d = Y
        for _ in range(nu):
            d = np.gradient(d, x, axis=-1, edge_order=edge_order)
        return d

    peers.append(
        Peer(
            "numpy",
            "gradient",
            "finite difference",
            np_gradient,
            {"edge_order": 1},
            lambda s, o: cut(_grid(edge_order=[1, 2])),
            orders="1 only, applied twice for order 2",
            batched=True,
        )
    )

    return peers


def _scipy_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """scipy.signal.savgol_filter."""
    peers: list[Peer] = []
    from scipy.signal import savgol_filter

    def scipy_savgol(x, Y, nu, window_length=5, polyorder=2):
        return savgol_filter(
            Y, window_length, polyorder, deriv=nu, delta=_mean_step(x), axis=-1, mode="interp"
        )

    peers.append(
        Peer(
            "scipy",
            "savgol_filter",
            "local polynomial",
            scipy_savgol,
            {"window_length": 5, "polyorder": 2},
            lambda s, o: cut(
                [
                    {"window_length": w, "polyorder": p}
                    for w in _odd_windows(s.n, (5, 7, 11, 15, 21, 31, 41, 61, 81, 121, 161))
                    for p in (2, 3, 4)
                    if p < w and p >= o
                ]
            ),
            irregular="ignored (mean step)",
            batched=True,
            default_note="no defaults; SciPy docs example window 5, polyorder 2",
        )
    )

    return peers


def _xarray_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """xarray.DataArray.differentiate (twice for order 2)."""
    peers: list[Peer] = []
    import xarray as xr

    def xr_diff(x, Y, nu, edge_order=1):
        da = xr.DataArray(Y, dims=("series", "x"), coords={"x": x})
        for _ in range(nu):
            da = da.differentiate("x", edge_order=edge_order)
        return da.values

    peers.append(
        Peer(
            "xarray",
            "DataArray.differentiate",
            "finite difference",
            xr_diff,
            {"edge_order": 1},
            lambda s, o: cut(_grid(edge_order=[1, 2])),
            orders="1 only, applied twice for order 2",
            batched=True,
        )
    )
    return peers


def _findiff_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """findiff.Diff, uniform or non-uniform grid."""
    peers: list[Peer] = []
    import findiff

    def fd_call(x, Y, nu, acc=2):
        grid = _mean_step(x) if _is_uniform(x) else x
        op = findiff.Diff(1, grid, acc=acc)
        if nu == 2:
            op = op**2
        return op(Y)

    peers.append(
        Peer(
            "findiff",
            "Diff",
            "finite difference",
            fd_call,
            {"acc": 2},
            lambda s, o: cut(_grid(acc=[2, 4, 6, 8])),
            batched=True,
        )
    )
    return peers


def _pydelt_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """PyDelt's interpolators and local methods."""
    peers: list[Peer] = []
    import pydelt
    from pydelt.interpolation import (
        FdaInterpolator,
        LowessInterpolator,
        SplineInterpolator,
    )

    def interp(cls):
        def call(x, Y, nu, **p):
            return _rows(lambda y: cls(**p).fit(x, y).differentiate(order=nu)(x), Y)

        return call

    peers.append(
        Peer(
            "PyDelt",
            "SplineInterpolator",
            "spline",
            interp(SplineInterpolator),
            {},
            lambda s, o: cut(
                _grid(
                    smoothing=_spline_s(s, (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1)),
                    k=[3, 5],
                )
            ),
        )
    )
    peers.append(
        Peer(
            "PyDelt",
            "FdaInterpolator",
            "spline",
            interp(FdaInterpolator),
            {},
            lambda s, o: cut(
                _grid(smoothing=_spline_s(s, (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1)))
            ),
        )
    )
    peers.append(
        Peer(
            "PyDelt",
            "LowessInterpolator",
            "local regression",
            interp(LowessInterpolator),
            {},
            lambda s, o: cut(_grid(frac=[0.02, 0.05, 0.1, 0.2, 0.35])),
            default_note="LoessInterpolator gives identical numbers in 0.8.0",
        )
    )

    def lla_first(x, Y, window_size=5):
        return _rows(lambda y: pydelt.lla(x, y, window_size=window_size)[0], Y)

    peers.append(
        Peer(
            "PyDelt",
            "lla",
            "local polynomial",
            _twice(lla_first),
            {},
            lambda s, o: cut(_grid(window_size=[w for w in (9, 31) if w < s.n // 3])),
            orders="1 only, applied twice for order 2",
            oracle_low_noise=False,
        )
    )

    def glla_call(x, Y, nu, embedding=3, n=2):
        def one(y):
            r = pydelt.glla(x, y, embedding=embedding, n=max(n, nu))
            d = np.asarray(r["doutput"])[:, nu]
            k = (x.shape[0] - d.shape[0]) // 2
            return np.pad(d, (k, x.shape[0] - d.shape[0] - k), mode="edge")

        return _rows(one, Y)

    peers.append(
        Peer(
            "PyDelt",
            "glla",
            "local polynomial",
            glla_call,
            {},
            lambda s, o: cut(
                _grid(embedding=[e for e in (3, 5, 9, 17, 33, 65) if e < s.n // 3], n=[2, 3])
            ),
            edge_note="drops (embedding-1)/2 points per end; filled with the nearest value",
        )
    )
    return peers


def _derivative_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """The derivative package's methods (first derivatives only)."""
    peers: list[Peer] = []
    import derivative as dv

    def dv_first(cls, **fixed):
        def first(x, Y, **p):
            return np.asarray(cls(**fixed, **p).d(Y, x, axis=1), dtype=np.float64)

        return first

    span = lambda s: float(s.x[-1] - s.x[0])  # noqa: E731

    peers.append(
        Peer(
            "derivative",
            "FiniteDifference",
            "finite difference",
            _twice(dv_first(dv.FiniteDifference)),
            {"k": 1},
            lambda s, o: cut(_grid(k=[1, 2, 3, 5, 8])),
            irregular="ignored (first step)",
            orders="1 only, applied twice for order 2",
            default_note="README example k=1",
        )
    )
    peers.append(
        Peer(
            "derivative",
            "SavitzkyGolay",
            "local polynomial",
            _twice(dv_first(dv.SavitzkyGolay)),
            {"left": 0.5, "right": 0.5, "order": 3},
            lambda s, o: cut(
                [
                    {"left": f * span(s), "right": f * span(s), "order": 3}
                    for f in (0.02, 0.05, 0.1)
                    if f * span(s) * s.n / span(s) >= 2
                ]
            ),
            orders="1 only, applied twice for order 2",
            default_note="README example left=right=0.5 (x units), order 3",
        )
    )

    def spectral_first(x, Y, cutoff=None):
        filt = None
        if cutoff is not None:
            nyq = 0.5 / _mean_step(x)

            def filt(f):
                return (np.abs(f) <= cutoff * nyq).astype(float)

        m = dv.Spectral() if filt is None else dv.Spectral(filter=filt)
        return np.asarray(m.d(Y, x, axis=1), dtype=np.float64)

    peers.append(
        Peer(
            "derivative",
            "Spectral",
            "spectral",
            _twice(spectral_first),
            {},
            lambda s, o: cut(_grid(cutoff=[None, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01])),
            irregular="ignored (first step)",
            orders="1 only, applied twice for order 2",
        )
    )
    peers.append(
        Peer(
            "derivative",
            "Spline",
            "spline",
            _twice(dv_first(dv.Spline)),
            {"s": 1e-2},
            lambda s, o: cut(_grid(s=_spline_s(s, (1e-4, 1e-3, 3e-3, 0.01, 0.03)))),
            orders="1 only, applied twice for order 2",
            default_note="README example s=1e-2",
        )
    )
    peers.append(
        Peer(
            "derivative",
            "TrendFiltered",
            "total variation",
            _twice(dv_first(dv.TrendFiltered, max_iter=2000)),
            {"order": 0, "alpha": 1e-2},
            lambda s, o: cut(_grid(order=[1], alpha=[1e-4, 1e-3, 1e-1])),
            irregular="ignored (first step)",
            orders="1 only, applied twice for order 2",
            default_note="README example order=0, alpha=1e-2",
            oracle_low_noise=False,
        )
    )
    peers.append(
        Peer(
            "derivative",
            "Kalman",
            "kalman",
            _twice(dv_first(dv.Kalman)),
            {"alpha": 1.0},
            lambda s, o: cut(_grid(alpha=[1e-2, 1.0, 1e2, 1e4])),
            orders="1 only, applied twice for order 2",
            oracle_low_noise=False,
        )
    )
    return peers


def _pynumdiff_peers(cut: Callable[[list], list], missing: dict[str, str]) -> list[Peer]:
    """PyNumDiff's families (first derivatives only)."""
    peers: list[Peer] = []
    import pynumdiff as pynd

    def pnd_first(fn, t_ok: bool = False):
        def first(x, Y, **p):
            dt = x if (t_ok and not _is_uniform(x)) else _mean_step(x)
            return np.asarray(fn(Y, dt, axis=1, **p)[1], dtype=np.float64)

        return first

    def pnd(name, family, fn, defaults, grid, t_ok=False, note="", low=True):
        peers.append(
            Peer(
                "PyNumDiff",
                name,
                family,
                _twice(pnd_first(fn, t_ok)),
                defaults,
                lambda s, o: cut(grid(s, o)),
                irregular="native" if t_ok else "ignored (mean step)",
                orders="1 only, applied twice for order 2",
                batched=True,
                default_note=note,
                oracle_low_noise=low,
            )
        )

    pnd(
        "finitediff",
        "finite difference",
        pynd.finitediff,
        {},
        lambda s, o: _grid(num_iterations=[1, 5, 10, 30, 50], order=[2, 4]),
    )
    pnd(
        "kerneldiff",
        "smoothed finite difference",
        pynd.kerneldiff,
        {},
        lambda s, o: _grid(
            kernel=["friedrichs", "gaussian"],
            window_size=_odd_windows(s.n, (5, 11, 21, 41, 81)),
        ),
    )
    pnd(
        "butterdiff",
        "smoothed finite difference",
        pynd.butterdiff,
        {},
        lambda s, o: _grid(filter_order=[2, 4], cutoff_freq=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
    )
    pnd(
        "savgoldiff",
        "local polynomial",
        pynd.savgoldiff,
        {"degree": 3, "window_size": 31, "smoothing_win": 31},
        lambda s, o: [
            {"degree": d, "window_size": w, "smoothing_win": sw}
            for d in (2, 3, 5)
            for w in _odd_windows(s.n, (11, 21, 31, 51, 91, 131))
            for sw in (3, w)
            if d < w
        ],
        note="no defaults; degree 3, windows 31 (from its optimize() seed grid)",
    )
    pnd(
        "splinediff",
        "spline",
        pynd.splinediff,
        {},
        lambda s, o: _grid(degree=[3, 5], s=[0.5, 1.0, 1.5]),
        t_ok=True,
    )
    pnd(
        "spectraldiff",
        "spectral",
        pynd.spectraldiff,
        {"cutoff_freq": 0.1},
        lambda s, o: _grid(
            cutoff_freq=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5], extension=["odd", "even"]
        ),
        note="no default cutoff; 0.1 (from its optimize() seed grid)",
    )
    pnd(
        "rtsdiff",
        "kalman",
        pynd.rtsdiff,
        {"order": 2, "log_qr_ratio": 5.0},
        lambda s, o: [
            {"order": k, "log_qr_ratio": q}
            for k, q in ((1, -3.0), (1, 1.0), (2, -3.0), (2, 1.0), (3, -3.0), (3, 1.0), (3, 5.0))
        ],
        t_ok=True,
        note="no defaults; order 2, log_qr_ratio 5 (from its optimize() seed grid)",
        low=False,
    )
    try:
        import cvxpy  # noqa: F401

        pnd(
            "tvrdiff",
            "total variation",
            pynd.tvrdiff,
            {"order": 2, "gamma": 1.0},
            lambda s, o: (
                [{"order": 1, "gamma": 100.0}] + _grid(order=[2], gamma=[1.0, 10.0, 100.0])
            ),
            note="no defaults; order 2, gamma 1 (from its optimize() seed grid)",
            low=False,
        )
    except ImportError:
        missing["PyNumDiff tvrdiff"] = "needs cvxpy"
    return peers


def build_peers(
    quick: bool = False, packages: Iterable[str] = PEER_PACKAGES
) -> tuple[list[Peer], dict[str, str]]:
    """The importable peer methods of ``packages``; the second value maps unavailable ones to why.

    Packages not asked for are not imported (PyDelt pulls in torch, PyNumDiff cvxpy).
    """
    warnings.filterwarnings("ignore")
    want = list(packages)
    unknown = set(want) - set(PEER_PACKAGES)
    if unknown:
        raise ValueError(f"peers: unknown package(s) {sorted(unknown)}; known: {PEER_PACKAGES}")
    cut = (lambda g: g[:2]) if quick else (lambda g: g)
    makers = {
        "numpy": _numpy_peers,
        "scipy": _scipy_peers,
        "xarray": _xarray_peers,
        "findiff": _findiff_peers,
        "PyDelt": _pydelt_peers,
        "derivative": _derivative_peers,
        "PyNumDiff": _pynumdiff_peers,
    }
    peers: list[Peer] = []
    missing: dict[str, str] = {}
    for pkg in PEER_PACKAGES:
        if pkg not in want:
            continue
        try:
            peers += makers[pkg](cut, missing)
        except ImportError as err:
            missing[pkg] = str(err)
    return peers, missing


def _is_uniform(x: np.ndarray) -> bool:
    d = np.diff(x)
    return bool(np.all(np.abs(d - d.mean()) <= 1e-9 * abs(d.mean())))


# ---------------------------------------------------------------------------------------------
# deltaflow
# ---------------------------------------------------------------------------------------------

DELTAFLOW_FAMILY = {
    "finite_difference": "finite difference",
    "savgol": "local polynomial",
    "lowess": "local regression",
    "spline": "spline",
    "kalman": "kalman",
    "spectral": "spectral",
    "tvr": "total variation",
}


def deltaflow_methods() -> dict[str, dict[str, Any]]:
    """The registered methods, read at run time."""
    return dfl.methods()


def deltaflow_call(method: str) -> Callable[..., np.ndarray]:
    def call(x, Y, nu):
        return np.asarray(dfl.differentiate_array(Y, x, method=method, order=nu))

    return call


GIVEN = " (chosen parameters given)"  # suffix of the throughput rows that skip the choice


def deltaflow_given_call(
    method: str, x: np.ndarray, sample: np.ndarray, order: int = 1
) -> Callable[..., np.ndarray] | None:
    """``method`` applied with per-series parameters chosen beforehand (None: nothing to choose).

    The choice is made once, untimed, on ``sample`` (rows like the batch's); row i of a
    timed batch gets the choice of sample row ``i % len(sample)``. This is the work the
    peers' fixed defaults correspond to: differentiation with its parameters known.
    """
    spec = dfl.get_method(method)
    if spec.choose is None:
        return None
    p = spec.make_params({})
    _, chosen = dfl.differentiate_array(sample, x, method=method, order=order, return_choices=True)

    def call(x, Y, nu):
        tiled = {k: np.resize(np.asarray(v), Y.shape[:-1]) for k, v in chosen.items()}
        return np.asarray(run_kernel(spec, Y, x, nu, p, chosen=tiled).output.derivative)

    return call


# ---------------------------------------------------------------------------------------------
# running and scoring
# ---------------------------------------------------------------------------------------------


@dataclass
class Score:
    interior: float = math.nan
    whole: float = math.nan
    status: str = "ok"
    seconds: float = math.nan
    params: dict[str, Any] = field(default_factory=dict)


def score(sig: Signal, order: int, d: np.ndarray) -> tuple[float, float]:
    """Relative RMSE (interior, whole range) of a derivative estimate of shape (n,)."""
    true = sig.truth(order)
    scale = float(np.sqrt(np.mean(true**2)))
    k = int(round(TRIM * sig.n))
    err = d - true
    return (
        float(np.sqrt(np.mean(err[k : sig.n - k] ** 2)) / scale),
        float(np.sqrt(np.mean(err**2)) / scale),
    )


def run_one(
    call: Callable[..., np.ndarray], sig: Signal, y: np.ndarray, nu: int, p: dict[str, Any]
) -> Score:
    """One call on one series; exceptions and non-finite output are failures, not drops."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = np.asarray(call(sig.x, y[None, :], nu, **p), dtype=np.float64).reshape(-1)
    except Exception as err:  # a peer failing is a result, recorded with its reason
        msg = f"{type(err).__name__}: {err}".splitlines()[0][:90]
        return Score(status=f"error ({msg})", seconds=time.perf_counter() - t0, params=p)
    secs = time.perf_counter() - t0
    if d.shape[0] != sig.n:
        return Score(status=f"wrong length {d.shape[0]}", seconds=secs, params=p)
    bad = int(np.count_nonzero(~np.isfinite(d)))
    if bad:
        return Score(status=f"NaN/inf at {bad} points", seconds=secs, params=p)
    i, w = score(sig, nu, d)
    return Score(i, w, "ok", secs, p)


def run_batch(call: Callable[..., np.ndarray], sig: Signal, Y: np.ndarray, nu: int) -> list[Score]:
    """One call on a batch (rows: noise levels); a failure is recorded for every row."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            D = np.asarray(call(sig.x, Y, nu), dtype=np.float64)
    except Exception as err:
        msg = f"{type(err).__name__}: {err}".splitlines()[0][:90]
        return [Score(status=f"error ({msg})")] * Y.shape[0]
    secs = (time.perf_counter() - t0) / Y.shape[0]
    out = []
    for d in D:
        bad = int(np.count_nonzero(~np.isfinite(d)))
        if bad:
            out.append(Score(status=f"NaN/inf at {bad} points", seconds=secs))
        else:
            i, w = score(sig, nu, d)
            out.append(Score(i, w, "ok", secs))
    return out


def pool(scores: list[Score]) -> Score:
    """One case's score over its noise draws: RMSEs pooled (root mean square), time averaged.

    A failure on any draw fails the case (with the first failure's reason and which draw).
    """
    first = scores[0]
    for d, s in enumerate(scores):
        if s.status != "ok":
            why = s.status if len(scores) == 1 else f"{s.status} (draw {d + 1} of {len(scores)})"
            return Score(status=why, seconds=s.seconds, params=first.params)
    return Score(
        float(np.sqrt(np.mean([s.interior**2 for s in scores]))),
        float(np.sqrt(np.mean([s.whole**2 for s in scores]))),
        "ok",
        float(np.mean([s.seconds for s in scores])),
        first.params,
    )


def _best(scores: list[Score], key: str) -> Score | None:
    ok = [s for s in scores if s.status == "ok" and math.isfinite(getattr(s, key))]
    return min(ok, key=lambda s: getattr(s, key)) if ok else None


def accuracy(
    signals: list[Signal],
    peers: list[Peer],
    df_methods: list[str],
    log: Callable[[str], None],
    levels: tuple[float, ...] = NOISE_LEVELS,
    jobs: int = 1,
    draws: int = DRAWS,
) -> list[dict[str, Any]]:
    """Every (signal, noise, order): peers' defaults and oracles, deltaflow's methods.

    With ``jobs > 1`` signals run in forked worker processes (timings per call are then
    measured under that concurrency; the throughput section always runs alone).
    """
    global _WORK
    _WORK = (signals, peers, df_methods, levels, draws)
    # compile / load every deltaflow kernel once here, so forked workers inherit it
    warm = np.sin(np.linspace(0.0, 3.0, 64))[None, :]
    for m in df_methods:
        for order in dfl.get_method(m).orders[:2]:
            try:
                dfl.differentiate_array(warm, np.linspace(0.0, 3.0, 64), method=m, order=order)
            except Exception:  # a failure shows up, with its reason, in the real runs
                pass
    rows: list[dict[str, Any]] = []
    cost: dict[str, float] = {}
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            results = pool.imap(_signal_rows, range(len(signals)))
            for sig, (r, c, secs) in zip(signals, results, strict=True):
                rows += r
                for k, v in c.items():
                    cost[k] = cost.get(k, 0.0) + v
                log(f"  {sig.name}: {secs:.1f} s")
    else:
        for si, sig in enumerate(signals):
            r, c, secs = _signal_rows(si)
            rows += r
            for k, v in c.items():
                cost[k] = cost.get(k, 0.0) + v
            log(f"  {sig.name}: {secs:.1f} s")
    slow = sorted(cost.items(), key=lambda kv: -kv[1])[:8]
    log("  slowest (s): " + ", ".join(f"{k} {v:.1f}" for k, v in slow))
    return rows


_WORK: tuple = ()


def _signal_rows(si: int) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """All rows of signal ``si`` (from ``_WORK``), the time per peer, and the total time.

    Every score is pooled over the case's noise draws (``pool``); an oracle's grid point is
    chosen on the pooled score.
    """
    signals, peers, df_methods, levels, draws = _WORK
    sig = signals[si]
    rows: list[dict[str, Any]] = []
    cost: dict[str, float] = {}
    t_sig = time.perf_counter()
    for li, level in enumerate(levels):
        ys = [
            add_noise(sig.truth(0), level, seed=noise_seed(si, li, d))
            for d in range(draws_at(level, draws))
        ]
        for order in ORDERS:
            base = {"signal": sig.name, "noise": level, "order": order, "draws": len(ys)}
            for peer in peers:
                t_peer = time.perf_counter()
                d = pool([run_one(peer.call, sig, y, order, peer.defaults) for y in ys])
                rows.append({**base, **_row(peer.package, peer.name, "defaults", d, peer.family)})
                grid = peer.grid(sig, order)
                if not peer.oracle_low_noise and level < TARGET_NOISE:
                    grid = []
                scores = [pool([run_one(peer.call, sig, y, order, p) for y in ys]) for p in grid]
                for key in ("interior", "whole"):
                    b = _best(scores, key)
                    if b is None and not grid:
                        b = Score(status=SKIPPED)
                    elif b is None:
                        fails = sorted({s.status for s in scores})
                        b = Score(status="all grid points failed: " + "; ".join(fails)[:120])
                    rows.append(
                        {
                            **base,
                            **_row(peer.package, peer.name, f"oracle-{key}", b, peer.family),
                            "grid_size": len(grid),
                        }
                    )
                cost[peer.label] = cost.get(peer.label, 0.0) + time.perf_counter() - t_peer
    # deltaflow takes every draw of every noise level of a signal as one batch (per-series
    # choices make a batched result equal the one-by-one result; the kernel contract tests it)
    which, Y = noisy_batch(sig, si, levels, draws)
    for order in ORDERS:
        for m in df_methods:
            if order not in dfl.get_method(m).orders:
                continue
            t_m = time.perf_counter()
            per_row = run_batch(deltaflow_call(m), sig, Y, order)
            for li, level in enumerate(levels):
                d = pool([s for (lj, _), s in zip(which, per_row, strict=True) if lj == li])
                base = {"signal": sig.name, "noise": level, "order": order}
                base["draws"] = draws_at(level, draws)
                rows.append(
                    {**base, **_row("deltaflow", m, "automatic", d, DELTAFLOW_FAMILY.get(m, m))}
                )
            cost[f"deltaflow {m}"] = cost.get(f"deltaflow {m}", 0.0) + time.perf_counter() - t_m
    return rows, cost, time.perf_counter() - t_sig


def _row(package: str, method: str, setting: str, s: Score, family: str) -> dict[str, Any]:
    return {
        "package": package,
        "method": method,
        "family": family,
        "setting": setting,
        "rmse_interior": s.interior,
        "rmse_whole": s.whole,
        "status": s.status,
        "seconds": s.seconds,
        "params": {k: _jsonable(v) for k, v in s.params.items()},
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------------------------


def _rate_fields(rate: float, measured: int, n_series: int, length: int) -> dict[str, Any]:
    """A throughput record's numbers for ``rate`` series/s measured on ``measured`` series."""
    return {
        "series_per_s": rate,
        "seconds_per_series": 1.0 / rate,
        "mb_per_s": rate * length * 8 / 1e6,
        "measured_series": measured,
        "extrapolated": measured < n_series,
        "status": "ok",
    }


def _measure_rate(
    call: Callable[..., np.ndarray],
    x: np.ndarray,
    full: np.ndarray,
    n_series: int,
    budget: float,
    params: dict[str, Any],
) -> tuple[float, int]:
    """Series per second of ``call`` (order 1) and the number of series it was timed on.

    It runs on 1 and on 8 series; the marginal cost per series (the difference, so a fixed
    per-call cost is not multiplied) sets how many series fit in the time budget (at most
    ``n_series``; more when a timed run shows that more fit in a third of the budget), and
    that many are timed up to ``TPUT_REPEATS`` times while the budget lasts, the best run
    kept.
    """
    call(x, full[:2], 1, **params)  # warm-up (numba compile, caches)
    t0 = time.perf_counter()
    call(x, full[:1], 1, **params)
    t1 = max(time.perf_counter() - t0, 1e-6)
    k = min(8, n_series)
    if t1 * k < budget:
        t0 = time.perf_counter()
        call(x, full[:k], 1, **params)
        per = max((time.perf_counter() - t0 - t1) / max(k - 1, 1), t1 / 1000)
    else:
        per = t1
    m = int(min(n_series, max(1, (budget - t1) / per)))
    best = math.inf
    spent = 0.0
    reps = 0
    while reps < TPUT_REPEATS:
        t0 = time.perf_counter()
        call(x, full[:m], 1, **params)
        dt = time.perf_counter() - t0
        spent += dt
        if reps == 0:
            grown = int(min(n_series, m * budget / (3 * max(dt, 1e-9))))
            if grown > 1.2 * m:
                # the probes overestimated the cost (fixed per-call costs, a first
                # compile): time what a third of the budget holds instead
                m = grown
                continue
        best = min(best, dt)
        reps += 1
        if spent + dt > budget:
            break
    return m / best, m


def _in_calls(call: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``call`` on a batch as consecutive calls of at most ``TPUT_CHUNK`` series."""

    def chunked(x, Y, nu, **p):
        return np.concatenate(
            [call(x, Y[i : i + TPUT_CHUNK], nu, **p) for i in range(0, Y.shape[0], TPUT_CHUNK)]
        )

    return chunked


def throughput(
    peers: list[Peer],
    df_methods: list[str],
    n_series: int,
    length: int,
    budget_s: float,
    log: Callable[[str], None],
    deltaflow_budget_s: float | None = None,
) -> list[dict[str, Any]]:
    """Series per second on a batch of ``n_series`` x ``length`` (defaults, order 1).

    Each method is timed by :func:`_measure_rate` through the package's batch path where it
    has one; a batch path (deltaflow's, and the peers' that take a 2-D batch) is timed in
    one call and in calls of ``TPUT_CHUNK`` series, and the faster is kept (recorded as
    ``calls``), so that no package is held to a batch size it handles badly. A rate
    measured on fewer than ``n_series`` series is stated as extrapolated.
    """
    x = np.linspace(0.0, 2 * np.pi, length)
    rng = np.random.default_rng(3)
    full = np.sin(x)[None, :] + 0.01 * rng.standard_normal((n_series, length))
    out = []
    entries: list[tuple[str, str, str, Callable[..., np.ndarray], dict[str, Any], bool]] = [
        (p.package, p.name, p.family, p.call, p.defaults, p.batched) for p in peers
    ]
    entries += [
        ("deltaflow", m, DELTAFLOW_FAMILY.get(m, m), deltaflow_call(m), {}, True)
        for m in df_methods
    ]
    for m in df_methods:  # the same methods with their choices made beforehand
        given = deltaflow_given_call(m, x, full[:TPUT_CHUNK])
        if given is not None:
            entries.append(("deltaflow", m + GIVEN, DELTAFLOW_FAMILY.get(m, m), given, {}, True))
    # bounds no implementation can beat, best of 5 each: a copy of the batch (read it once,
    # write a result of its size) for every family, and a forward and an inverse real FFT
    # of every series at its own length, the least an FFT derivative does (deltaflow's
    # reflection doubles the length), for the spectral family
    batch = full[:n_series]
    bounds: list[tuple[str, Callable[[], Any], str | None]] = [
        ("copy (bandwidth bound)", lambda: np.copy(batch), None),
        (
            "rfft + irfft (FFT bound)",
            lambda: np.fft.irfft(np.fft.rfft(batch, axis=-1), n=length, axis=-1),
            "spectral",
        ),
    ]
    for method, work, family in bounds:
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - t0)
        rate = n_series / best
        rec = {"package": "numpy", "method": method, "family": "reference"}
        if family is not None:
            rec["bounds"] = family
        out.append({**rec, **_rate_fields(rate, n_series, n_series, length)})
        log(f"  throughput numpy {method}: {rate:.3g} series/s")
    for package, name, family, call, params, batched in entries:
        rec = {"package": package, "method": name, "family": family}
        budget = budget_s
        if package == "deltaflow" and deltaflow_budget_s is not None:
            budget = deltaflow_budget_s
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rate, m = _measure_rate(call, x, full, n_series, budget, params)
                calls = "one call"
                if batched and m > TPUT_CHUNK:
                    # a batch API can cost more per series on a large batch (PyNumDiff's
                    # savgoldiff: 0.21 ms per series in calls of 500, 1.7 ms in one call of
                    # 4,000): time it in calls of TPUT_CHUNK series too and keep the faster
                    rate_c, m_c = _measure_rate(_in_calls(call), x, full, n_series, budget, params)
                    if rate_c > rate:
                        rate, m, calls = rate_c, m_c, f"calls of {TPUT_CHUNK}"
            rec.update(_rate_fields(rate, m, n_series, length), calls=calls)
        except Exception as err:
            rec.update(status=f"error ({type(err).__name__}: {str(err)[:80]})")
        log(f"  throughput {package} {name}: {rec.get('series_per_s', math.nan):.3g} series/s")
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# targets and report
# ---------------------------------------------------------------------------------------------


def _index(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    idx: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        idx.setdefault((r["signal"], r["noise"], r["order"]), []).append(r)
    return idx


def _ok(r: dict[str, Any], key: str) -> bool:
    return r["status"] == "ok" and math.isfinite(r[key])


def best_peer(case: list[dict[str, Any]], setting: str, key: str) -> dict[str, Any] | None:
    """The best peer row of one case for one setting ('oracle-<key>' or 'defaults')."""
    cands = [
        r
        for r in case
        if r["package"] != "deltaflow"
        and r["setting"] == (f"oracle-{key}" if setting == "oracle" else setting)
        and _ok(r, f"rmse_{key}")
    ]
    return min(cands, key=lambda r: r[f"rmse_{key}"]) if cands else None


def auto_row(case: list[dict[str, Any]], auto: str) -> dict[str, Any] | None:
    for r in case:
        if r["package"] == "deltaflow" and r["method"] == auto:
            return r
    return None


def evaluate_targets(
    rows: list[dict[str, Any]], tput: list[dict[str, Any]], auto: str
) -> dict[str, Any]:
    """The three stated targets, each with its verdict and the cases behind it."""
    idx = _index(rows)
    ratios = []
    behind_defaults = []
    for (sig, level, order), case in idx.items():
        a = auto_row(case, auto)
        for key in ("interior", "whole"):
            b = best_peer(case, "oracle", key)
            ar = a[f"rmse_{key}"] if a is not None and _ok(a, f"rmse_{key}") else math.nan
            ratio = ar / b[f"rmse_{key}"] if b is not None and b[f"rmse_{key}"] > 0 else math.nan
            ratios.append(
                {
                    "signal": sig,
                    "noise": level,
                    "order": order,
                    "metric": key,
                    "auto": ar,
                    "best_oracle_peer": f"{b['package']} {b['method']}" if b else None,
                    "best_oracle": b[f"rmse_{key}"] if b else math.nan,
                    "ratio": ratio,
                    "auto_status": a["status"] if a else "not registered",
                }
            )
            d = best_peer(case, "defaults", key)
            if d is not None and not (ar < d[f"rmse_{key}"]):
                behind_defaults.append(
                    {
                        "signal": sig,
                        "noise": level,
                        "order": order,
                        "metric": key,
                        "auto": ar,
                        "peer": f"{d['package']} {d['method']}",
                        "peer_rmse": d[f"rmse_{key}"],
                    }
                )
    accuracy_cases = [r for r in ratios if r["noise"] >= TARGET_NOISE]
    failing = [
        r
        for r in accuracy_cases
        if not (math.isfinite(r["ratio"]) and r["ratio"] <= TARGET_RATIO[r["order"]])
    ]
    df = {
        t["method"]: t
        for t in tput
        if t["package"] == "deltaflow" and t["status"] == "ok" and not t["method"].endswith(GIVEN)
    }
    given = {
        t["method"][: -len(GIVEN)]: t
        for t in tput
        if t["package"] == "deltaflow" and t["status"] == "ok" and t["method"].endswith(GIVEN)
    }
    refs = [t for t in tput if t["family"] == "reference" and t["status"] == "ok"]

    def ceiling(family: str, peer_rate: float) -> float:
        """The largest speed-up any implementation could have over a peer of ``family``: the
        fastest reference that bounds the family (a copy bounds all) over the peer's rate."""
        rates = [r["series_per_s"] for r in refs if r.get("bounds", family) == family]
        return min(rates) / peer_rate if rates else math.nan

    speed = []
    for t in tput:
        if t["package"] not in ("PyDelt", "PyNumDiff") or t["status"] != "ok":
            continue
        for m, dt in df.items():
            if DELTAFLOW_FAMILY.get(m) == t["family"] or (
                t["family"] == "smoothed finite difference" and m == "finite_difference"
            ):
                g = given.get(m)
                speed.append(
                    {
                        "deltaflow": m,
                        "peer": f"{t['package']} {t['method']}",
                        "ratio": dt["series_per_s"] / t["series_per_s"],
                        # the same with deltaflow's parameters chosen beforehand (the peers'
                        # defaults are fixed parameters); a method that chooses nothing is
                        # its own given-parameters run
                        "ratio_given": (g or dt)["series_per_s"] / t["series_per_s"],
                        "ceiling": ceiling(t["family"], t["series_per_s"]),
                    }
                )
    return {
        "ratios": ratios,
        "accuracy_failing": failing,
        "accuracy_cases": len(accuracy_cases),
        "behind_defaults": behind_defaults,
        "speed": speed,
        "speed_failing": [s for s in speed if s["ratio"] < TARGET_SPEEDUP],
        "speed_given_failing": [
            s for s in speed if not s.get("ratio_given", math.nan) >= TARGET_SPEEDUP
        ],
    }


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.2e}" if (v < 1e-2 or v >= 1e3) else f"{v:.3g}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {cores} cores usable, {system}, Python {platform.python_version()}"


def versions() -> dict[str, str]:
    out = {}
    for pkg in (
        "deltaflow",
        "numpy",
        "scipy",
        "xarray",
        "findiff",
        "pydelt",
        "derivative",
        "pynumdiff",
        "cvxpy",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = dfl.__version__ if pkg == "deltaflow" else "not installed"
    return out


def headline_table(targets: dict[str, Any], key: str = "interior") -> list[str]:
    """Per signal and order: worst ratio of auto to the best oracle peer at noise >= 1 %."""
    lines = [
        "| signal | order | noise | deltaflow auto | best oracle-tuned peer | its RMSE | ratio "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in targets["ratios"]:
        if r["metric"] != key or r["noise"] < TARGET_NOISE:
            continue
        tgt = TARGET_RATIO[r["order"]]
        ok = math.isfinite(r["ratio"]) and r["ratio"] <= tgt
        lines.append(
            f"| {r['signal']} | {r['order']} | {r['noise']:.0%} | {_fmt(r['auto'])} | "
            f"{r['best_oracle_peer'] or '—'} | {_fmt(r['best_oracle'])} | {_fmt(r['ratio'])} | "
            f"{'met' if ok else 'MISSED'} (<= {tgt}) |"
        )
    return lines


def compact_headline(targets: dict[str, Any], auto: str) -> list[str]:
    """One row per signal and order: auto / best oracle-tuned peer at each noise >= 1 %."""
    levels = sorted({r["noise"] for r in targets["ratios"] if r["noise"] >= TARGET_NOISE})
    cell: dict[tuple, dict[str, Any]] = {}
    for r in targets["ratios"]:
        cell[(r["signal"], r["order"], r["noise"], r["metric"])] = r
    sigs = list(dict.fromkeys(r["signal"] for r in targets["ratios"]))
    head = " | ".join(f"{lv:.0%} interior / whole" for lv in levels)
    lines = [
        f"| signal | order | {head} | target |",
        "|---|---|" + "---|" * len(levels) + "---|",
    ]
    for order in ORDERS:
        for sig in sigs:
            vals = []
            ok = True
            for lv in levels:
                a = cell.get((sig, order, lv, "interior"))
                b = cell.get((sig, order, lv, "whole"))
                if a is None:
                    vals.append("—")
                    continue
                for r in (a, b):
                    ok &= r is not None and math.isfinite(r["ratio"])
                    ok &= r is not None and r["ratio"] <= TARGET_RATIO[order]
                vals.append(f"{_fmt(a['ratio'])} / {_fmt(b['ratio']) if b else '—'}")
            tgt = TARGET_RATIO[order]
            lines.append(
                f"| {sig} | {order} | " + " | ".join(vals) + f" | {'met' if ok else 'missed'} "
                f"(<= {tgt}) |"
            )
    return lines


def write_report(
    out_dir: Path,
    rows: list[dict[str, Any]],
    tput: list[dict[str, Any]],
    targets: dict[str, Any],
    peers: list[Peer],
    missing: dict[str, str],
    meta: dict[str, Any],
    auto: str,
) -> str:
    """Markdown with the stated targets, the headline, per-method summaries and failures."""
    L: list[str] = []
    L.append("# deltaflow against its peers")
    L.append("")
    L.append(f"Generated by `{meta['command']}` on {meta['date']} ({meta['seconds']:.0f} s).  ")
    L.append(f"Machine: {meta['machine']}.  ")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".")
    if meta.get("rendered"):
        L.append("")
        L.append(meta["rendered"])
    L.append("")
    L.append(
        "RMSE is relative to the RMS of the true derivative: *interior* drops 10 % of the points "
        "at each end, *whole* keeps every point. Noise is Gaussian with standard deviation the "
        "stated fraction of the signal's spread (max - min); "
        + (
            f"every noisy case is {meta['draws']} independent draws (fixed seeds) and its RMSE "
            "the root mean square over them, so that no result rests on one draw. "
            if meta.get("draws", 1) > 1
            else "one fixed seed per case. "
        )
        + "*Oracle* is a peer's best grid point scored against the truth (on the pooled "
        "RMSE: the best fixed parameters for that signal and noise level), chosen separately "
        "for each metric, an upper bound on what tuning could give; deltaflow is never tuned "
        "against the truth. deltaflow methods run with their automatic parameters, per series."
    )
    L.append("")
    L.append("## Targets")
    L.append("")
    nacc = targets["accuracy_cases"]
    for key in ("interior", "whole"):
        fails = [r for r in targets["accuracy_failing"] if r["metric"] == key]
        n_key = nacc // 2
        L.append(
            f"- `{auto}` within {TARGET_RATIO[1]}x (order 1) / {TARGET_RATIO[2]}x (order 2) of the "
            f"best oracle-tuned peer's {key} RMSE at noise >= {TARGET_NOISE:.0%}: "
            f"**{'met' if not fails else 'not met'}** "
            f"(met in {n_key - len(fails)} of {n_key} cases)."
        )
    for key in ("interior", "whole"):
        bd = [b for b in targets["behind_defaults"] if b["metric"] == key]
        ncase = len(targets["ratios"]) // 2
        L.append(
            f"- `{auto}` ahead of every peer's defaults everywhere ({key} RMSE): "
            f"**{'met' if not bd else 'not met'}** (met in {ncase - len(bd)} of {ncase} cases)."
        )
    sp = targets["speed"]
    sf = targets["speed_failing"]
    L.append(
        f"- batch throughput >= {TARGET_SPEEDUP:.0f}x PyDelt's and PyNumDiff's for the same "
        f"family: **{'met' if sp and not sf else 'not met'}** "
        f"(met in {len(sp) - len(sf)} of {len(sp)} pairs; "
        f"{sum(1 for x in sf if x.get('ceiling', math.inf) < TARGET_SPEEDUP)} of the misses "
        "are pairs where even a memory copy (for spectral: an FFT pair) is less than that much "
        "faster than the peer; "
        "deltaflow chooses its parameters per series in this time, the peers run fixed "
        "defaults)."
    )
    if "speed_given_failing" in targets:
        sg = targets["speed_given_failing"]
        L.append(
            f"- the same with deltaflow's per-series parameters chosen beforehand (like for like "
            f"with the peers' fixed defaults): **{'met' if sp and not sg else 'not met'}** "
            f"(met in {len(sp) - len(sg)} of {len(sp)} pairs)."
        )
    if auto not in dfl.methods():
        L.append(f"- note: no method named `{auto}` is registered; its targets count as missed.")
    L.append("")
    L.append(f"## Headline: `{auto}` RMSE over the best oracle-tuned peer's, noise >= 1 %")
    L.append("")
    L.append("Below 1: deltaflow is more accurate than every peer tuned against the truth.")
    L.append("")
    L += compact_headline(targets, auto)
    L.append("")
    L.append("## Detail: interior RMSE, with the best oracle-tuned peer of each case")
    L.append("")
    L += headline_table(targets, "interior")
    L.append("")
    L.append("![auto vs oracle](peers_ratio.png)")
    L.append("")
    L.append("## Same, whole-range RMSE (edges included)")
    L.append("")
    L += headline_table(targets, "whole")
    L.append("")
    L.append("## Where a peer's defaults beat `auto`")
    L.append("")
    if targets["behind_defaults"]:
        L.append("| signal | noise | order | metric | auto | peer (defaults) | peer RMSE |")
        L.append("|---|---|---|---|---|---|---|")
        for b in targets["behind_defaults"]:
            L.append(
                f"| {b['signal']} | {b['noise']:.1%} | {b['order']} | {b['metric']} | "
                f"{_fmt(b['auto'])} | {b['peer']} | {_fmt(b['peer_rmse'])} |"
            )
    else:
        L.append("None.")
    L.append("")
    L += _method_summary(rows)
    L += _throughput_table(tput, targets, meta["batch"])
    L += _peer_notes(peers, missing, rows)
    L.append("")
    L.append("## Every case")
    L.append("")
    L.append(
        "Best oracle-tuned peer, best peer with defaults, and every deltaflow method "
        "(interior / whole relative RMSE)."
    )
    L.append("")
    df_names = sorted({r["method"] for r in rows if r["package"] == "deltaflow"})
    L.append(
        "| signal | noise | order | best oracle peer | best default peer | "
        + " | ".join(f"deltaflow {m}" for m in df_names)
        + " |"
    )
    L.append("|---|---|---|---|---|" + "---|" * len(df_names))
    for (sig, level, order), case in _index(rows).items():
        bo = best_peer(case, "oracle", "interior")
        bw = best_peer(case, "oracle", "whole")
        bd = best_peer(case, "defaults", "interior")
        cells = []
        for m in df_names:
            r = next((r for r in case if r["package"] == "deltaflow" and r["method"] == m), None)
            if r is None:
                cells.append("n/a")
            elif r["status"] != "ok":
                cells.append(f"FAIL: {r['status'][:40]}")
            else:
                cells.append(f"{_fmt(r['rmse_interior'])} / {_fmt(r['rmse_whole'])}")
        L.append(
            f"| {sig} | {level:.1%} | {order} | "
            + (
                f"{bo['package']} {bo['method']} {_fmt(bo['rmse_interior'])} / "
                f"{_fmt(bw['rmse_whole']) if bw else '—'}"
                if bo
                else "—"
            )
            + " | "
            + (f"{bd['package']} {bd['method']} {_fmt(bd['rmse_interior'])}" if bd else "—")
            + " | "
            + " | ".join(cells)
            + " |"
        )
    L.append("")
    return "\n".join(L)


def _method_summary(rows: list[dict[str, Any]]) -> list[str]:
    """Median interior RMSE per method and setting, by order and noise; failures counted."""
    levels = sorted({r["noise"] for r in rows})
    L = ["## Every method: median interior RMSE over the signals", ""]
    L.append(
        "Failures are counted, never dropped: a failed case is an exception, a NaN/inf, or "
        "(oracle) every grid point failing."
    )
    L.append("")
    keys = sorted(
        {(r["package"], r["method"], r["setting"]) for r in rows if r["setting"] != "oracle-whole"}
    )
    head = " | ".join(f"o{o} {lv:.1%}" for o in ORDERS for lv in levels)
    L.append(f"| method | setting | {head} | failures |")
    L.append("|---|---|" + "---|" * (len(ORDERS) * len(levels)) + "---|")
    for pkg, m, st in keys:
        sel = [r for r in rows if (r["package"], r["method"], r["setting"]) == (pkg, m, st)]
        cells = []
        for o in ORDERS:
            for lv in levels:
                v = [
                    r["rmse_interior"]
                    for r in sel
                    if r["order"] == o and r["noise"] == lv and _ok(r, "rmse_interior")
                ]
                cells.append(_fmt(float(np.median(v))) if v else "—")
        failed = [r for r in sel if r["status"] not in ("ok", SKIPPED)]
        nf = len(failed)
        reasons = sorted({r["status"][:60] for r in failed})
        fail = f"{nf}/{len(sel)}" + (f" ({'; '.join(reasons)[:140]})" if nf else "")
        label = "oracle" if st == "oracle-interior" else st
        L.append(f"| {pkg} {m} | {label} | " + " | ".join(cells) + f" | {fail} |")
    L.append("")
    return L


def _throughput_table(
    tput: list[dict[str, Any]], targets: dict[str, Any], batch: tuple[int, int]
) -> list[str]:
    L = [
        f"## Throughput: a batch of {batch[0]:,} series of length {batch[1]:,} "
        "(defaults, order 1, float64)",
        "",
        "Rates measured on fewer series than the batch are extrapolated linearly (stated). "
        "Batch paths (deltaflow's, and the peers' that take a 2-D batch) are timed in one call "
        f"and in calls of {TPUT_CHUNK} series, and the faster is kept (stated when it is the "
        "calls of a few series): a batch API can cost more per series on a large batch.",
        "",
        "| method | family | series/s | ms per series | MB/s | measured on | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in sorted(tput, key=lambda t: -t.get("series_per_s", 0.0)):
        if t["status"] != "ok":
            L.append(
                f"| {t['package']} {t['method']} | {t['family']} | — | — | — | — | {t['status']} |"
            )
            continue
        L.append(
            f"| {t['package']} {t['method']} | {t['family']} | {_fmt(t['series_per_s'])} | "
            f"{_fmt(1e3 * t['seconds_per_series'])} | {_fmt(t['mb_per_s'])} | "
            f"{t['measured_series']:,} series{' (extrapolated)' * t['extrapolated']}"
            f"{', ' + t['calls'] if t.get('calls', 'one call') != 'one call' else ''} | ok |"
        )
    L.append("")
    if targets["speed"]:
        L.append(
            "Speed-ups of deltaflow over PyDelt / PyNumDiff, same family "
            f"(target >= {TARGET_SPEEDUP:.0f}x):"
        )
        L.append("")
        L.append(
            "*Ceiling* is the speed-up a copy of the batch would have over the peer (numpy "
            "copy row above): no method that reads the series and writes a result can exceed "
            "it, so a target above the ceiling cannot be met by any implementation. For the "
            "spectral family it is the speed-up of a forward and an inverse FFT of each "
            "series (the rfft + irfft row), the least any FFT derivative does."
        )
        L.append("")
        L.append(
            "*Given* is deltaflow with the per-series parameters its automatic choice picked "
            "passed in (the choice made beforehand, untimed): the work that corresponds to a "
            "peer's fixed defaults."
        )
        L.append("")
        L.append(
            "| deltaflow | peer | speed-up (automatic) | speed-up (given) | ceiling | "
            "target (automatic / given) |"
        )
        L.append("|---|---|---|---|---|---|")
        for s in targets["speed"]:
            ceiling = s.get("ceiling", math.nan)
            verdicts = []
            for r in (s["ratio"], s.get("ratio_given", math.nan)):
                ok = r >= TARGET_SPEEDUP
                v = "met" if ok else "MISSED"
                if not ok and ceiling < TARGET_SPEEDUP:
                    v += " (above the ceiling)"
                verdicts.append(v)
            L.append(
                f"| {s['deltaflow']} | {s['peer']} | {_fmt(s['ratio'])}x | "
                f"{_fmt(s.get('ratio_given', math.nan))}x | {_fmt(ceiling)}x | "
                f"{' / '.join(verdicts)} |"
            )
        L.append("")
    return L


def _peer_notes(
    peers: list[Peer], missing: dict[str, str], rows: list[dict[str, Any]]
) -> list[str]:
    L = ["## Peers: what each one is given and what it ignores", ""]
    L.append("| peer | family | irregular x | order 2 | defaults used | notes |")
    L.append("|---|---|---|---|---|---|")
    for p in peers:
        irr = p.irregular if p.irregular == "native" else f"**{p.irregular}**"
        defaults = ", ".join(f"{k}={v}" for k, v in p.defaults.items()) or "package defaults"
        notes = "; ".join(n for n in (p.default_note, p.edge_note) if n)
        L.append(f"| {p.label} | {p.family} | {irr} | {p.orders} | {defaults} | {notes} |")
    for pkg, why in missing.items():
        L.append(f"| {pkg} | — | — | — | — | not run: {why} |")
    L.append("")
    L.append(
        "Peers marked *ignored* take a scalar step only: on the irregular signal they are given "
        "the mean (or first) step and their error there shows what that costs."
    )
    L.append("")
    return L


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


def figures(
    dpi: int, out_dir: Path, rows: list[dict[str, Any]], targets: dict[str, Any], tput, auto: str
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    levels = sorted({r["noise"] for r in rows})
    # 1. ratio heat map: auto / best oracle peer, signals x noise, one panel per order
    sigs = list(dict.fromkeys(r["signal"] for r in targets["ratios"]))
    fig, axes = plt.subplots(1, len(ORDERS), figsize=(5.2 * len(ORDERS), 0.45 * len(sigs) + 1.8))
    for ax, order in zip(np.atleast_1d(axes), ORDERS, strict=True):
        grid = np.full((len(sigs), len(levels)), np.nan)
        for r in targets["ratios"]:
            if r["order"] == order and r["metric"] == "interior":
                grid[sigs.index(r["signal"]), levels.index(r["noise"])] = r["ratio"]
        im = ax.imshow(np.log10(grid), cmap="RdYlGn_r", vmin=-1, vmax=1, aspect="auto")
        for i, j in np.ndindex(grid.shape):
            ax.text(j, i, _fmt(grid[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(levels)), [f"{lv:.1%}" for lv in levels])
        ax.set_yticks(range(len(sigs)), sigs if order == ORDERS[0] else [""] * len(sigs))
        ax.set_title(f"order {order}: {auto} / best oracle peer (interior RMSE)", fontsize=9)
        ax.set_xlabel("noise (fraction of spread)")
    fig.colorbar(im, ax=axes, label="log10 ratio (< 0: deltaflow better)")
    p = out_dir / "peers_ratio.png"
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    made.append(p.name)

    # 2. RMSE vs noise on one signal, order 1 and 2
    sig = next((s for s in sigs if s.startswith("sin n=4")), sigs[0])
    fig, axes = plt.subplots(1, len(ORDERS), figsize=(11, 4.2), sharey=False)
    for ax, order in zip(np.atleast_1d(axes), ORDERS, strict=True):
        sel = [r for r in rows if r["signal"] == sig and r["order"] == order]
        series: dict[str, list[float]] = {}
        for lv in levels:
            case = [r for r in sel if r["noise"] == lv]
            bo = best_peer(case, "oracle", "interior")
            bd = best_peer(case, "defaults", "interior")
            series.setdefault("best oracle-tuned peer", []).append(
                bo["rmse_interior"] if bo else np.nan
            )
            series.setdefault("best peer defaults", []).append(
                bd["rmse_interior"] if bd else np.nan
            )
            for r in case:
                if r["package"] == "deltaflow":
                    series.setdefault(f"deltaflow {r['method']}", []).append(
                        r["rmse_interior"] if _ok(r, "rmse_interior") else np.nan
                    )
        xs = [max(lv, 3e-4) for lv in levels]
        for name, vals in series.items():
            style = dict(lw=2.5, color="k") if name == f"deltaflow {auto}" else dict(lw=1)
            if name.startswith("best"):
                style = dict(lw=2, ls="--")
            if len(vals) == len(xs):
                ax.loglog(xs, vals, marker="o", ms=3, label=name, **style)
        ax.set_title(f"{sig}, order {order}", fontsize=10)
        ax.set_xlabel("noise (fraction of spread; 0 drawn at 3e-4)")
        ax.set_ylabel("relative RMSE (interior)")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper left")
    p = out_dir / "peers_noise.png"
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    made.append(p.name)

    # 3. throughput bars
    ok = sorted((t for t in tput if t["status"] == "ok"), key=lambda t: t["series_per_s"])
    if ok:
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(ok) + 1.2))
        colors = [
            "tab:blue"
            if t["family"] == "reference"
            else "tab:green"
            if t["package"] == "deltaflow"
            else "tab:gray"
            for t in ok
        ]
        ax.barh(
            [f"{t['package']} {t['method']}" for t in ok],
            [t["series_per_s"] for t in ok],
            color=colors,
        )
        ax.set_xscale("log")
        ax.set_xlabel(f"series per second (length {BATCH_LENGTH}, defaults, order 1)")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        p = out_dir / "peers_throughput.png"
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        made.append(p.name)
    return made


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def run(
    quick: bool,
    out_dir: Path,
    auto: str = "auto",
    log: Callable[[str], None] = print,
    packages: Iterable[str] = PEER_PACKAGES,
    methods: Iterable[str] | None = None,
    jobs: int = 1,
    draws: int | None = None,
) -> dict:
    """Run the suite, write peers.md / peers.json / figures into out_dir; return the summary."""
    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    signals = make_signals(quick)
    peers, missing = build_peers(quick, packages)
    known = deltaflow_methods()
    df_methods = sorted(known) if methods is None else list(methods)
    for m in df_methods:
        if m not in known:
            raise ValueError(f"--methods: unknown deltaflow method {m!r}; known: {sorted(known)}")
    log(f"peers: {len(peers)} methods; deltaflow methods: {', '.join(df_methods)}")
    levels = QUICK_NOISE_LEVELS if quick else NOISE_LEVELS
    draws = draws if draws is not None else (QUICK_DRAWS if quick else DRAWS)
    if draws < 1:
        raise ValueError(f"--draws: must be at least 1, got {draws}")
    rows = accuracy(signals, peers, df_methods, log, levels, jobs, draws)
    batch = (50, 200) if quick else (BATCH_SERIES, BATCH_LENGTH)
    tput = throughput(
        peers,
        df_methods,
        *batch,
        0.05 if quick else PEER_BUDGET_S,
        log,
        None if quick else DF_BUDGET_S,
    )
    targets = evaluate_targets(rows, tput, auto)
    argv = (
        " ".join(["python benchmarks/peers.py", *sys.argv[1:]])
        if __name__ == "__main__"
        else "peers.run()"
    )
    meta = {
        "command": argv,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "quick": quick,
        "deltaflow_methods": df_methods,
        "batch": batch,
        "packages": list(packages),
        "draws": draws,
    }
    meta["seconds"] = time.perf_counter() - t_start
    md = write_report(out_dir, rows, tput, targets, peers, missing, meta, auto)
    (out_dir / "peers.md").write_text(md)
    made = figures(50 if quick else 110, out_dir, rows, targets, tput, auto)
    payload = {"meta": meta, "accuracy": rows, "throughput": tput, "targets": targets}
    (out_dir / "peers.json").write_text(
        json.dumps(_clean(payload), indent=1, default=_json_default, allow_nan=False)
    )
    log(f"wrote {out_dir / 'peers.md'}, peers.json, {', '.join(made)} in {meta['seconds']:.0f} s")
    return payload


def remeasure_throughput(src: Path, out_dir: Path, auto: str = "auto") -> None:
    """Measure throughput again and re-render; the accuracy rows of ``src`` are kept."""
    payload = json.loads(src.read_text())
    meta = payload["meta"]
    rows = [_nan(r) for r in payload["accuracy"]]
    peers, missing = build_peers(False, meta.get("packages", PEER_PACKAGES))
    tput = throughput(
        peers, meta["deltaflow_methods"], *meta["batch"], PEER_BUDGET_S, print, DF_BUDGET_S
    )
    meta["batch"] = tuple(meta["batch"])
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta["rendered"] = (
        f"Throughput re-measured on {when}, same machine, by `python benchmarks/peers.py "
        f"--throughput-only` (accuracy rows unchanged)."
    )
    targets = evaluate_targets(rows, tput, auto)
    md = write_report(out_dir, rows, tput, targets, peers, missing, meta, auto)
    (out_dir / "peers.md").write_text(md)
    figures(110, out_dir, rows, targets, tput, auto)
    payload.update(meta=meta, throughput=tput, targets=targets)
    (out_dir / "peers.json").write_text(
        json.dumps(_clean(payload), indent=1, default=_json_default, allow_nan=False)
    )


def rerender(src: Path, out_dir: Path, auto: str = "auto") -> None:
    """Write peers.md and the figures again from a saved peers.json, numbers unchanged."""
    payload = json.loads(src.read_text())
    meta = payload["meta"]
    meta["batch"] = tuple(meta["batch"])
    meta["rendered"] = (
        (meta.get("rendered", "") + " ").lstrip()
        + "Tables and figures re-rendered from its peers.json by `python benchmarks/peers.py "
        f"--from-json {src.name}` (same numbers, no new runs)."
    )
    rows = [_nan(r) for r in payload["accuracy"]]
    tput = payload["throughput"]
    targets = payload["targets"]
    targets["ratios"] = [_nan(r) for r in targets["ratios"]]
    peers, missing = build_peers(bool(meta.get("quick")), meta.get("packages", PEER_PACKAGES))
    md = write_report(out_dir, rows, tput, targets, peers, missing, meta, auto)
    (out_dir / "peers.md").write_text(md)
    figures(50 if meta.get("quick") else 110, out_dir, rows, targets, tput, auto)


def _nan(r: dict[str, Any]) -> dict[str, Any]:
    """JSON null back to NaN in the numeric fields."""
    numeric = ("rmse_interior", "rmse_whole", "seconds", "auto", "best_oracle", "ratio")
    return {k: (math.nan if v is None and k in numeric else v) for k, v in r.items()}


def _clean(v: Any) -> Any:
    """NaN/inf become null so the JSON is strict."""
    if isinstance(v, dict):
        return {k: _clean(w) for k, w in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(w) for w in v]
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        return None
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default benchmarks/results; with --quick a folder under the temp dir)",
    )
    ap.add_argument("--auto", default="auto", help="the deltaflow method held to the targets")
    ap.add_argument(
        "--throughput-only",
        action="store_true",
        help="re-measure throughput into an existing peers.json (accuracy kept) and re-render",
    )
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render peers.md and the figures from a saved peers.json (no new runs)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the accuracy part")
    ap.add_argument(
        "--draws",
        type=int,
        default=None,
        help=f"noise draws per noisy case (default {DRAWS}; {QUICK_DRAWS} with --quick)",
    )
    ap.add_argument(
        "--methods", default="", help="comma-separated deltaflow methods (default: all registered)"
    )
    ap.add_argument(
        "--peers",
        default=",".join(PEER_PACKAGES),
        help=f"comma-separated peer packages to run (default all: {','.join(PEER_PACKAGES)})",
    )
    args = ap.parse_args(argv)
    if args.throughput_only:
        out = args.out or HERE / "results"
        remeasure_throughput(out / "peers.json", out, args.auto)
        return 0
    if args.from_json is not None:
        rerender(args.from_json, args.out or args.from_json.parent, args.auto)
        return 0
    out = args.out or (
        HERE / "results"
        if not args.quick
        else Path(tempfile.gettempdir()) / "deltaflow-peers-quick"
    )
    payload = run(
        args.quick,
        out,
        args.auto,
        packages=[p for p in args.peers.split(",") if p],
        methods=[m for m in args.methods.split(",") if m] or None,
        jobs=args.jobs,
        draws=args.draws,
    )
    t = payload["targets"]
    print(
        f"targets: accuracy {len(t['accuracy_failing'])} of {t['accuracy_cases']} case-metrics "
        f"missed; behind a peer's defaults in {len(t['behind_defaults'])}; "
        f"speed {len(t['speed_failing'])} of {len(t['speed'])} pairs missed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
