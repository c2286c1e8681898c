"""Itô and Stratonovich log-return rates on simulated geometric Brownian motion."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import deltaflow as dfl

MU, SIGMA = 0.12, 0.4


def _gbm(paths=400, n=2001, T=5.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, T, n)
    dt = t[1] - t[0]
    steps = (MU - SIGMA**2 / 2) * dt + SIGMA * np.sqrt(dt) * rng.standard_normal((paths, n - 1))
    logs = np.concatenate([np.zeros((paths, 1)), np.cumsum(steps, axis=1)], axis=1)
    return xr.DataArray(100 * np.exp(logs), dims=("path", "t"), coords={"t": t}, name="S")


@pytest.mark.parametrize("calculus", ["ito", "stratonovich"])
def test_log_growth_drift_and_volatility_recovered(calculus):
    s = _gbm()
    out = dfl.log_return_rate(s, "t", calculus=calculus)
    # the drift of log S is mu - sigma^2/2; its estimate from a path of length T has
    # standard error sigma / sqrt(T) per path, averaged over the paths
    se = SIGMA / np.sqrt(5.0) / np.sqrt(s.sizes["path"])
    assert abs(float(out.mean_rate.mean()) - (MU - SIGMA**2 / 2)) < 4 * se
    assert abs(float(out.sigma.mean()) - SIGMA) < 0.01
    # without the Itô correction the rate estimates the drift of S, not of log S
    assert abs(float(out.naive_rate.mean()) - MU) < 4 * se
    assert out.rate.sizes["t"] == s.sizes["t"] - 1


def test_ito_and_stratonovich_agree_per_path_to_first_order():
    s = _gbm(paths=50, n=20001)
    ito = dfl.log_return_rate(s, "t", calculus="ito").mean_rate
    strat = dfl.log_return_rate(s, "t", calculus="stratonovich").mean_rate
    np.testing.assert_allclose(ito, strat, atol=5e-3)


def test_lazy_on_dask_and_errors():
    s = _gbm(paths=8, n=101).chunk({"path": 4})
    out = dfl.log_return_rate(s, "t")
    assert out.rate.chunks is not None
    with pytest.raises(ValueError, match="calculus must be"):
        dfl.log_return_rate(s, "t", calculus="levy")
    with pytest.raises(ValueError, match="dim 'x' is not a dim"):
        dfl.log_return_rate(s, "x")
    bad = _gbm(paths=2, n=50)
    bad[1, 7] = -1.0
    with pytest.raises(
        ValueError, match="positive and finite; first offending position along 't': 7"
    ):
        dfl.log_return_rate(bad, "t")
