"""Greeks and risk-neutral densities against Black–Scholes closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.special import ndtr

import deltaflow as dfl

K, R = 100.0, 0.03


def _phi(z):
    return np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)


def _bs(s, v, t, r=R, k=K):
    """Call price and exact Greeks (calendar-time theta), arrays broadcast."""
    sq = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * v**2) * t) / sq
    d2 = d1 - sq
    price = s * ndtr(d1) - k * np.exp(-r * t) * ndtr(d2)
    g = {
        "delta": ndtr(d1),
        "gamma": _phi(d1) / (s * sq),
        "vega": s * _phi(d1) * np.sqrt(t),
        "theta": -s * _phi(d1) * v / (2 * np.sqrt(t)) - r * k * np.exp(-r * t) * ndtr(d2),
        "rho": k * t * np.exp(-r * t) * ndtr(d2),
        "vanna": -_phi(d1) * d2 / v,
        "volga": s * _phi(d1) * np.sqrt(t) * d1 * d2 / v,
        "charm": -_phi(d1) * (2 * r * t - d2 * sq) / (2 * t * sq),
    }
    return price, g


def _surface(noise=0.0, seed=0, underlyings=3):
    s = np.linspace(60, 140, 101)
    v = np.linspace(0.15, 0.45, 21)
    t = np.linspace(0.25, 2.0, 22)
    r = np.linspace(0.01, 0.05, 5)
    S, V, Rr, T = np.meshgrid(s, v, r, t, indexing="ij")
    price, g = _bs(S, V, T, Rr)
    scale = 1 + 0.1 * np.arange(underlyings)  # several underlyings: scaled surfaces
    prices = price[None] * scale[:, None, None, None, None]
    if noise:
        prices = prices + noise * np.random.default_rng(seed).standard_normal(prices.shape)
    da = xr.DataArray(
        prices,
        dims=("underlying", "spot", "vol", "rate", "time"),
        coords={"spot": s, "vol": v, "rate": r, "time": t},
        name="call",
    )
    return da, g, scale


def _rel_rmse(est, true, trim=0.1):
    """RMSE over the interior (``trim`` of each dim dropped), relative to the RMS of truth."""
    sl = tuple(slice(int(trim * n), n - int(trim * n)) for n in true.shape)
    e, t = est[sl], true[sl]
    return float(np.sqrt(np.mean((e - t) ** 2)) / np.sqrt(np.mean(t**2)))


def test_all_greeks_from_a_clean_surface_match_closed_forms():
    da, g, scale = _surface(underlyings=2)
    out = dfl.greeks(da, spot="spot", vol="vol", rate="rate", time="time", accuracy=4)
    assert set(out.data_vars) == {
        "delta",
        "gamma",
        "vega",
        "volga",
        "rho",
        "theta",
        "vanna",
        "charm",
    }
    for name in out.data_vars:
        for u in range(2):
            est = out[name].isel(underlying=u).transpose("spot", "vol", "rate", "time").values
            # prices were built on the time-to-expiry axis: calendar theta = -dC/dtau
            err = _rel_rmse(est, scale[u] * g[name])
            assert err < 2e-3, (name, u, err)
    # as documented: Delta is read by key; the attribute is deltaflow's accessor
    assert isinstance(out["delta"], xr.DataArray)
    assert not isinstance(out.delta, xr.DataArray) and hasattr(out.delta, "differentiate")


def test_noisy_surface_with_smoothing_chunked_and_many_at_once():
    da, g, scale = _surface(noise=0.01, underlyings=4)
    da = da.isel(rate=[2]).chunk({"underlying": 1, "vol": 8})
    out = dfl.greeks(da, spot="spot", vol="vol", method="savgol", window=21, polyorder=3)
    assert out["delta"].chunks is not None  # lazy and chunked like the input
    for name, tol in (("delta", 0.01), ("gamma", 0.06), ("vega", 0.03)):
        est = out[name].transpose("underlying", "spot", "vol", "rate", "time").values
        for u in range(4):
            err = _rel_rmse(est[u], scale[u] * g[name][:, :, [2], :])
            assert err < tol, (name, u, err)


def test_greeks_errors_name_the_problem():
    da, _, _ = _surface(underlyings=1)
    with pytest.raises(ValueError, match="at least one of spot="):
        dfl.greeks(da)
    with pytest.raises(ValueError, match="vol='sigma' is not a dim of the prices"):
        dfl.greeks(da, spot="spot", vol="sigma")
    with pytest.raises(ValueError, match="time_kind must be"):
        dfl.greeks(da, time="time", time_kind="weekly")


def test_risk_neutral_density_is_the_lognormal_density():
    strikes = np.linspace(20, 300, 561)
    s0, v, t = 100.0, 0.3, 1.0
    sq = v * np.sqrt(t)
    d1 = (np.log(s0 / strikes) + (R + 0.5 * v**2) * t) / sq
    d2 = d1 - sq
    call = s0 * ndtr(d1) - strikes * np.exp(-R * t) * ndtr(d2)
    da = xr.DataArray(call, dims=["strike"], coords={"strike": strikes})
    q = dfl.risk_neutral_density(da, "strike", rate=R, time=t, accuracy=4)
    true = _phi(d2) / (strikes * sq)
    np.testing.assert_allclose(q.values, true, atol=2e-4 * true.max())
    assert abs(q.attrs["deltaflow_mass"] - 1.0) < 2e-3
    noisy = da + 0.002 * np.random.default_rng(1).standard_normal(da.shape)
    qn = dfl.risk_neutral_density(noisy, "strike", rate=R, time=t, method="spline")
    assert _rel_rmse(qn.values, true) < 0.1


def test_risk_neutral_density_needs_rate_and_time():
    da = xr.DataArray(np.linspace(1, 0, 20), dims=["strike"], coords={"strike": np.arange(20.0)})
    with pytest.raises(ValueError, match="needs rate="):
        dfl.risk_neutral_density(da, "strike", time=1.0)
    with pytest.raises(ValueError, match="time='tau' is not a coordinate"):
        dfl.risk_neutral_density(da, "strike", rate=0.01, time="tau")
