"""Physics residuals of stated equations on data, with the safe evaluator's refusals."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import deltaflow as dfl
from deltaflow.apps.residual import ResidualError
from deltaflow.plots import plot_residual

T = np.linspace(0, 5, 201)
K = np.array([0.5, 1.0, 2.0])


@pytest.fixture
def decay():
    u = np.exp(-K[:, None] * T[None, :])
    return xr.Dataset({"u": (("series", "t"), u)}, coords={"t": T, "series": [0, 1, 2]})


def test_decay_residual_is_small_with_the_right_rate(decay):
    k = xr.DataArray(K, dims="series")
    r = dfl.residual(decay, "d(u, t) + k*u", constants={"k": k}, accuracy=4)
    assert r["rms"].dims == ("series",)
    assert (r["rms"] < 1e-6).all()
    wrong = dfl.residual(decay, "d(u, t) = -k*u", constants={"k": 1.0})
    assert wrong["rms"].sel(series=1) < 1e-3
    assert wrong["rms"].sel(series=0) > 0.1 and wrong["rms"].sel(series=2) > 0.1
    # the RMS is the root mean square of the residual over t
    np.testing.assert_allclose(wrong["rms"], np.sqrt((wrong["residual"] ** 2).mean("t")))


def test_noisy_data_with_a_smoothing_method(decay):
    rng = np.random.default_rng(0)
    noisy = decay.assign(u=decay.u + 1e-3 * rng.standard_normal(decay.u.shape))
    k = xr.DataArray(K, dims="series")
    raw = dfl.residual(noisy, "d(u, t) + k*u", constants={"k": k})
    methods = dfl.methods()
    smoother = next((m for m in ("savgol", "spline", "tvr") if m in methods), None)
    if smoother is None:
        pytest.skip("no smoothing method registered")
    smooth = dfl.residual(noisy, "d(u, t) + k*u", constants={"k": k}, method=smoother)
    assert (smooth["rms"] < raw["rms"]).all()


def test_second_order_pde_and_precomputed_terms():
    x = np.linspace(0, np.pi, 81)
    t = np.linspace(0, 1, 41)
    # heat equation u_t = D u_xx solved by exp(-D t) sin x
    diff = 0.3
    u = np.exp(-diff * t)[:, None] * np.sin(x)[None, :]
    ds = xr.Dataset({"u": (("t", "x"), u)}, coords={"t": t, "x": x})
    r = dfl.residual(ds, "d(u, t) - D * d2(u, x)", constants={"D": diff}, accuracy=4)
    assert set(r["residual"].dims) == {"t", "x"}
    assert r["rms"].ndim == 0 and float(r["rms"]) < 1e-5
    ds2 = ds.assign(du_dt=(("t", "x"), -diff * u))
    r2 = dfl.residual(ds2, "du_dt - D * d(u, x, 2)", constants={"D": diff}, over=["x"], accuracy=4)
    assert r2["rms"].dims == ("t",) and float(r2["rms"].max()) < 1e-5
    # nested and mixed: d(d(u, x), t) of exp(-D t) sin x = -D exp(-D t) cos x
    r3 = dfl.residual(
        ds, "d(d(u, x), t) + D * exp(-D*t) * cos(x)", constants={"D": diff}, accuracy=4
    )
    assert float(r3["rms"]) < 1e-5


def test_lazy_on_dask(decay):
    r = dfl.residual(decay.chunk({"t": 50}), "d(u, t) + u")
    assert r["residual"].chunks is not None
    eager = dfl.residual(decay, "d(u, t) + u")
    np.testing.assert_allclose(r["rms"].values, eager["rms"].values, rtol=1e-12)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("u.values", "Attribute is not allowed"),
        ("u[0]", "Subscript is not allowed"),
        ("(lambda: 1)()", "not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("d(u, q)", r"d\(\): 'q' is not a dim; dims are \['series', 't'\]"),
        ("d(u, t, k)", "order must be a positive integer literal"),
        ("d2(u, t, 2)", r"d2\(\) takes d2\(expr, dim\)"),
        ("exp(u, base=2)", "keyword arguments are not allowed"),
        ("v + 1", r"unknown name\(s\) v; known: .*series, t, u"),
        ("d(v, t)", r"unknown name\(s\) v"),
        ("'a' + u", "only numeric constants"),
        ("a = b = c", "more than one '='"),
        ("u +", "invalid expression"),
    ],
)
def test_refused_expressions(decay, expr, message):
    with pytest.raises(ResidualError, match=message):
        dfl.residual(decay, expr)


def test_residual_figure(decay, tmp_path):
    r = dfl.residual(decay, "d(u, t) = -k*u", constants={"k": 1.0})
    out = tmp_path / "residual.png"
    fig = plot_residual(r, output=out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert fig.axes[0].get_xlabel() == "t"
    assert len(fig.axes[1].patches) == 3  # one RMS bar per series
