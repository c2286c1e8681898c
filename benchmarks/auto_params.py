"""Time of the automatic-parameter paths (choose, then apply) of savgol, lowess and spline.

    python benchmarks/auto_params.py [--rows 2000] [--n 1000] [--repeats 5] [--rounds 2]
                                     [--methods savgol,lowess,spline] [--baseline REV]

The batch is the peers benchmark's throughput batch (``benchmarks/peers.py``): sin(x) on
[0, 2 pi] plus 1 % Gaussian noise, order 1, default parameters. Per method, ``choose`` and
``apply`` (with the chosen parameters) are timed separately, best of ``repeats``, in ms per
series, next to a copy of the batch (the bandwidth bound) measured in the same process.

``--baseline REV`` also runs the same measurement on the ``deltaflow`` package of git
revision REV (exported to a temporary folder, run in a subprocess), alternating with the
working tree ``rounds`` times per method (best of all), and prints both and their ratio:
the before/after numbers of a speed change come from one run on one machine. It also
checks that both chose the same parameters and reports the largest relative difference of
the derivatives.
Nothing is asserted; numbers are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def batch(rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The peers throughput batch: (x (n,), y (rows, n))."""
    x = np.linspace(0.0, 2 * np.pi, n)
    rng = np.random.default_rng(3)
    return x, np.sin(x)[None, :] + 0.01 * rng.standard_normal((rows, n))


def measure(method: str, rows: int, n: int, repeats: int, dump: str | None) -> dict[str, Any]:
    """ms per series of choose and apply (best of ``repeats``) and of a copy, in this process."""
    import deltaflow  # noqa: F401  (registers the methods)
    from deltaflow.kernels.registry import get_method

    x, y = batch(rows, n)
    spec = get_method(method)
    p = spec.make_params({})
    warm = spec.choose(y[:2], x, 1, p, np)  # compile / caches
    spec.apply(y[:2], x, 1, p, warm, np, False)
    t_copy = t_choose = t_apply = np.inf
    chosen: dict[str, Any] = {}
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copy(y)
        t_copy = min(t_copy, time.perf_counter() - t0)
        t0 = time.perf_counter()
        chosen = spec.choose(y, x, 1, p, np)
        t_choose = min(t_choose, time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = spec.apply(y, x, 1, p, chosen, np, False).derivative
        t_apply = min(t_apply, time.perf_counter() - t0)
    if dump:
        arrays = {f"chosen_{k}": np.asarray(v) for k, v in chosen.items()}
        np.savez(dump, derivative=np.asarray(out), **arrays)
    per = 1e3 / rows
    return {"copy": t_copy * per, "choose": t_choose * per, "apply": t_apply * per}


def export(rev: str, dest: Path) -> None:
    """The ``deltaflow`` package of git revision ``rev``, written under ``dest``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "deltaflow"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def run_in(path: Path, method: str, args: argparse.Namespace, dump: str) -> dict[str, Any]:
    """:func:`measure` in a subprocess that imports deltaflow from ``path``."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    cmd = [sys.executable, __file__, "--child", method, "--rows", str(args.rows)]
    cmd += ["--n", str(args.n), "--repeats", str(args.repeats), "--dump", dump]
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(old: str, new: str) -> str:
    a, b = np.load(old), np.load(new)
    same = all(
        np.array_equal(a[k], b[k]) if k.startswith("chosen_window") else True
        for k in a.files
        if k.startswith("chosen_")
    )
    close = [
        float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(a[k]), 1e-300)))
        for k in a.files
        if k.startswith("chosen_") and k in b.files
    ]
    d0, d1 = a["derivative"], b["derivative"]
    rel = float(np.max(np.abs(d1 - d0)) / np.max(np.abs(d0)))
    worst = max(close, default=0.0)
    return f"windows equal: {same}; chosen max rel diff {worst:.2g}; derivative {rel:.2g}"


def _best(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per key, the smaller time of two measurements (b alone when a is empty)."""
    return {k: min(v, a.get(k, v)) for k, v in b.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
    ap.add_argument("--methods", default="savgol,lowess,spline")
    ap.add_argument("--baseline", default=None, help="git revision to compare against")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rows, args.n, args.repeats, args.dump)))
        return
    print(
        f"== choose / apply, ms per series, {args.rows} series x {args.n} samples "
        f"(sin + 1 % noise, order 1), best of {args.repeats}, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        if args.baseline:
            export(args.baseline, base)
        for method in args.methods.split(","):
            # the two sides alternate, ``rounds`` times, best of each: a change in the
            # machine's load between two runs does not pass for a change of speed
            new: dict[str, Any] = {}
            old: dict[str, Any] = {}
            for _ in range(args.rounds):
                new = _best(new, run_in(ROOT, method, args, f"{tmp}/new.npz"))
                if args.baseline:
                    old = _best(old, run_in(base, method, args, f"{tmp}/old.npz"))
            line = (
                f"{method:7s} now:    choose {new['choose']:.4f}  apply {new['apply']:.4f}  "
                f"total {new['choose'] + new['apply']:.4f}  (copy {new['copy']:.5f})"
            )
            print(line, flush=True)
            if args.baseline:
                tot_old = old["choose"] + old["apply"]
                tot_new = new["choose"] + new["apply"]
                print(
                    f"{method:7s} {args.baseline[:7]}: choose {old['choose']:.4f}  "
                    f"apply {old['apply']:.4f}  total {tot_old:.4f}  (copy {old['copy']:.5f})"
                )
                print(
                    f"{method:7s} speed-up: choose {old['choose'] / new['choose']:.2f}x  "
                    f"apply {old['apply'] / new['apply']:.2f}x  total {tot_old / tot_new:.2f}x; "
                    + compare(f"{tmp}/old.npz", f"{tmp}/new.npz"),
                    flush=True,
                )


if __name__ == "__main__":
    main()
