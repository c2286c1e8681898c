"""The command line through typer's runner (the real subprocess is in test_io_interrupt)."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from typer.testing import CliRunner

from deltaflow.cli import app
from deltaflow.io import Store
from deltaflow.workflow import json_schema

runner = CliRunner()

WF = """\
name: cli-test
source: {kind: sensors, n_series: 4, n_samples: 600, chunks: {sensor: 2, time: 200}}
steps:
  - differentiate: {var: temperature, dim: time, method: savgol, order: 1, window: 21,
                    polyorder: 3, out: dT_dt, smoothed_out: smooth}
  - differentiate: {var: temperature, dim: time, method: finite_difference, order: 2,
                    out: d2T_dt2}
sink: {path: STORE, mode: create}
"""


@pytest.fixture
def wf(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k in list(os.environ):
        if k.startswith("DELTAFLOW__"):
            monkeypatch.delenv(k)
    p = tmp_path / "wf.yaml"
    p.write_text(textwrap.dedent(WF).replace("STORE", str(tmp_path / "out.zarr")))
    return p


def test_schema_prints_the_json_schema():
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0
    assert json.loads(res.stdout) == json.loads(json.dumps(json_schema()))


def test_validate_ok_and_invalid(wf):
    res = runner.invoke(app, ["validate", str(wf)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.stdout and "6 regions" in res.stdout
    res = runner.invoke(app, ["validate", str(wf), "--set", "steps[0].differentiate.window=10"])
    assert res.exit_code == 2
    assert f"{wf}:4: steps[0].differentiate.window:" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(
        app, ["validate", str(wf), "--set", "steps[0].differentiate.window=10", "--debug"]
    )
    assert res.exit_code == 2 and "Traceback" in res.output
    res = runner.invoke(app, ["validate", "nope.yaml"])
    assert res.exit_code == 2 and "workflow file nope.yaml does not exist" in res.output


def test_plan_lists_steps_grid_and_memory(wf):
    res = runner.invoke(app, ["plan", str(wf), "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    from deltaflow.kernels import get_method

    sg, fd = get_method("savgol"), get_method("finite_difference")
    halo = sg.footprint(1, sg.make_params({"window": 21})) + fd.footprint(2, fd.make_params())
    assert plan["regions"] == 6 and plan["halos"] == {"sensor": 0, "time": halo}
    res = runner.invoke(app, ["plan", str(wf)])
    assert res.exit_code == 0 and "estimated memory per worker" in res.stdout


def test_run_inspect_plot_and_exit_codes(wf, tmp_path):
    res = runner.invoke(app, ["run", str(wf)])
    assert res.exit_code == 0, res.output
    assert "wrote 6/6 regions" in res.stdout and str(tmp_path / "out.zarr") in res.stdout
    assert "[deltaflow] 6/6 regions written" in res.stdout  # plain lines off a terminal

    res = runner.invoke(app, ["run", str(wf)])  # create on an existing store: invalid input
    assert res.exit_code == 2 and "already exists" in res.output

    res = runner.invoke(app, ["inspect", str(tmp_path / "out.zarr")])
    assert res.exit_code == 0, res.output
    assert "COMPLETE" in res.stdout and "cli-test" in res.stdout and "savgol" in res.stdout

    png = tmp_path / "fig.png"
    res = runner.invoke(
        app,
        ["plot", str(tmp_path / "out.zarr"), "temperature", "--sel", "sensor=1", "--out", str(png)],
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["plot", str(tmp_path / "out.zarr"), "pressure", "--out", str(png)])
    assert res.exit_code == 2 and "no variable 'pressure'" in res.output

    # a held lock makes a run fail (exit 1), an unfinished store makes inspect exit 1
    store = Store(str(tmp_path / "out.zarr"))
    store.acquire("other")
    res = runner.invoke(app, ["run", str(wf), "--set", "sink.mode=overwrite"])
    store.release("other")
    assert res.exit_code == 1 and "another writer holds the store" in res.output
    state = store.read_state()
    state["status"] = "writing"
    store.write_state(state)
    res = runner.invoke(app, ["inspect", str(tmp_path / "out.zarr")])
    assert res.exit_code == 1 and "INCOMPLETE" in res.output


def test_methods_still_listed():
    res = runner.invoke(app, ["methods", "--json"])
    assert res.exit_code == 0 and "savgol" in json.loads(res.stdout)


# The real-subprocess run of `python -m deltaflow.cli run` is the SIGKILL test in
# tests/test_io_interrupt.py (exit by signal, then resume).
