"""Calculus and applications: accuracy on the closed forms PyDelt gets wrong, and the speed
of the batched local fits against a per-point loop doing the same math.

    python benchmarks/calculus.py            # prints a Markdown table (a minute on 2 cores)

PyDelt columns appear when ``pydelt`` (bench extra) imports; its multivariate layer is
run with its defaults (``MultivariateDerivatives``, spline interpolators).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deltaflow as dfl  # noqa: E402
from deltaflow.apps import sample_function  # noqa: E402
from deltaflow.scattered import _design, _weights  # noqa: E402


def best(fn, repeat=3):
    """Best wall time of several runs (seconds) and the last result."""
    t, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def pydelt_gradient(points, values, at):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydelt.multivariate import MultivariateDerivatives

            md = MultivariateDerivatives()
            md.fit(points, values)
            return np.asarray(md.gradient()(np.atleast_2d(at)))
    except Exception as err:  # a peer failing is a result, not a crash
        return f"error: {type(err).__name__}"


def pydelt_hessian(points, values, at):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydelt.multivariate import MultivariateDerivatives

            md = MultivariateDerivatives()
            md.fit(points, values)
            return np.asarray(md.hessian()(np.atleast_2d(at)))
    except Exception as err:
        return f"error: {type(err).__name__}"


def loop_fit(x, y, at, k, degree):
    """The same weighted local fit as fit_local, one query point at a time (reference)."""
    from scipy.spatial import cKDTree

    s = x.std(axis=0)
    tree = cKDTree(x / s)
    grads = []
    for q in at / s:
        dist, idx = tree.query(q, k=k)
        r = dist[-1]
        u = (x[idx] / s - q) / r
        w = np.sqrt(_weights(dist[None, :], "tricube")[0])[:, None]
        coef = np.linalg.lstsq(_design(u, degree) * w, y[idx] * w[:, 0], rcond=None)[0]
        grads.append(coef[1 : 1 + x.shape[1]] / (r * s))
    return np.array(grads)


def main() -> None:
    rows = []
    axes = {"x": np.linspace(-2, 2, 81), "y": np.linspace(-1, 3, 81)}
    rosen = sample_function(lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, axes)
    g = dfl.gradient(rosen, ["x", "y"], accuracy=4).sel(x=0, y=0).values
    xx, yy = np.meshgrid(axes["x"], axes["y"], indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    pd_g = pydelt_gradient(pts, rosen.values.ravel(), [0.0, 0.0])
    rows.append(("Rosenbrock gradient at (0, 0)", "(-2, 0)", np.round(g, 6), pd_g))

    xy = sample_function(lambda x, y: x * y, axes)
    h = dfl.hessian(xy, ["x", "y"]).sel(x=0.5, y=0.5, component_i="x", component_j="y").item()
    pd_h = pydelt_hessian(pts, xy.values.ravel(), [0.5, 0.5])
    pd_h = pd_h if isinstance(pd_h, str) else np.round(np.ravel(pd_h)[1], 6)
    rows.append(("x*y mixed partial at (0.5, 0.5)", "1", round(h, 6), pd_h))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3))
    y = 2 * x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + 0.1 * rng.standard_normal(500)
    s = dfl.sensitivity(x, y, at=[[0.0, 0.0, 0.0]])["local"].values[0]
    rows.append(
        (
            "sensitivity at 0 (500 noisy samples)",
            "(2, 0.5, -1)",
            np.round(s, 3),
            pydelt_gradient(x, y, np.zeros(3)),
        )
    )
    cp = dfl.critical_points(rosen, ["x", "y"])
    rows.append(
        (
            "Rosenbrock critical points",
            "min (1, 1)",
            [
                (round(a, 6), round(b, 6), k)
                for a, b, k in zip(cp.x.values, cp.y.values, cp.kind.values, strict=True)
            ],
            "n/a",
        )
    )
    print("| case | truth | deltaflow | PyDelt |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(v).replace("\n", " ") for v in r) + " |")

    # speed: batched local fits vs the same fit point by point
    x = rng.uniform(-1, 1, (20_000, 3))
    y = np.sin(2 * x[:, 0]) * x[:, 1] + x[:, 2] ** 2
    at = x[:2000]
    for degree, k in ((1, 40), (2, 60)):
        t_batch, fit = best(
            lambda d=degree, n=k: dfl.fit_local(x, y, at=at, degree=d, neighbours=n)
        )
        t_loop, ref = best(lambda d=degree, n=k: loop_fit(x, y, at, n, d), repeat=1)
        err = np.abs(fit["gradient"].values - ref).max()
        print(
            f"\nfit_local degree {degree}, k={k}, 2000 query points in 3-D: batched "
            f"{t_batch * 1e3:.0f} ms, per-point loop {t_loop * 1e3:.0f} ms, ratio "
            f"{t_loop / t_batch:.1f}x (max gradient difference {err:.1e})"
        )


if __name__ == "__main__":
    main()
