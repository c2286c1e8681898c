"""integrate: accuracy of both rules, chunk exactness, error estimate, the round trip."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings

import deltaflow as dfl

from strategies import chunked_case


def _sin(n=201, irregular=False, seed=0):
    t = np.linspace(0.0, 3.0, n)
    if irregular:
        h = t[1] - t[0]
        t[1:-1] += np.random.default_rng(seed).uniform(-0.3, 0.3, n - 2) * h
    return xr.DataArray(np.cos(t), dims="t", coords={"t": t}, name="v")


@pytest.mark.parametrize("irregular", [False, True])
def test_rules_converge_at_their_order(irregular):
    errs = {"trapezoid": [], "simpson": []}
    ns = [41, 81, 161]
    for n in ns:
        da = _sin(n, irregular)
        truth = np.sin(da.t.values)
        for m in errs:
            errs[m].append(np.abs(dfl.integrate(da, "t", method=m).values - truth).max())
    for m, want in (("trapezoid", 2), ("simpson", 4)):
        slope = -np.polyfit(np.log(ns), np.log(errs[m]), 1)[0]
        assert slope > want - 0.3, (m, errs[m], slope)
    assert errs["simpson"][-1] < 1e-7


def test_simpson_exact_on_cubics_and_matches_closed_form_uniform():
    t = np.array([0.0, 0.3, 0.5, 1.1, 1.2, 2.0, 2.4])
    y = 1 - 2 * t + 3 * t**2 - 0.5 * t**3
    truth = t - t**2 + t**3 - 0.125 * t**4
    got = dfl.integrate(xr.DataArray(y, dims="t", coords={"t": t}), "t", method="simpson")
    np.testing.assert_allclose(got.values, truth, atol=1e-13)
    h = 0.1
    u = np.exp(np.arange(8) * h)
    inc = h / 24 * (-u[:-3] + 13 * u[1:-2] + 13 * u[2:-1] - u[3:])  # intervals 2..6
    F = dfl.integrate(
        xr.DataArray(u, dims="t", coords={"t": np.arange(8) * h}), "t", method="simpson"
    )
    np.testing.assert_allclose(np.diff(F.values)[1:-1], inc, rtol=1e-12)


def test_error_estimate_is_honest():
    """The estimate is within a factor of 2 of the trapezoid's true error."""
    da = _sin(101, irregular=True)
    F, err = dfl.integrate(da, "t", return_error=True)
    true_err = np.abs(F.values - np.sin(da.t.values))
    k = true_err > 1e-8
    ratio = err.values[k] / true_err[k]
    assert 0.5 < ratio.min() and ratio.max() < 2.0, (ratio.min(), ratio.max())
    assert err.name == "v_error" and err.attrs["deltaflow_dim"] == "t"
    Fs, errs = dfl.integrate(da, "t", method="simpson", return_error=True)
    assert np.abs(Fs.values - np.sin(da.t.values)).max() <= errs.values.max()


@pytest.mark.parametrize("method", ["trapezoid", "simpson"])
@settings(max_examples=15)
@given(case=chunked_case(min_n=5))
def test_chunked_equals_unchunked(method, case):
    dims = [f"d{i}" for i in range(case["y"].ndim)]
    dim = dims[case["axis"]]
    da = xr.DataArray(case["y"], dims=dims, coords={dim: case["x"]})
    eager, eager_err = dfl.integrate(da, dim, 1.5, method, return_error=True)
    lazy, lazy_err = dfl.integrate(
        da.chunk(dict(zip(dims, case["chunks"], strict=True))), dim, 1.5, method, return_error=True
    )
    assert lazy.chunks == case["chunks"]
    scale = np.abs(eager.values).max()
    np.testing.assert_allclose(lazy.values, eager.values, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(lazy_err.values, eager_err.values, atol=1e-12 * scale)
    first = np.take(eager.values, 0, axis=case["axis"])
    np.testing.assert_array_equal(first, 1.5)


@pytest.mark.parametrize("chunks", [None, {"t": 37, "s": 2}])
def test_round_trip_integrate_differentiate(chunks):
    t = np.linspace(0.0, 4.0, 401)
    rng = np.random.default_rng(1)
    u = xr.DataArray(
        np.sin(t)[None, :] * rng.uniform(1, 3, (3, 1)) + rng.uniform(-1, 1, (3, 1)),
        dims=("s", "t"),
        coords={"t": ("t", t, {"units": "s"})},
        name="u",
        attrs={"units": "m"},
    )
    if chunks:
        u = u.chunk(chunks)
    du = dfl.differentiate(u, "t", accuracy=4)
    back = dfl.integrate(du, "t", initial=u.isel(t=0), method="simpson")
    assert back.attrs["units"] == "m"
    assert back.dims == u.dims
    np.testing.assert_allclose(back.values, u.values, atol=1e-8)
    rel = dfl.integrate(du, "t", method="simpson")
    np.testing.assert_allclose(rel.values, (u - u.isel(t=0)).values, atol=1e-8)


def test_datetime_dataset_and_accessor():
    times = np.datetime64("2021-03-01") + np.arange(30) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {"rate": ("time", np.full(30, 2.0), {"units": "mm h-1"}), "name": ((), "gauge")},
        coords={"time": times},
    )
    total = ds.delta.integrate("time", datetime_unit="h")
    np.testing.assert_allclose(total["rate"].values, 2.0 * np.arange(30))
    assert total["rate"].attrs["units"] == "mm"
    assert total["name"].identical(ds["name"])


def test_errors():
    da = _sin(3)
    with pytest.raises(ValueError, match="method must be 'trapezoid' or 'simpson'"):
        dfl.integrate(da, "t", method="romberg")
    with pytest.raises(ValueError, match=r"variable 'v', dim 't': .*at least 4 samples, got 3"):
        dfl.integrate(da, "t", method="simpson")
    with pytest.raises(TypeError, match=r"initial must be a number or a DataArray"):
        dfl.integrate(da, "t", "simpson")
    with pytest.raises(ValueError, match=r"initial must not have dim 't'"):
        dfl.integrate(da, "t", initial=da)
    bad = da.assign_coords(t=[0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"variable 'v', dim 't': coordinate is not strictly"):
        dfl.integrate(bad, "t")
