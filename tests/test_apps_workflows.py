"""The calculus and app steps in YAML workflows; workflows/landscape.yaml and
workflows/sensitivity.yaml run as shipped (on smaller grids)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from deltaflow.apps.steps import KIND_CODES, ResidualStep
from deltaflow.io import open_store
from deltaflow.workflow import STEPS, ConfigError
from deltaflow.workflow.runner import run_workflow

ROOT = Path(__file__).resolve().parents[1]


def test_steps_are_registered():
    for kind in (
        "gradient",
        "hessian",
        "laplacian",
        "directional_derivative",
        "divergence",
        "curl",
        "jacobian",
        "jacobian_logdet",
        "critical_points",
        "descent_path",
        "sensitivity",
        "residual",
    ):
        assert kind in STEPS


def test_landscape_workflow(tmp_path):
    run_workflow(
        ROOT / "workflows" / "landscape.yaml",
        overrides=[
            f"sink.path={tmp_path / 'land.zarr'}",
            f"steps[3].descent_path.figure={tmp_path / 'land.png'}",
            "steps[3].descent_path.max_steps=400",
            "source.axes.x.num=41",
            "source.axes.y.num=41",
            "source.chunks.x=14",
        ],
    )
    ds = open_store(str(tmp_path / "land.zarr")).load()
    assert ds.sizes["critical"] == 1
    np.testing.assert_allclose([ds.critical_x.item(), ds.critical_y.item()], [1, 1], atol=1e-6)
    assert ds.critical_kind.item() == KIND_CODES["minimum"]
    assert ds.critical_kind.attrs["flag_meanings"] == "minimum maximum saddle degenerate"
    np.testing.assert_allclose(ds.grad_f.sel(x=0, y=0).values, [-2, 0], atol=1e-9)
    np.testing.assert_allclose(ds.hess_f.sel(x=0, y=0).values, [[2, 0], [0, 200]], atol=1e-8)
    assert ds.descent_value.dims == ("descent_start", "descent_step")
    assert (np.diff(ds.descent_value.values, axis=1) <= 1e-12).all()
    assert (tmp_path / "land.png").read_bytes()[:4] == b"\x89PNG"


def test_sensitivity_workflow(tmp_path):
    run_workflow(
        ROOT / "workflows" / "sensitivity.yaml",
        overrides=[
            f"sink.path={tmp_path / 'sens.zarr'}",
            f"steps[0].sensitivity.figure={tmp_path / 'sens.png'}",
            "source.axes.a.num=21",
            "source.axes.b.num=21",
            "source.axes.c.num=11",
            "source.chunks.a=11",
        ],
    )
    ds = open_store(str(tmp_path / "sens.zarr")).load()
    assert list(ds.sensitivity_feature.values) == ["a", "b", "c"]
    # f = 100 (b - a^2)^2 + (1 - a)^2 + 100 (c - b^2)^2 + (1 - b)^2: b matters most
    assert ds.sensitivity_ranking.sel(sensitivity_feature="b").item() == 1
    local = ds.sensitivity_local.values
    np.testing.assert_allclose(
        ds.sensitivity_mean_abs.values, np.abs(local).reshape(-1, 3).mean(0), rtol=1e-10
    )
    assert (tmp_path / "sens.png").read_bytes()[:4] == b"\x89PNG"


GRID = """\
name: calculus-steps
source:
  kind: function
  function: sphere
  axes: {x: {start: -1, stop: 1, num: 21}, y: {start: -1, stop: 1, num: 21}}
  chunks: {x: 7}
steps:
  - laplacian: {var: f, dims: [x, y]}
  - directional_derivative: {var: f, dims: [x, y], direction: [1, 0]}
  - gradient: {var: f, dims: [x, y], out: g}
  - expression: {out: gx, expr: "f * 0 + 2 * f"}
  - divergence: {vars: [f, f], dims: [x, y], out: div}
  - residual: {expression: "d2(f, x) + d2(f, y) = 4", out: res}
  - sensitivity: {features: [], predictions: f}
sink: {path: STORE, mode: create}
"""


def write(tmp_path, text):
    p = tmp_path / "wf.yaml"
    p.write_text(textwrap.dedent(text).replace("STORE", str(tmp_path / "out.zarr")))
    return p


def test_grid_steps_and_residual(tmp_path):
    text = GRID.replace("  - sensitivity: {features: [], predictions: f}\n", "")
    run_workflow(write(tmp_path, text))
    ds = open_store(str(tmp_path / "out.zarr")).load()
    np.testing.assert_allclose(ds.lap_f.values, 4.0, atol=1e-9)  # sphere: x^2 + y^2
    np.testing.assert_allclose(
        ds.ddir_f.values, 2 * ds.x.values[:, None] + 0 * ds.y.values, atol=1e-9
    )
    np.testing.assert_allclose(ds.div.values, 2 * ds.x.values[:, None] + 2 * ds.y.values, atol=1e-9)
    np.testing.assert_allclose(ds.res.values, 0.0, atol=1e-9)
    assert float(ds.res_rms) < 1e-9


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"steps\[6\]\.sensitivity: .*needs both features"):
        run_workflow(write(tmp_path, GRID))
    grid = GRID.replace("  - sensitivity: {features: [], predictions: f}\n", "")
    lap = "- laplacian: {var: f, dims: [x, y]}"
    bad = grid.replace(lap, "- laplacian: {var: f, dims: [x, y], accuracy: 5}")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.laplacian\.accuracy"):
        run_workflow(write(tmp_path, bad))
    bad = grid.replace(lap, "- laplacian: {var: f, dims: [x, q]}")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.laplacian\.dims.*no dim 'q'"):
        run_workflow(write(tmp_path, bad))
    bad = grid.replace('"d2(f, x) + d2(f, y) = 4"', '"f.values"')
    with pytest.raises(ConfigError, match=r"steps\[5\]\.residual\.expression.*Attribute"):
        run_workflow(write(tmp_path, bad))


def test_residual_halo_follows_the_derivative_terms():
    step = ResidualStep(expression="d(u, t) + k*u = d2(d(u, x), t)", accuracy=4)
    # finite differences, accuracy 4: order 1 reaches 2 samples (uniform), order 2 reaches 3
    assert step.halo() == {"t": 3, "x": 2}


def test_sensitivity_step_scattered_form():
    import xarray as xr

    from deltaflow.apps.steps import SensitivityStep
    from deltaflow.workflow import StepContext

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3))
    y = 2 * x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + 0.1 * rng.standard_normal(500)
    ds = xr.Dataset({n: ("sample", x[:, i]) for i, n in enumerate(["p", "q", "r"])})
    ds["y"] = ("sample", y)
    out = SensitivityStep(features=["p", "q", "r"], predictions="y").run(ds, StepContext())
    np.testing.assert_allclose(out.sensitivity_mean.values, [2, 0.5, -1], atol=0.05)
    assert list(out.sensitivity_feature.values) == ["p", "q", "r"]
    assert list(out.sensitivity_ranking.values) == [1, 3, 2]
