"""Workflow runs on real YAML files and real Zarr v3 stores: sources, steps, sink modes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import deltaflow
from deltaflow.io import IncompleteStoreError, Store, StoreLockedError, open_store
from deltaflow.workflow import ConfigError
from deltaflow.workflow.runner import run_workflow
from deltaflow.workflow.sources import SensorsSource, sensor_signal

pytestmark = pytest.mark.skipif(
    not hasattr(deltaflow, "differentiate"), reason="needs the engine (deltaflow.differentiate)"
)

SENSORS = """\
name: run-test
source: {kind: sensors, n_series: 6, n_samples: 1200, noise: 0.0, chunks: {sensor: 3, time: 300}}
steps:
  - differentiate: {var: temperature, dim: time, method: finite_difference, order: 1,
                    accuracy: 4, out: dT_dt}
sink: {path: STORE, mode: create}
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml", store: str = "out.zarr") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).replace("STORE", str(tmp_path / store)))
    return p


def truth_derivative(series, samples, dt, seed=0, eps=1e-4):
    """Central difference of the generator's noise-free signal with a tiny step (reference)."""
    t = samples * dt
    hi = sensor_signal(series, (t + eps) / dt, dt, 0.0, seed)
    lo = sensor_signal(series, (t - eps) / dt, dt, 0.0, seed)
    return (hi - lo) / (2 * eps)


# --------------------------------------------------------------------------- sources


def test_sensor_windows_equal_slices_of_a_longer_series():
    full = SensorsSource(n_series=3, n_samples=500, chunks={"sensor": 2, "time": 70}).open()
    win = SensorsSource(
        n_series=3, n_samples=200, time_offset=150, chunks={"sensor": 3, "time": 64}
    ).open()
    np.testing.assert_array_equal(
        full.temperature.isel(time=slice(150, 350)).values, win.temperature.values
    )
    np.testing.assert_array_equal(full.time.values[150:350], win.time.values)
    noise = full.temperature.values - sensor_signal(np.arange(3), np.arange(500), 0.01, 0.0, 0)
    assert abs(noise.std() / 0.01 - 1) < 0.1 and abs(noise.mean()) < 0.003


def test_sensors_run_writes_derivative_and_provenance(tmp_path):
    summary = run_workflow(write(tmp_path, SENSORS), environ={})
    assert summary.complete and summary.regions_total == 8 and summary.regions_written == 8
    assert summary.bytes_written == 2 * 6 * 1200 * 8
    ds = xr.open_zarr(tmp_path / "out.zarr")  # a finished store opens with plain xarray
    assert set(ds.data_vars) == {"temperature", "dT_dt"}
    assert ds.dT_dt.encoding["chunks"] == (3, 300)
    ref = truth_derivative(np.arange(6), np.arange(1200), 0.01)
    err = np.abs(ds.dT_dt.values - ref)[:, 5:-5].max() / np.abs(ref).max()
    assert err < 1e-5
    a = ds.attrs
    assert a["deltaflow_status"] == "complete" and a["workflow_name"] == "run-test"
    assert a["deltaflow_version"] == deltaflow.__version__
    assert len(a["workflow_sha256"]) == 64 and a["run_start"] <= a["run_end"]
    assert a["steps"][0]["method"] == "finite_difference"
    assert a["steps"][0]["params"]["accuracy"] == 4 and a["steps"][0]["halo"] == {"time": 2}
    assert a["source"]["kind"] == "sensors" and a["source"]["n_series"] == 6


def test_black_scholes_source_put_call_parity_and_delta(tmp_path):
    text = """\
    name: bs
    source:
      kind: black_scholes
      spot: {start: 60, stop: 140, num: 161}
      vol: {start: 0.1, stop: 0.4, num: 4}
      time: {start: 0.25, stop: 1.0, num: 4}
      rate: {start: 0.0, stop: 0.05, num: 2}
      chunks: {vol: 2}
    steps:
      - differentiate: {var: call, dim: spot, method: finite_difference, order: 1,
                        accuracy: 6, out: delta}
    sink: {path: STORE}
    """
    run_workflow(write(tmp_path, text), environ={})
    ds = open_store(str(tmp_path / "out.zarr")).load()
    assert ds.call.dims == ("spot", "vol", "rate", "time")
    s, t, r = ds.spot, ds.time, ds.rate
    parity = (ds.call - ds.put) - (s - 100 * np.exp(-r * t))
    assert float(np.abs(parity).max()) < 1e-9
    from scipy.special import ndtr

    v = ds.vol
    d1 = (np.log(s / 100) + (r + 0.5 * v**2) * t) / (v * np.sqrt(t))
    assert float(np.abs(ds["delta"] - ndtr(d1)).max()) < 2e-4  # ds.delta is the accessor


def test_function_source_with_expression_step(tmp_path):
    text = """\
    name: rosen
    source:
      kind: function
      function: rosenbrock
      axes: {x: {start: -2, stop: 2, num: 81}, y: {start: -1, stop: 3, num: 81}}
      chunks: {x: 20}
    steps:
      - differentiate: {var: f, dim: x, method: finite_difference, order: 1, accuracy: 4,
                        out: fx}
      - differentiate: {var: f, dim: y, method: finite_difference, order: 1, accuracy: 4,
                        out: fy}
      - expression: {out: grad_norm, expr: "sqrt(fx**2 + fy**2)", attrs: {units: "1"}}
      - select: {vars: [f, grad_norm]}
    sink: {path: STORE}
    """
    run_workflow(write(tmp_path, text), environ={})
    ds = open_store(str(tmp_path / "out.zarr")).load()
    assert set(ds.data_vars) == {"f", "grad_norm"}
    x, y = ds.x, ds.y
    fx = -400 * x * (y - x**2) - 2 * (1 - x)
    fy = 200 * (y - x**2)
    np.testing.assert_allclose(ds.grad_norm, np.sqrt(fx**2 + fy**2), rtol=1e-9, atol=1e-9)
    assert float(ds.f.sel(x=1.0, y=1.0)) == pytest.approx(0.0, abs=1e-12)
    assert ds.grad_norm.attrs["expression"] == "sqrt(fx**2 + fy**2)"


def _long_frame():
    sensors, times = np.arange(3), np.arange(50) * 0.5
    s, t = np.meshgrid(sensors, times, indexing="ij")
    return pd.DataFrame(
        {"sensor": s.ravel(), "time": t.ravel(), "u": np.sin(t.ravel()) * (s.ravel() + 1)}
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_sources_long_layout(tmp_path, fmt):
    df = _long_frame().sample(frac=1.0, random_state=0)  # row order must not matter
    path = tmp_path / f"data.{fmt}"
    df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
    text = f"""\
    name: table
    source: {{kind: {fmt}, path: {path}, layout: long, dims: [sensor, time], chunks: {{time: 25}}}}
    steps:
      - differentiate: {{var: u, dim: time, method: finite_difference, order: 1, accuracy: 8}}
    sink: {{path: STORE}}
    """
    run_workflow(write(tmp_path, text), environ={})
    ds = open_store(str(tmp_path / "out.zarr")).load()
    assert ds.u.dims == ("sensor", "time") and ds.u.shape == (3, 50)
    expect = np.cos(ds.time) * (ds.sensor + 1)
    err = (ds.du_dtime - expect).isel(time=slice(5, -5))
    assert float(np.abs(err).max()) < 1e-4


def test_csv_wide_layout_with_dates(tmp_path):
    t = pd.date_range("2024-01-01", periods=40, freq="h")
    df = pd.DataFrame({"when": t, "a": np.arange(40.0) * 2, "b": np.arange(40.0) ** 2})
    df.to_csv(tmp_path / "wide.csv", index=False)
    text = f"""\
    name: wide
    source: {{kind: csv, path: {tmp_path / "wide.csv"}, layout: wide, index: when,
              columns_dim: station, var: level, parse_dates: [when]}}
    steps:
      - differentiate: {{var: level, dim: when, method: finite_difference, order: 1,
                         accuracy: 2, datetime_unit: h, out: rate}}
    sink: {{path: STORE}}
    """
    run_workflow(write(tmp_path, text), environ={})
    ds = open_store(str(tmp_path / "out.zarr")).load()
    assert list(ds.station.values) == ["a", "b"]
    np.testing.assert_allclose(ds.rate.sel(station="a"), 2.0)
    np.testing.assert_allclose(
        ds.rate.sel(station="b").isel(when=slice(1, -1)), 2 * np.arange(40.0)[1:-1]
    )


def test_netcdf_and_zarr_sources_and_integrate(tmp_path):
    x = np.linspace(0, 2 * np.pi, 201)
    src = xr.Dataset(
        {"v": (("k", "x"), np.stack([np.cos(x), 2 * np.cos(x)]))}, coords={"x": x, "k": [0, 1]}
    )
    src.to_netcdf(tmp_path / "in.nc")
    text = f"""\
    name: nc
    source: {{kind: netcdf, path: {tmp_path / "in.nc"}, chunks: {{x: 50}}}}
    steps:
      - integrate: {{var: v, dim: x, initial: 1.0, rule: simpson, out: V}}
      - rechunk: {{chunks: {{x: 100}}}}
    sink: {{path: STORE}}
    """
    run_workflow(write(tmp_path, text), environ={})
    ds = open_store(str(tmp_path / "out.zarr")).load()
    assert ds.V.encoding["chunks"] == (2, 100)
    np.testing.assert_allclose(ds.V, 1.0 + np.sin(x) * np.array([[1], [2]]), atol=1e-6)
    # the finished store is itself a source
    text2 = f"""\
    name: from-zarr
    source: {{kind: zarr, path: {tmp_path / "out.zarr"}, variables: [V]}}
    steps:
      - select: {{sel: {{x: {{start: 1.0, stop: 5.0}}}}, isel: {{k: [1]}}}}
      - differentiate: {{var: V, dim: x, method: finite_difference, order: 1, accuracy: 6}}
    sink: {{path: STORE}}
    """
    run_workflow(write(tmp_path, text2, "wf2.yaml", store="second.zarr"), environ={})
    ds2 = open_store(str(tmp_path / "second.zarr")).load()
    assert ds2.sizes["k"] == 1 and float(ds2.x.min()) >= 1.0 and float(ds2.x.max()) <= 5.0
    np.testing.assert_allclose(ds2.dV_dx, 2 * np.cos(ds2.x).expand_dims(k=[1]), atol=1e-5)


def test_smooth_step_or_its_validation(tmp_path):
    from deltaflow.kernels import registered

    smoothers = sorted(n for n, s in registered().items() if s.has_smoothed)
    if not smoothers:
        step = "  - smooth: {var: temperature, dim: time, method: finite_difference}\n"
        text = SENSORS.replace("steps:\n", "steps:\n" + step)
        with pytest.raises(
            ConfigError,
            match=r"steps\[0\].smooth.method: method "
            "'finite_difference' has no smoothed signal",
        ):
            run_workflow(write(tmp_path, text), environ={})
        return
    method = "savgol" if "savgol" in smoothers else smoothers[0]
    extra = ", window: 11" if method == "savgol" else ""
    step = f"  - smooth: {{var: temperature, dim: time, method: {method}{extra}}}\n"
    text = SENSORS.replace("steps:\n", "steps:\n" + step)
    run_workflow(write(tmp_path, text), environ={})
    ds = open_store(str(tmp_path / "out.zarr")).load()
    assert "temperature_smooth" in ds and ds.temperature_smooth.shape == ds.temperature.shape


# --------------------------------------------------------------------------- sink modes


def test_per_variable_codec(tmp_path):
    text = SENSORS.replace(
        "sink: {path: STORE, mode: create}",
        "sink: {path: STORE, codec: none, codecs: {temperature: {name: zstd, level: 1}}}",
    )
    run_workflow(write(tmp_path, text), environ={})
    ds = xr.open_zarr(tmp_path / "out.zarr")
    assert [type(c).__name__ for c in ds.temperature.encoding["compressors"]] == ["ZstdCodec"]
    assert not ds.dT_dt.encoding["compressors"]


def test_overwrite_replaces_and_resume_of_a_complete_store_writes_nothing(tmp_path):
    p = write(tmp_path, SENSORS)
    run_workflow(p, environ={})
    first = open_store(str(tmp_path / "out.zarr")).load()
    again = run_workflow(p, environ={}, resume=True)
    assert again.regions_written == 0 and again.complete
    s = run_workflow(p, environ={}, overrides=["sink.mode=overwrite", "source.seed=3"])
    assert s.regions_written == 8
    second = open_store(str(tmp_path / "out.zarr")).load()
    assert not np.array_equal(first.temperature, second.temperature)
    with pytest.raises(ConfigError, match="was written by a different workflow"):
        run_workflow(p, environ={}, resume=True)


def test_resume_writes_only_unrecorded_regions(tmp_path):
    p = write(tmp_path, SENSORS)
    run_workflow(p, environ={})
    clean = open_store(str(tmp_path / "out.zarr")).load()
    store = Store(str(tmp_path / "out.zarr"))
    state = store.read_state()
    ledger = tmp_path / "out.zarr" / "_deltaflow" / "ledger" / state["epoch"]
    lost = sorted(ledger.iterdir())[:3]
    for f in lost:  # pretend these regions never finished: drop their entries and data
        f.unlink()
        bounds = dict(part.split("=") for part in f.name.split(","))
        i, j = int(bounds["sensor"].split("-")[0]) // 3, int(bounds["time"].split("-")[0]) // 300
        (tmp_path / "out.zarr" / "dT_dt" / "c" / str(i) / str(j)).unlink()
    state["status"] = "writing"
    store.write_state(state)
    with pytest.raises(IncompleteStoreError, match="INCOMPLETE"):
        open_store(str(tmp_path / "out.zarr"))
    s = run_workflow(p, environ={}, resume=True)
    assert s.regions_written == 3 and s.regions_skipped == 5
    np.testing.assert_array_equal(open_store(str(tmp_path / "out.zarr")).load().dT_dt, clean.dT_dt)


def test_a_second_writer_is_refused(tmp_path):
    p = write(tmp_path, SENSORS)
    run_workflow(p, environ={})
    store = Store(str(tmp_path / "out.zarr"))
    store.acquire("someone-else")  # a live holder (this process)
    try:
        with pytest.raises(StoreLockedError, match="another writer holds the store"):
            run_workflow(p, environ={}, overrides=["sink.mode=overwrite"])
    finally:
        store.release("someone-else")
    run_workflow(p, environ={}, overrides=["sink.mode=overwrite"])


APPEND = """\
name: append-test
source: {kind: sensors, n_series: 4, n_samples: N, time_offset: OFF, chunks: {sensor: 2, time: 128}}
steps:
  - differentiate: {var: temperature, dim: time, method: finite_difference, order: 2,
                    accuracy: 4, out: d2}
  - differentiate: {var: d2, dim: time, method: finite_difference, order: 1, accuracy: 2,
                    out: d3}
sink: {path: STORE, mode: MODE, append_dim: time, chunks: {time: 128}}
"""


def _append_file(tmp_path, n, off, mode, store, name):
    text = APPEND.replace("N,", f"{n},").replace("OFF,", f"{off},").replace("MODE", mode)
    return write(tmp_path, text, name, store=store)


def test_append_twice_equals_one_full_run(tmp_path):
    run_workflow(_append_file(tmp_path, 1000, 0, "create", "full.zarr", "full.yaml"), environ={})
    run_workflow(_append_file(tmp_path, 390, 0, "create", "app.zarr", "a1.yaml"), environ={})
    s2 = run_workflow(_append_file(tmp_path, 333, 390, "append", "app.zarr", "a2.yaml"), environ={})
    assert s2.mode == "append" and s2.regions_written < 2 * 8
    a3 = _append_file(tmp_path, 277, 723, "append", "app.zarr", "a3.yaml")
    run_workflow(a3, environ={})
    full = open_store(str(tmp_path / "full.zarr")).load()
    app = open_store(str(tmp_path / "app.zarr")).load()
    assert app.sizes == full.sizes
    np.testing.assert_array_equal(app.time, full.time)
    np.testing.assert_array_equal(app.temperature, full.temperature)
    for v in ("d2", "d3"):
        scale = float(np.abs(full[v]).max())
        np.testing.assert_allclose(app[v], full[v], rtol=0, atol=1e-9 * scale)
    assert app.attrs["deltaflow_status"] == "complete"
    # re-running the same window is refused (not a no-op) and leaves the store as it was
    before = sorted(p.name for p in (tmp_path / "app.zarr" / "_deltaflow").iterdir())
    with pytest.raises(ConfigError, match="not after the stored end"):
        run_workflow(a3, environ={})
    after = sorted(p.name for p in (tmp_path / "app.zarr" / "_deltaflow").iterdir())
    assert before == after
    np.testing.assert_array_equal(open_store(str(tmp_path / "app.zarr")).load().d2, app.d2)


def test_append_refuses_out_of_order_and_mismatched_pipelines(tmp_path):
    run_workflow(_append_file(tmp_path, 300, 200, "create", "app.zarr", "a1.yaml"), environ={})
    with pytest.raises(ConfigError, match="not after the stored end"):
        run_workflow(_append_file(tmp_path, 100, 0, "append", "app.zarr", "old.yaml"), environ={})
    with pytest.raises(ConfigError, match="not after the stored end"):
        run_workflow(_append_file(tmp_path, 100, 450, "append", "app.zarr", "ov.yaml"), environ={})
    other = _append_file(tmp_path, 100, 500, "append", "app.zarr", "b.yaml")
    with pytest.raises(ConfigError, match="an append must use the same pipeline"):
        run_workflow(other, environ={}, overrides=["steps[0].differentiate.accuracy=2"])
    with pytest.raises(ConfigError, match="no deltaflow store"):
        run_workflow(_append_file(tmp_path, 100, 500, "append", "none.zarr", "n.yaml"), environ={})


def test_append_refuses_steps_that_need_the_whole_dim(tmp_path):
    text = APPEND.replace("N,", "300,").replace("OFF,", "0,").replace("MODE", "create")
    text = text.replace("steps:\n", "steps:\n  - integrate: {var: temperature, dim: time}\n")
    run_workflow(write(tmp_path, text), environ={})
    text2 = text.replace("time_offset: 0", "time_offset: 300").replace(
        "mode: create", "mode: append"
    )
    with pytest.raises(ConfigError, match="needs the whole of dim 'time'"):
        run_workflow(write(tmp_path, text2, "b.yaml"), environ={})


def test_plot_after_run(tmp_path):
    text = SENSORS + f"plot: {{var: temperature, sel: {{sensor: 2}}, out: {tmp_path / 'p.png'}}}\n"
    s = run_workflow(write(tmp_path, text), environ={})
    assert s.plot and (tmp_path / "p.png").stat().st_size > 10_000
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_reports_grid_halos_tasks_and_memory(tmp_path):
    from deltaflow.workflow.runner import plan_workflow

    plan = plan_workflow(write(tmp_path, SENSORS), environ={}, threads_per_worker=2)
    assert plan["regions"] == 8 and plan["chunk_grid"] == {"sensor": 2, "time": 4}
    assert plan["halos"] == {"sensor": 0, "time": 2}
    assert plan["outputs"]["dT_dt"]["chunks"] == [3, 300] and plan["tasks"] > 8
    # 2 threads x 2 x (two outputs of 3x300 float64 + input widened by the halo 3x304)
    assert plan["memory_per_worker"] == 2 * 2 * (2 * 3 * 300 * 8 + 3 * 304 * 8)
    assert json.dumps(plan)


def test_run_on_a_distributed_client_matches_the_threaded_run(tmp_path):
    distributed = pytest.importorskip("distributed")
    p = write(tmp_path, SENSORS)
    run_workflow(p, environ={})
    ticks = []
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        s = run_workflow(
            p,
            environ={},
            client=client,
            overrides=[f"sink.path={tmp_path / 'dist.zarr'}"],
            progress=lambda done, total, key: ticks.append((done, total)),
        )
    assert s.complete and s.regions_written == 8 and ticks[-1] == (8, 8)
    a = open_store(str(tmp_path / "out.zarr")).load()
    b = open_store(str(tmp_path / "dist.zarr")).load()
    np.testing.assert_array_equal(a.dT_dt, b.dT_dt)


def test_an_interrupted_append_resumes_to_the_full_result(tmp_path, monkeypatch):
    import deltaflow.workflow.runner as runner_mod

    run_workflow(_append_file(tmp_path, 1000, 0, "create", "full.zarr", "full.yaml"), environ={})
    run_workflow(_append_file(tmp_path, 500, 0, "create", "app.zarr", "a1.yaml"), environ={})
    a2 = _append_file(tmp_path, 500, 500, "append", "app.zarr", "a2.yaml")
    real = runner_mod.record_region
    calls = []

    def failing(*args):
        calls.append(args[3])
        if len(calls) == 3:
            raise OSError("disk went away")
        return real(*args)

    monkeypatch.setattr(runner_mod, "record_region", failing)
    with pytest.raises(runner_mod.RunError, match="disk went away; finish it with --resume"):
        run_workflow(a2, environ={})
    monkeypatch.setattr(runner_mod, "record_region", real)
    with pytest.raises(IncompleteStoreError):
        open_store(str(tmp_path / "app.zarr"))
    with pytest.raises(ConfigError, match="is incomplete"):
        run_workflow(_append_file(tmp_path, 100, 1000, "append", "app.zarr", "a3.yaml"), environ={})
    s = run_workflow(a2, environ={}, resume=True)
    assert s.complete and 0 < s.regions_written < s.regions_total
    full = open_store(str(tmp_path / "full.zarr")).load()
    app = open_store(str(tmp_path / "app.zarr")).load()
    np.testing.assert_array_equal(app.time, full.time)
    np.testing.assert_array_equal(app.temperature, full.temperature)
    scale = float(np.abs(full.d3).max())
    np.testing.assert_allclose(app.d3, full.d3, rtol=0, atol=1e-9 * scale)


def test_fsspec_url_sink_and_source(tmp_path):
    url = f"memory://deltaflow-test/{tmp_path.name}/x.zarr"
    s = run_workflow(write(tmp_path, SENSORS.replace("STORE", url)), environ={})
    assert s.complete and s.path == url
    ds = open_store(url).load()
    assert ds.dT_dt.shape == (6, 1200) and ds.attrs["deltaflow_status"] == "complete"
    text = f"""\
    name: from-url
    source: {{kind: zarr, path: "{url}", variables: [dT_dt]}}
    steps:
      - expression: {{out: twice, expr: "2 * dT_dt"}}
    sink: {{path: STORE, variables: [twice]}}
    """
    run_workflow(write(tmp_path, text, "b.yaml"), environ={})
    np.testing.assert_array_equal(open_store(str(tmp_path / "out.zarr")).twice, 2 * ds.dT_dt)
