"""``source.time_range``: half-open windows along a time dim, for every source kind, and
scheduled appends of consecutive windows that equal one run over all the data."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from deltaflow.cli import app
from deltaflow.io import open_store
from deltaflow.workflow import ConfigError
from deltaflow.workflow.runner import run_workflow, validate_workflow
from deltaflow.workflow.sources import SOURCES, SensorsSource

STEPS = """\
steps:
  - differentiate: {var: VAR, dim: time, method: finite_difference, order: 2, accuracy: 4,
                    out: d2}
  - differentiate: {var: d2, dim: time, method: finite_difference, order: 1, accuracy: 2,
                    out: d3}
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def assert_same_result(got: xr.Dataset, want: xr.Dataset, variables: tuple[str, ...]) -> None:
    assert got.sizes == want.sizes
    np.testing.assert_array_equal(got.time.values, want.time.values)
    for v in variables:
        scale = float(np.abs(want[v]).max())
        np.testing.assert_allclose(got[v].values, want[v].values, rtol=0, atol=1e-9 * scale)


# --------------------------------------------------------------------------- sources


def test_sensor_time_range_equals_the_offset_window():
    by_index = SensorsSource(
        n_series=3, n_samples=300, time_offset=100, chunks={"sensor": 3, "time": 64}
    ).open_window()
    by_time = SensorsSource(
        n_series=3, time_range=[1.0, 4.0], chunks={"sensor": 3, "time": 64}
    ).open_window()
    assert by_time.sizes["time"] == 300
    np.testing.assert_array_equal(by_time.time.values, by_index.time.values)
    np.testing.assert_array_equal(by_time.temperature.values, by_index.temperature.values)


@pytest.mark.parametrize("dt", [0.01, 0.1, 1 / 3, 0.07, 1.0])
def test_consecutive_sensor_windows_neither_repeat_nor_drop_a_sample(dt):
    n = 1000
    full = SensorsSource(n_series=2, n_samples=n, dt=dt).open_window()
    t = full.time.values
    rng = np.random.default_rng(int(dt * 1000))
    # seams on samples, between samples and at float values that round to a sample
    cuts = sorted({float(t[0]), *map(float, t[rng.integers(1, n - 1, 4)])})
    cuts += sorted(float(x) for x in rng.uniform(t[1], t[-2], 4))
    cuts = sorted(set(cuts + [float(t[400]) + 1e-12, float(t[600]) * (1 - 1e-16)]))
    cuts.append(float(t[-1]) + dt / 2)
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        win = SensorsSource(n_series=2, time_range=[a, b], dt=dt)
        try:
            i0, m = win.window()
        except ValueError:
            continue  # a window between two samples holds none
        want = (t >= a) & (t < b)
        assert m == want.sum() and i0 == int(np.argmax(want))
        parts.append(win.open_window())
    joined = xr.concat(parts, dim="time")
    np.testing.assert_array_equal(joined.time.values, t)
    np.testing.assert_array_equal(joined.temperature.values, full.temperature.values)


def test_every_source_kind_takes_time_range():
    assert all("time_range" in cls.model_fields for cls in SOURCES.values())


def _table(tmp_path: Path) -> Path:
    times = pd.date_range("2026-01-01", periods=48, freq="h")
    rows = [
        {"sensor": s, "time": t, "value": float(s * 100 + i)}
        for s in range(2)
        for i, t in enumerate(times)
    ]
    path = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_table_source_with_datetimes_and_a_timezone(tmp_path):
    cls = SOURCES["csv"]
    src = cls(
        path=str(_table(tmp_path)),
        dims=["sensor", "time"],
        parse_dates=["time"],
        time_range=["2026-01-01T10:00:00+01:00", "2026-01-01T12:00:00Z"],
    )
    assert src.time_range == ("2026-01-01T09:00:00", "2026-01-01T12:00:00")
    ds = src.open_window()
    assert list(ds.time.dt.hour.values) == [9, 10, 11]  # 12:00 is the next window's
    assert list(ds.value.sel(sensor=1).values) == [109.0, 110.0, 111.0]


def _mask_of(ds: xr.Dataset, dim: str, a, b) -> xr.Dataset:
    t = ds[dim].values
    return ds.isel({dim: np.flatnonzero((t >= a) & (t < b))})


@pytest.mark.parametrize(
    ("kind", "settings", "dim", "window"),
    [
        ("trajectories", {"system": "decay", "n_systems": 2, "n_samples": 200}, "time", (0.1, 0.2)),
        ("gbm", {"n_paths": 3, "n_samples": 253}, "time", (1.0, 4.5)),
        ("black_scholes", {}, "time", (0.5, 1.0)),
        ("function", {"function": "sphere"}, "x", (-1.0, 0.5)),
    ],
)
def test_generated_sources_cut_like_a_mask(kind, settings, dim, window):
    cls = SOURCES[kind]
    whole = cls(**settings).open_window().load()
    cut = cls(**settings, time_range=list(window), time_dim=dim).open_window()
    want = _mask_of(whole, dim, *window)
    assert 0 < cut.sizes[dim] < whole.sizes[dim]
    xr.testing.assert_identical(cut.load(), want)


@pytest.mark.parametrize("kind", ["netcdf", "parquet"])
def test_file_sources_cut_lazily(tmp_path, kind):
    t = np.arange(0.0, 50.0, 0.25)
    ds = xr.Dataset(
        {"v": (("s", "time"), np.outer([1.0, 2.0], np.cos(t)))}, coords={"s": [0, 1], "time": t}
    )
    if kind == "netcdf":
        path = tmp_path / "x.nc"
        ds.to_netcdf(path)
        src = SOURCES["netcdf"](path=str(path), chunks={"time": 40}, time_range=[10, 20.25])
    else:
        path = tmp_path / "x.parquet"
        ds.to_dataframe().reset_index().to_parquet(path)
        src = SOURCES["parquet"](path=str(path), dims=["s", "time"], time_range=[10, 20.25])
    cut = src.open_window()
    assert cut.v.chunks is not None  # still lazy
    np.testing.assert_array_equal(cut.time.values, t[(t >= 10) & (t < 20.25)])
    np.testing.assert_array_equal(cut.v.values, _mask_of(ds, "time", 10, 20.25).v.values)


# --------------------------------------------------------------------------- errors


def _input_store(tmp_path: Path, n: int = 720) -> Path:
    """A plain Zarr store: 3 series sampled each minute from 2026-01-01 (chunks of 100)."""
    t = pd.date_range("2026-01-01", periods=n, freq="min").to_numpy()
    x = np.arange(n) / 60.0
    y = np.sin(np.outer([0.3, 0.7, 1.1], x)) + np.outer([1.0, 2.0, 3.0], x**2) / 50
    ds = xr.Dataset({"y": (("series", "time"), y)}, coords={"series": [0, 1, 2], "time": t})
    path = tmp_path / "input.zarr"
    ds.chunk({"time": 100}).to_zarr(path, zarr_format=3, consolidated=False)
    return path


ZARR = """\
name: zarr-window
source: {kind: zarr, path: INPUT}
STEPS
sink: {path: STORE, mode: MODE, append_dim: time, chunks: {time: 64}}
"""


def _zarr_wf(tmp_path: Path, store: str, mode: str, name: str) -> Path:
    text = (
        ZARR.replace("STEPS\n", STEPS.replace("VAR", "y"))
        .replace("INPUT", str(tmp_path / "input.zarr"))
        .replace("STORE", str(tmp_path / store))
        .replace("MODE", mode)
    )
    return write(tmp_path, text, name)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[2026-01-01T02:00:00, abc]", "source.time_range: end: got 'abc', which is neither"),
        ("[2026-01-01T02:00:00, 2026-01-01T01:00:00]", "source.time_range: start must be before"),
        ("[2026-01-01T03:00:00, 2026-01-01T03:00:00]", "source.time_range: start must be before"),
        ("[2026-01-02T00:00:00, 2026-01-03T00:00:00]", "source.time_range: [2026-01-02T00:00"),
        ("[60, 120]", "source.time_range: 'time' holds datetimes; give ISO datetimes like"),
        ("[1, 2026-01-01]", "must both be numbers or both be datetimes"),
        ("[1]", "source.time_range: expected [start, end]"),
    ],
)
def test_time_range_errors_name_the_key_and_the_problem(tmp_path, value, message):
    _input_store(tmp_path)
    wf = _zarr_wf(tmp_path, "out.zarr", "create", "wf.yaml")
    with pytest.raises(ConfigError) as info:
        validate_workflow(wf, overrides=[f"source.time_range={value}"], environ={})
    assert message in str(info.value)
    assert not (tmp_path / "out.zarr").exists()


def test_time_range_on_a_missing_dim_or_with_time_offset(tmp_path):
    _input_store(tmp_path)
    wf = _zarr_wf(tmp_path, "out.zarr", "create", "wf.yaml")
    over = ["source.time_range=[2026-01-01, 2026-01-02]", "source.time_dim=day"]
    with pytest.raises(ConfigError, match=r"source.time_dim: no dim 'day' in the source"):
        validate_workflow(wf, overrides=over, environ={})
    sensors = write(
        tmp_path,
        """\
        name: s
        source: {kind: sensors, n_series: 2, n_samples: 100, time_offset: 5}
        steps: []
        sink: {path: out.zarr}
        """,
        "s.yaml",
    )
    with pytest.raises(ConfigError, match="time_range conflicts with n_samples, time_offset"):
        validate_workflow(sensors, overrides=["source.time_range=[0, 10]"], environ={})
    with pytest.raises(ConfigError, match=r"source.time_range: \[0.001, 0.002\) selects no sample"):
        validate_workflow(
            sensors,
            overrides=["source.time_range=[0.001, 0.002]", "source.n_samples=null"],
            environ={"DELTAFLOW__SOURCE__TIME_OFFSET": "null"},
        )


# --------------------------------------------------------------------------- appends


def test_zarr_source_appended_in_two_windows_equals_one_full_run(tmp_path):
    _input_store(tmp_path)
    run_workflow(_zarr_wf(tmp_path, "full.zarr", "create", "full.yaml"), environ={})
    first = ["source.time_range=[2026-01-01T00:00:00, 2026-01-01T05:17:00]"]
    second = ["source.time_range=[2026-01-01T05:17:00, 2026-01-01T12:00:00]"]
    run_workflow(_zarr_wf(tmp_path, "app.zarr", "create", "a.yaml"), overrides=first, environ={})
    wf = _zarr_wf(tmp_path, "app.zarr", "append", "b.yaml")
    s = run_workflow(wf, overrides=second, environ={})
    assert s.mode == "append" and s.complete
    full = open_store(str(tmp_path / "full.zarr")).load()
    app = open_store(str(tmp_path / "app.zarr")).load()
    assert app.sizes["time"] == 720 and app.attrs["source"]["time_range"][0].startswith("2026")
    assert_same_result(app, full, ("y", "d2", "d3"))
    # the same window again is refused (an error, not a no-op) and the store is unchanged
    with pytest.raises(ConfigError, match=r"re-running the same window\) are refused"):
        run_workflow(wf, overrides=second, environ={})
    assert open_store(str(tmp_path / "app.zarr")).load().identical(app)


SENSORS = """\
name: sensor-window
source: {kind: sensors, n_series: 4, time_range: [0, 3.9], chunks: {sensor: 2, time: 128}}
STEPS
sink: {path: STORE, mode: MODE, append_dim: time, chunks: {time: 128}}
"""


def _sensor_wf(tmp_path: Path, store: str, mode: str, name: str) -> Path:
    text = (
        SENSORS.replace("STEPS\n", STEPS.replace("VAR", "temperature"))
        .replace("STORE", str(tmp_path / store))
        .replace("MODE", mode)
    )
    return write(tmp_path, text, name)


def test_sensor_windows_appended_from_the_command_line_equal_one_full_run(tmp_path):
    full = _sensor_wf(tmp_path, "full.zarr", "create", "full.yaml")
    run_workflow(full, overrides=["source.time_range=[0, 10]"], environ={})
    run_workflow(_sensor_wf(tmp_path, "app.zarr", "create", "a.yaml"), environ={})  # [0, 3.9)
    wf = _sensor_wf(tmp_path, "app.zarr", "append", "b.yaml")
    cli = CliRunner()
    for window in ("[3.9,7.255]", "[7.255, 10]"):  # seams between and on samples
        res = cli.invoke(app, ["run", str(wf), "--set", f"source.time_range={window}"])
        assert res.exit_code == 0, res.output
    again = cli.invoke(app, ["run", str(wf), "--set", "source.time_range=[7.255, 10]"])
    assert again.exit_code == 2 and "not after the stored end" in again.output
    overlap = cli.invoke(app, ["run", str(wf), "--set", "source.time_range=[9, 12]"])
    assert overlap.exit_code == 2 and "overlapping or out-of-order" in overlap.output
    got = open_store(str(tmp_path / "app.zarr")).load()
    want = open_store(str(tmp_path / "full.zarr")).load()
    assert want.sizes["time"] == 1000
    assert_same_result(got, want, ("temperature", "d2", "d3"))


def test_a_skipped_window_is_refused_and_covered_by_starting_at_the_stored_end(tmp_path):
    wf = _sensor_wf(tmp_path, "app.zarr", "create", "a.yaml")
    run_workflow(wf, overrides=["source.time_range=[0, 2]"], environ={})
    app = _sensor_wf(tmp_path, "app.zarr", "append", "b.yaml")
    with pytest.raises(ConfigError) as info:
        run_workflow(app, overrides=["source.time_range=[3, 4]"], environ={})
    msg = str(info.value)
    assert "source.time_range: append: the window starts at 3.0, but the store's last" in msg
    assert "[2.0, 3.0) would never be written" in msg
    run_workflow(app, overrides=["source.time_range=[2, 4]"], environ={})
    state = json.loads((tmp_path / "app.zarr" / "_deltaflow" / "state.json").read_text())
    assert state["window_end"] == 4.0
    assert [h["time_range"] for h in state["history"]] == [[0.0, 2.0], [2.0, 4.0]]
    assert open_store(str(tmp_path / "app.zarr")).sizes["time"] == 400
