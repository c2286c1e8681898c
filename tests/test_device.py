"""The ``device`` option without a GPU: validation, host moves, and the clear refusals.

What needs CuPy and a CUDA device is in ``tests/test_gpu.py`` (``-m gpu``).
"""

from __future__ import annotations

import textwrap

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import deltaflow as dfl
from deltaflow._device import check_method_device, cupy_module, move_data, to_device
from deltaflow.workflow import ConfigError
from deltaflow.workflow.runner import validate_workflow


def _gpu_usable() -> bool:
    try:
        cupy_module()
    except RuntimeError:
        return False
    return True


NO_GPU = pytest.mark.skipif(_gpu_usable(), reason="a CUDA device is usable here")


def _series() -> xr.DataArray:
    t = np.linspace(0.0, 3.0, 300)
    rng = np.random.default_rng(1)
    y = np.sin(2 * t)[None, :] + 0.01 * rng.standard_normal((4, 300))
    return xr.DataArray(y, dims=("s", "t"), coords={"t": t}, name="y")


@pytest.mark.parametrize("method", ["finite_difference", "savgol", "spline"])
def test_device_cpu_equals_no_device_and_stays_lazy(method):
    arr = _series()
    ref = dfl.differentiate(arr, "t", method=method)
    np.testing.assert_array_equal(dfl.differentiate(arr, "t", method=method, device="cpu"), ref)
    lazy = arr.chunk({"t": 100})
    out = dfl.differentiate(lazy, "t", method=method, device="cpu")
    assert isinstance(out.data, da.Array) and isinstance(out.data._meta, np.ndarray)
    np.testing.assert_allclose(out.values, ref.values, rtol=1e-12, atol=1e-12)


def test_integrate_and_smooth_take_device():
    arr = _series()
    np.testing.assert_array_equal(
        dfl.integrate(arr, "t", method="simpson", device="cpu"),
        dfl.integrate(arr, "t", method="simpson"),
    )
    np.testing.assert_array_equal(
        dfl.smooth(arr, "t", "savgol", device="cpu"), dfl.smooth(arr, "t", "savgol")
    )


@pytest.mark.parametrize("bad", ["tpu", "GPU", 1])
def test_bad_device_is_named_with_the_allowed_values(bad):
    with pytest.raises(ValueError, match=r"device: must be 'cpu', 'gpu' or None.*got"):
        dfl.differentiate(_series(), "t", device=bad)
    with pytest.raises(ValueError, match=r"device: must be"):
        dfl.differentiate_array(np.ones(10), device=bad)
    with pytest.raises(ValueError, match=r"device: must be"):
        dfl.integrate(_series(), "t", device=bad)


@NO_GPU
def test_gpu_without_cupy_or_device_says_why():
    with pytest.raises(RuntimeError, match=r"device 'gpu'.*(CuPy|CUDA)"):
        dfl.differentiate(_series(), "t", device="gpu")
    with pytest.raises(RuntimeError, match=r"device 'gpu'"):
        dfl.differentiate_array(np.ones(10), device="gpu")


def test_methods_without_a_gpu_path_refuse_device_arrays_by_name():
    xps = pytest.importorskip("array_api_strict")
    y = xps.asarray(np.ones((2, 50)))
    spec = dfl.get_method("spline")
    with pytest.raises(TypeError, match=r"variable 'y', dim 't': method 'spline' has no GPU"):
        check_method_device(spec, y, "variable 'y', dim 't'")
    check_method_device(dfl.get_method("finite_difference"), y, "here")  # gpu=True: fine
    check_method_device(spec, np.ones(3), "here")  # host data: fine


def test_move_data_moves_numeric_variables_only():
    ds = xr.Dataset(
        {"a": ("t", np.arange(3.0)), "name": ("t", np.array(["x", "y", "z"]))},
        coords={"t": [0, 1, 2]},
    )
    assert move_data(ds, None) is ds
    out = move_data(ds.chunk(), "cpu")
    assert isinstance(out.a.data, da.Array) and out.name.dtype.kind == "U"
    assert to_device(np.ones(2), None) is not None


WORKFLOW = """\
name: device-test
source: {kind: sensors, n_series: 4, n_samples: 400, chunks: {sensor: 2, time: 100}}
steps:
  - differentiate: {var: temperature, dim: time, method: finite_difference, out: dT_dt}
sink: {path: STORE, mode: create}
device: DEVICE
"""


def _workflow(tmp_path, device: str):
    p = tmp_path / "wf.yaml"
    text = WORKFLOW.replace("STORE", str(tmp_path / "out.zarr")).replace("DEVICE", device)
    p.write_text(textwrap.dedent(text))
    return p


def test_workflow_device_must_be_cpu_or_gpu(tmp_path):
    with pytest.raises(ConfigError, match=r"device.*'cpu' or 'gpu'"):
        validate_workflow(_workflow(tmp_path, "tpu"), environ={})
    validate_workflow(_workflow(tmp_path, "cpu"), environ={})


@NO_GPU
def test_workflow_on_gpu_without_one_fails_validation_at_the_device_key(tmp_path):
    with pytest.raises(ConfigError, match=r"device: device 'gpu'.*(CuPy|CUDA)") as info:
        validate_workflow(_workflow(tmp_path, "gpu"), environ={})
    assert "wf.yaml" in str(info.value)
    assert not (tmp_path / "out.zarr").exists()


def test_workflow_hash_ignores_device_like_cluster(tmp_path):
    from deltaflow.workflow import load_workflow

    cpu = load_workflow(_workflow(tmp_path, "cpu"), environ={})
    (tmp_path / "wf.yaml").write_text(
        (tmp_path / "wf.yaml").read_text().replace("device: cpu\n", "")
    )
    plain = load_workflow(tmp_path / "wf.yaml", environ={})
    gpu = load_workflow(tmp_path / "wf.yaml", overrides=["device=gpu"], environ={})
    assert gpu.config.device == "gpu" and plain.config.device == "cpu"
    assert cpu.sha256 == plain.sha256 == gpu.sha256


# ------------------------------------------------------------------ allow_host (array API)
# array_api_strict stands in for a GPU namespace here: a method without a GPU path refuses
# its arrays, or with allow_host runs on a host copy and hands back the same namespace


@pytest.mark.parametrize("method", ["spline", "kalman", "auto"])
def test_allow_host_runs_cpu_only_methods_on_a_host_copy(method):
    xps = pytest.importorskip("array_api_strict")
    arr = _series()
    x, y = arr.t.values, arr.values
    with pytest.raises(TypeError, match=rf"method '{method}'.*allow_host=True"):
        dfl.differentiate_array(xps.asarray(y), x, method=method)
    got = dfl.differentiate_array(xps.asarray(y), x, method=method, allow_host=True)
    assert isinstance(got, type(xps.asarray(y)))
    np.testing.assert_array_equal(np.asarray(got), dfl.differentiate_array(y, x, method=method))
    # decreasing x and the smoothed signal come back too
    d, s = dfl.differentiate_array(
        xps.asarray(y[:, ::-1]), x[::-1], method="spline", allow_host=True, return_smoothed=True
    )
    ref_d, ref_s = dfl.differentiate_array(
        y[:, ::-1], x[::-1], method="spline", return_smoothed=True
    )
    np.testing.assert_array_equal(np.asarray(d), ref_d)
    np.testing.assert_array_equal(np.asarray(s), ref_s)


def test_engine_segments_with_allow_host_return_the_input_namespace():
    """The Dask engine's segment and choice functions, on a block of array-API data."""
    xps = pytest.importorskip("array_api_strict")
    from deltaflow.engine import _choose_segment, _segment

    arr = _series()
    x, y = arr.t.values, arr.values
    spec = dfl.get_method("spline")
    params = spec.make_params({})
    keys = ("smoothing",)
    chosen = _choose_segment(spec, 1, params, keys, xps.asarray(y), x, [])
    assert all(isinstance(c, np.ndarray) for c in chosen)  # choices stay on the host
    out = _segment(spec, 1, params, False, keys, False, True, xps.asarray(y), x, list(chosen))
    assert isinstance(out[0], type(xps.asarray(y)))
    np.testing.assert_array_equal(
        np.asarray(out[0]), dfl.differentiate_array(y, x, method="spline")
    )
    with pytest.raises(TypeError, match="allow_host"):
        _segment(spec, 1, params, False, keys, False, False, xps.asarray(y), x, list(chosen))
    # decreasing coordinates: the choice pass flips its host copy
    back = _choose_segment(spec, 1, params, keys, xps.asarray(y[:, ::-1]), x[::-1].copy(), [])
    np.testing.assert_array_equal(back[0], chosen[0])


def test_check_method_device_lets_allow_host_through():
    xps = pytest.importorskip("array_api_strict")
    check_method_device(dfl.get_method("tvr"), xps.asarray(np.ones(4)), "here", allow_host=True)
    with pytest.raises(TypeError, match="allow_host=True"):
        check_method_device(dfl.get_method("tvr"), xps.asarray(np.ones(4)), "here")


def test_workflow_allow_host_is_a_boolean_and_leaves_the_hash(tmp_path):
    from deltaflow.workflow import load_workflow

    path = _workflow(tmp_path, "cpu")
    base = load_workflow(path, environ={})
    on = load_workflow(path, overrides=["allow_host=true"], environ={})
    assert on.config.allow_host is True and base.config.allow_host is False
    assert on.sha256 == base.sha256
    with pytest.raises(ConfigError, match="allow_host"):
        load_workflow(path, overrides=["allow_host=maybe"], environ={})


def test_cuda_launch_plan_for_uniform_stencils():
    """Which CUDA kernel a uniform stencil gets (pure arithmetic, no GPU needed): the L1
    kernel below BLOCKED_FROM taps and for stencils too wide to stage in shared memory,
    the register-blocked kernel between, with a row in as few blocks as fit."""
    from deltaflow.kernels import _cuda

    kind, threads, per, smem = _cuda.uniform_plan(3, 1000, 8)
    assert kind == ("uniform", _cuda.OUTPUTS, False) and smem == 0
    w = _cuda.BLOCKED_FROM
    kind, threads, per, smem = _cuda.uniform_plan(w, 1000, 8)
    assert kind == ("blocked", _cuda.BLOCK_R, _cuda.BLOCK_GROUP)
    assert per >= 1000 and threads % 32 == 0 and threads * _cuda.BLOCK_R == per
    assert smem == 8 * w + (2 * per + w) * 8
    kind, threads, per, smem = _cuda.uniform_plan(101, 100_000, 4)
    assert threads == 256 and per == 256 * _cuda.BLOCK_R
    kind, _, _, smem = _cuda.uniform_plan(3001, 4000, 8)
    assert kind == ("uniform", _cuda.OUTPUTS, False) and smem == 0
    kind, _, _, smem = _cuda.uniform_plan(51, 1000, 8, ("uniform", 4, True))
    assert kind == ("uniform", 4, True) and smem == (256 * 4 + 50) * 8
