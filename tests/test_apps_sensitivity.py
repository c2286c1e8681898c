"""Sensitivity analysis from scattered samples and from grids, and its bar chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import deltaflow as dfl
from deltaflow.plots import plot_sensitivity


def samples(seed=0, n=500):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = 2 * x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + 0.1 * rng.standard_normal(n)
    return pd.DataFrame(x, columns=["x1", "x2", "x3"]), y


def test_reference_case_at_the_origin():
    features, y = samples()
    s = dfl.sensitivity(features, y, at=[[0.0, 0.0, 0.0]])
    # PyDelt: [335, -169, 519]
    np.testing.assert_allclose(s["local"].values[0], [2.0, 0.5, -1.0], atol=0.05)
    assert list(s["feature"].values) == ["x1", "x2", "x3"]
    assert s["local"].dims == ("point", "feature")


def test_global_ranking_from_samples():
    features, y = samples(1)
    s = dfl.sensitivity(features, y)
    np.testing.assert_allclose(s["mean_abs"], [2.0, 0.5, 1.0], atol=0.05)
    np.testing.assert_allclose(s["mean"], [2.0, 0.5, -1.0], atol=0.05)
    assert list(s["ranking"].values) == [1, 3, 2]
    np.testing.assert_allclose(s["scaled"], s["mean_abs"] * features.std(ddof=0).values, rtol=1e-12)
    assert s.sizes["point"] == 500


def test_nonlinear_local_sensitivity_and_subsampling():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (4000, 2))
    y = x[:, 0] ** 2 + np.sin(2 * x[:, 1])
    s = dfl.sensitivity(x, y, degree=2, max_points=300)
    assert s.sizes["point"] == 300
    at = np.stack([s["at_0"].values, s["at_1"].values], axis=-1)
    truth = np.stack([2 * at[:, 0], 2 * np.cos(2 * at[:, 1])], axis=-1)
    assert np.median(np.abs(s["local"].values - truth)) < 0.02
    np.testing.assert_allclose(s["mean_abs"], np.abs(truth).mean(axis=0), atol=0.02)


def test_grid_sensitivity():
    a = np.linspace(0, 1, 41)
    b = np.linspace(-1, 1, 21)
    da = xr.DataArray(
        3 * a[:, None] + 0.25 * b[None, :] ** 2, dims=("a", "b"), coords={"a": a, "b": b}
    )
    s = dfl.sensitivity(da, dims=["a", "b"])
    np.testing.assert_allclose(s["mean_abs"].sel(feature="a"), 3.0, atol=1e-10)
    # mean of |0.5 b| on the grid
    np.testing.assert_allclose(s["mean_abs"].sel(feature="b"), np.mean(np.abs(0.5 * b)), atol=1e-10)
    assert list(s["ranking"].values) == [1, 2]
    lazy = dfl.sensitivity(da.chunk({"a": 10}), dims=["a", "b"])
    np.testing.assert_allclose(lazy["mean_abs"], s["mean_abs"], rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="dims: name the feature dims"):
        dfl.sensitivity(xr.DataArray(np.zeros((3, 3)), dims=("a", "b")))
    with pytest.raises(TypeError, match="must be a DataArray sampled on a grid"):
        dfl.sensitivity(np.zeros((10, 2)))
    features, y = samples(n=100)
    with pytest.raises(ValueError, match="values: expected shape"):
        dfl.sensitivity(features, y[:10])


def test_sensitivity_figure(tmp_path):
    features, y = samples(3)
    s = dfl.sensitivity(features, y)
    out = tmp_path / "sens.png"
    fig = plot_sensitivity(s, output=out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["x1", "x3", "x2"]  # most important first
    plot_sensitivity(s, measure="scaled")
    with pytest.raises(ValueError, match="measure: must be"):
        plot_sensitivity(s, measure="max")
