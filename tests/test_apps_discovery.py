"""Equation discovery: du/dt = -u from noisy decays, the Lorenz system from noisy paths."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import solve_ivp

import deltaflow as dfl
from deltaflow.apps.discovery import Library, equations, simulate, stlsq


def test_exponential_decay_recovered_for_many_systems_at_once():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 3, 301)
    u0 = rng.uniform(0.5, 2.0, (300, 1))
    u = u0 * np.exp(-t)
    u = u + 0.01 * u0 * rng.standard_normal(u.shape)
    ds = xr.Dataset({"u": (("system", "t"), u)}, coords={"t": t})
    # savgol with its window chosen per system from the data; library: 1, u, u^2
    out = dfl.discover(ds, "t", method="savgol", degree=2, threshold=0.2)
    c = out.coefficients.sel(equation="du/dt")
    assert c.sizes["system"] == 300
    np.testing.assert_allclose(c.sel(term="u"), -1.0, atol=0.05)
    assert float(np.abs(c.drop_sel(term="u")).max()) == 0.0
    assert equations(out.isel(system=0))[0].startswith("du/dt = -")


def _lorenz(_t, s, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = s
    return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]


TRUE_LORENZ = {
    ("dx/dt", "x"): -10.0,
    ("dx/dt", "y"): 10.0,
    ("dy/dt", "x"): 28.0,
    ("dy/dt", "y"): -1.0,
    ("dy/dt", "x*z"): -1.0,
    ("dz/dt", "z"): -8.0 / 3.0,
    ("dz/dt", "x*y"): 1.0,
}


def test_lorenz_coefficients_within_five_percent_from_noisy_trajectories():
    rng = np.random.default_rng(1)
    t = np.arange(0, 8, 0.002)
    starts = [[-8, 8, 27], [1, 1, 20], [5, -5, 30]]
    paths = np.stack(
        [solve_ivp(_lorenz, (0, 8), s0, t_eval=t, rtol=1e-10, atol=1e-10).y for s0 in starts]
    )  # (system, 3, n)
    noise = 0.002 * paths.std(axis=2, keepdims=True) * rng.standard_normal(paths.shape)
    paths = paths + noise
    ds = xr.Dataset(
        {k: (("system", "t"), paths[:, i]) for i, k in enumerate("xyz")}, coords={"t": t}
    )
    out = dfl.discover(ds, "t", method="savgol", window=21, polyorder=3, threshold=0.5)
    for s in range(3):
        coef = out.coefficients.isel(system=s)
        for (eq, term), true in TRUE_LORENZ.items():
            got = float(coef.sel(equation=eq, term=term))
            assert abs(got - true) <= 0.05 * abs(true), (s, eq, term, got)
        kept = int((coef != 0).sum())
        assert kept == len(TRUE_LORENZ), equations(coef.to_dataset(name="coefficients"))
    # the discovered system reproduces the short-time trajectory
    one = out.isel(system=0)
    sim = simulate(one, paths[0, :, 0], t[:250])
    ref = solve_ivp(_lorenz, (0, t[249]), paths[0, :, 0], t_eval=t[:250], rtol=1e-10).y.T
    assert np.max(np.abs(sim - ref)) < 0.5


def test_stlsq_matches_pysindy_on_one_system():
    ps = pytest.importorskip("pysindy")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 2))
    lib = Library(("a", "b"), degree=2)
    theta = lib.evaluate(x)
    true = np.zeros((theta.shape[1], 2))
    true[1, 0], true[4, 0], true[2, 1] = 1.5, -0.7, 2.0
    target = theta @ true + 0.01 * rng.standard_normal((500, 2))
    ours = stlsq(theta[None], target[None], threshold=0.1)[0]
    opt = ps.STLSQ(threshold=0.1, alpha=0.0, normalize_columns=True)
    opt.fit(theta, target)
    np.testing.assert_allclose(ours, opt.coef_.T, atol=1e-3)


def test_discover_errors():
    ds = xr.Dataset({"u": (("t",), np.arange(10.0)), "tag": (("t",), np.array(list("abcdefghij")))})
    with pytest.raises(ValueError, match="dim 'time' not found"):
        dfl.discover(ds, "time")
    with pytest.raises(ValueError, match="functions: unknown 'system'"):
        dfl.discover(ds, "t", functions=["system"])
    with pytest.raises(ValueError, match="variables: 'v' is not a variable"):
        dfl.discover(ds, "t", variables=["v"])
