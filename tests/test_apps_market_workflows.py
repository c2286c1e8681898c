"""The finance, discovery and stochastic steps in workflows/greeks.yaml,
workflows/discovery.yaml and workflows/log_returns.yaml (run as shipped, smaller)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from deltaflow.io import open_store
from deltaflow.workflow import STEPS, ConfigError
from deltaflow.workflow.runner import run_workflow

ROOT = Path(__file__).resolve().parents[1]


def test_steps_are_registered():
    for kind in ("greeks", "risk_neutral_density", "log_return_rate", "discover"):
        assert kind in STEPS


def test_greeks_workflow_matches_black_scholes(tmp_path):
    run_workflow(
        ROOT / "workflows" / "greeks.yaml",
        overrides=[
            f"sink.path={tmp_path / 'g.zarr'}",
            f"steps[0].greeks.figure={tmp_path / 'g.png'}",
            "source.spot.num=81",
            "source.vol.num=11",
            "source.time.num=12",
            "source.chunks.time=6",
        ],
    )
    ds = open_store(str(tmp_path / "g.zarr")).load()
    s, v, t = ds.spot, ds.vol, ds.time
    sq = v * np.sqrt(t)
    d1 = (np.log(s / 100.0) + (0.02 + 0.5 * v**2) * t) / sq
    inner = {"spot": slice(10, -10), "vol": slice(2, -2), "time": slice(2, -2)}
    np.testing.assert_allclose(ds["delta"].isel(inner), ndtr(d1).isel(inner), atol=2e-3)
    vega = s * np.exp(-0.5 * d1**2) / np.sqrt(2 * np.pi) * np.sqrt(t)
    np.testing.assert_allclose(ds.vega.isel(inner), vega.isel(inner), atol=0.02 * float(vega.max()))
    assert {"gamma", "volga", "theta", "vanna", "charm"} <= set(ds.data_vars)
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_discovery_workflow_recovers_lorenz(tmp_path):
    run_workflow(
        ROOT / "workflows" / "discovery.yaml",
        overrides=[
            f"sink.path={tmp_path / 'd.zarr'}",
            f"steps[0].discover.figure={tmp_path / 'd.png'}",
            "source.n_systems=2",
            "source.n_samples=3000",
        ],
    )
    ds = open_store(str(tmp_path / "d.zarr")).load()
    coef = ds.model_coefficients
    terms = coef.attrs["terms"]
    eqs = coef.attrs["equations"]
    assert eqs == ["dx/dtime", "dy/dtime", "dz/dtime"]
    c = coef.isel(system=0).values
    assert abs(c[0, terms.index("x")] + 10) < 0.5 and abs(c[0, terms.index("y")] - 10) < 0.5
    assert abs(c[1, terms.index("x")] - 28) < 1.4 and abs(c[2, terms.index("x*y")] - 1) < 0.05
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


def test_log_returns_workflow(tmp_path):
    run_workflow(
        ROOT / "workflows" / "log_returns.yaml",
        overrides=[f"sink.path={tmp_path / 'r.zarr'}", "source.n_paths=100"],
    )
    ds = open_store(str(tmp_path / "r.zarr")).load()
    assert ds.ito_rate.sizes == ds.price.sizes
    assert np.isnan(ds.ito_rate.isel(time=-1)).all()
    assert abs(float(ds.ito_sigma.mean()) - 0.3) < 0.01
    np.testing.assert_allclose(ds.ito_mean_rate, ds.strat_mean_rate, atol=0.01)


def test_bad_step_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"steps\[0\]\.discover\.window: .*odd"):
        run_workflow(
            ROOT / "workflows" / "discovery.yaml",
            overrides=[f"sink.path={tmp_path / 'x.zarr'}", "steps[0].discover.window=20"],
        )
    with pytest.raises(ConfigError, match=r"steps\[0\]\.greeks\.time_kind"):
        run_workflow(
            ROOT / "workflows" / "greeks.yaml",
            overrides=[f"sink.path={tmp_path / 'y.zarr'}", "steps[0].greeks.time_kind=weekly"],
        )
