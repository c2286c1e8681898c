"""CuPy against NumPy for every method, and a Dask array of CuPy chunks through the engine.

Needs CuPy and an NVIDIA GPU: run with ``pytest -m gpu``. Without them every test here is
skipped (CI, most machines). The same kernels run under ``array_api_strict`` on the CPU in
``tests/test_array_api.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy")
try:
    if cp.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA device visible", allow_module_level=True)
except Exception as err:  # CUDA driver missing
    pytest.skip(f"no usable CUDA device: {err}", allow_module_level=True)

import deltaflow as dfl  # noqa: E402
from deltaflow.kernels import registered  # noqa: E402

GPU_METHODS = sorted(m for m, s in registered().items() if s.gpu)
CPU_ONLY = sorted(m for m, s in registered().items() if not s.gpu)


def _batch(n: int = 400, irregular: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Series with different noise levels, so per-series automatic choices differ."""
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 4.0, n)
    if irregular:
        h = x[1] - x[0]
        x[1:-1] += rng.uniform(-0.3 * h, 0.3 * h, n - 2)
    clean = np.sin(3 * x) + 0.5 * x**2
    levels = np.array([0.0, 1e-3, 1e-2, 5e-2, 1e-1])[:, None]
    return x, clean + levels * rng.standard_normal((levels.shape[0], n))


def _orders(method: str) -> list[int]:
    return [o for o in (1, 2) if o in dfl.get_method(method).orders]


@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
@pytest.mark.parametrize("method", GPU_METHODS)
def test_cupy_matches_numpy(method, irregular):
    spec = dfl.get_method(method)
    if irregular and not spec.irregular:
        pytest.skip(f"{method} needs uniform spacing")
    x, y = _batch(irregular=irregular)
    for order in _orders(method):
        ref = dfl.differentiate_array(y, x, method=method, order=order)
        got = dfl.differentiate_array(cp.asarray(y), x, method=method, order=order)
        assert isinstance(got, cp.ndarray), type(got)
        scale = np.max(np.abs(ref))
        np.testing.assert_allclose(
            cp.asnumpy(got), ref, rtol=1e-10, atol=1e-10 * scale, err_msg=f"order {order}"
        )


@pytest.mark.parametrize("method", GPU_METHODS)
def test_cupy_float32_and_smoothed(method):
    x, y = _batch()
    got = dfl.differentiate_array(cp.asarray(y, dtype=cp.float32), x, method=method)
    assert got.dtype == cp.float32
    ref = dfl.differentiate_array(y.astype(np.float32), x, method=method)
    np.testing.assert_allclose(cp.asnumpy(got), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    if dfl.get_method(method).has_smoothed:
        d, s = dfl.differentiate_array(cp.asarray(y), x, method=method, return_smoothed=True)
        assert isinstance(s, cp.ndarray)


@pytest.mark.parametrize("method", CPU_ONLY)
def test_cpu_only_method_refuses_cupy_by_name(method):
    """gpu=False: a clear error naming the method, not a crash or a silent host copy."""
    x, y = _batch()
    with pytest.raises((TypeError, ValueError), match=rf"{method}.*(NumPy|numpy|GPU|gpu)"):
        dfl.differentiate_array(cp.asarray(y), x, method=method)


@pytest.mark.parametrize("method", GPU_METHODS)
def test_dask_of_cupy_stays_on_the_device(method):
    """A Dask array of CuPy chunks, chunked along the dim, comes back as CuPy chunks."""
    da = pytest.importorskip("dask.array")
    xr = pytest.importorskip("xarray")
    x, y = _batch(n=600)
    ref = dfl.differentiate(
        xr.DataArray(y, dims=("s", "t"), coords={"t": x}), "t", method=method
    ).values
    lazy = da.from_array(cp.asarray(y), chunks=(2, 150), asarray=False)
    arr = xr.DataArray(lazy, dims=("s", "t"), coords={"t": x})
    out = dfl.differentiate(arr, "t", method=method)
    assert isinstance(out.data._meta, cp.ndarray), type(out.data._meta)
    blocks = out.data.compute(scheduler="synchronous")
    assert isinstance(blocks, cp.ndarray), type(blocks)
    np.testing.assert_allclose(cp.asnumpy(blocks), ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("finite_difference", {"accuracy": 8}),
        ("savgol", {"window": 201, "polyorder": 4}),
        ("savgol", {}),  # windows chosen per series: one launch per distinct window
    ],
)
@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
def test_wide_stencils_across_tiles_match_numpy(method, params, irregular):
    """Series longer than a kernel tile, wide stencils, both ends, several orders."""
    x, y = _batch(n=1500, irregular=irregular)
    y = np.concatenate([y, y[::-1] * 3.0])
    for order in (1, 2, 4) if method == "finite_difference" else (1, 2):
        ref = dfl.differentiate_array(y, x, method=method, order=order, **params)
        got = cp.asnumpy(
            dfl.differentiate_array(cp.asarray(y), x, method=method, order=order, **params)
        )
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def _labelled(n: int = 600):
    xr = pytest.importorskip("xarray")
    x, y = _batch(n=n)
    return xr.DataArray(y, dims=("s", "t"), coords={"t": x}, name="y", attrs={"units": "m"})


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_device_gpu_moves_host_data_and_keeps_results_there(chunked):
    arr = _labelled()
    ref = dfl.differentiate(arr, "t", method="savgol", order=2)
    src = arr.chunk({"s": 2, "t": 150}) if chunked else arr
    out = dfl.differentiate(src, "t", method="savgol", order=2, device="gpu")
    data = out.data._meta if chunked else out.data
    assert isinstance(data, cp.ndarray), type(data)
    got = out.data.compute() if chunked else out.data
    assert isinstance(got, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(got), ref.values, rtol=1e-10, atol=1e-10)
    back = dfl.differentiate(out, "t", method="finite_difference", device="cpu")
    assert isinstance(back.values, np.ndarray)


def test_integrate_and_smooth_on_the_gpu_match_the_cpu():
    arr = _labelled()
    for method in ("trapezoid", "simpson"):
        ref, ref_err = dfl.integrate(arr, "t", method=method, return_error=True)
        got, err = dfl.integrate(arr, "t", method=method, return_error=True, device="gpu")
        assert isinstance(got.data, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(got.data), ref.values, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cp.asnumpy(err.data), ref_err.values, rtol=1e-9, atol=1e-12)
    sm = dfl.smooth(arr.chunk({"t": 200}), "t", "savgol", device="gpu")
    np.testing.assert_allclose(
        cp.asnumpy(sm.data.compute()),
        dfl.smooth(arr, "t", "savgol").values,
        rtol=1e-10,
        atol=1e-10 * float(np.abs(arr).max()),
    )


def test_method_without_gpu_path_is_refused_before_any_work():
    lazy = _labelled().chunk({"t": 150})
    with pytest.raises(TypeError, match=r"variable 'y', dim 't': method 'spline' has no GPU"):
        dfl.differentiate(lazy, "t", method="spline", device="gpu")


WORKFLOW = """\
name: gpu-test
source: {kind: sensors, n_series: 6, n_samples: 1200, chunks: {sensor: 3, time: 300}}
steps:
  - differentiate: {var: temperature, dim: time, method: METHOD, out: dT_dt}
  - integrate: {var: dT_dt, dim: time, out: T_back}
sink: {path: STORE, mode: create}
device: DEVICE
"""


def _run(tmp_path, device: str, method: str = "savgol"):
    from deltaflow.workflow.runner import run_workflow

    p = tmp_path / f"{device}-{method}.yaml"
    store = tmp_path / f"{device}-{method}.zarr"
    text = WORKFLOW.replace("STORE", str(store)).replace("DEVICE", device)
    p.write_text(text.replace("METHOD", method))
    return run_workflow(p, environ={}), store


def test_workflow_on_the_gpu_writes_the_cpu_store(tmp_path):
    xr = pytest.importorskip("xarray")
    gpu, gpu_store = _run(tmp_path, "gpu")
    cpu, cpu_store = _run(tmp_path, "cpu")
    assert gpu.complete and cpu.complete
    a, b = xr.open_zarr(gpu_store), xr.open_zarr(cpu_store)
    for v in ("temperature", "dT_dt", "T_back"):
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-10, atol=1e-10)
    assert a.attrs["deltaflow_status"] == "complete"


def test_workflow_on_the_gpu_refuses_a_cpu_only_method_at_its_step(tmp_path):
    from deltaflow.workflow import ConfigError

    with pytest.raises(ConfigError, match=r"steps\[0\].*spline.*no GPU path"):
        _run(tmp_path, "gpu", method="spline")
    assert not (tmp_path / "gpu-spline.zarr").exists()


def test_nan_in_a_gpu_chunk_is_reported_with_its_global_index():
    arr = _labelled()
    y = arr.values.copy()
    y[3, 417] = np.nan
    lazy = arr.copy(data=y).chunk({"t": 150})
    out = dfl.differentiate(lazy, "t", method="finite_difference", device="gpu")
    with pytest.raises(ValueError, match=r"\(3, 417\)"):
        out.compute()


@pytest.mark.parametrize("method", CPU_ONLY)
def test_allow_host_runs_cpu_only_methods_on_gpu_data(method):
    x, y = _batch()
    ref = dfl.differentiate_array(y, x, method=method)
    got = dfl.differentiate_array(cp.asarray(y), x, method=method, allow_host=True)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(got), ref)


def test_allow_host_through_the_dask_engine_and_a_workflow(tmp_path):
    xr = pytest.importorskip("xarray")
    arr = _labelled()
    ref = dfl.differentiate(arr, "t", method="spline")
    lazy = arr.chunk({"s": 2, "t": 150})
    with pytest.warns(UserWarning, match="global"):
        out = dfl.differentiate(lazy, "t", method="spline", device="gpu", allow_host=True)
    assert isinstance(out.data._meta, cp.ndarray)
    got = out.data.compute()
    assert isinstance(got, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(got), ref.values, rtol=1e-12, atol=1e-12)
    from deltaflow.workflow.runner import run_workflow

    p = tmp_path / "wf.yaml"
    text = WORKFLOW.replace("STORE", str(tmp_path / "s.zarr")).replace("DEVICE", "gpu")
    p.write_text(text.replace("METHOD", "spline") + "allow_host: true\n")
    assert run_workflow(p, environ={}).complete
    cpu, cpu_store = _run(tmp_path, "cpu", method="spline")
    a, b = xr.open_zarr(tmp_path / "s.zarr"), xr.open_zarr(cpu_store)
    np.testing.assert_allclose(a.dT_dt.values, b.dT_dt.values, rtol=1e-12, atol=1e-12)


def test_choices_of_gpu_data_come_back_as_host_arrays():
    """Per-series choices are host data (NumPy meta) even when the derivative is on the GPU."""
    lazy = _labelled().chunk({"s": 2, "t": 150})
    d, ch = dfl.differentiate(lazy, "t", method="savgol", device="gpu", return_choices=True)
    assert isinstance(d.data._meta, cp.ndarray)
    assert isinstance(ch["window"].data._meta, np.ndarray)
    windows = ch["window"].values
    ref = dfl.differentiate(_labelled(), "t", method="savgol", return_choices=True)[1]
    np.testing.assert_array_equal(windows, ref["window"].values)


@pytest.mark.parametrize(
    "variant",
    [
        ("uniform", 2, False),
        ("uniform", 2, True),
        ("blocked", 3, False),
        ("blocked", 7, False),
        ("blocked", 3, True),
        ("blocked", 7, True),
        None,
    ],
    ids=lambda v: "default" if v is None else "-".join(map(str, v)),
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_kernel_variants_match_numpy(variant, dtype):
    """Every uniform kernel (and the default plan) on short and multi-tile rows, narrow to
    wide stencils, both ends: the NumPy stencil's result to rounding."""
    from deltaflow.kernels import _cuda
    from deltaflow.kernels import finite_difference as fdm
    from deltaflow.kernels import savgol as sgm
    from deltaflow.kernels._stencil import _apply_numpy

    rng = np.random.default_rng(7)
    for n in (40, 1000, 4500):
        x = np.linspace(0.0, 3.0, n)
        stencils = [fdm.build_stencil(x, 1, 2), fdm.build_stencil(x, 2, 8)]
        stencils += [sgm.build_stencil(x, w, 3, 1) for w in (21, 101) if w <= n]
        y = rng.standard_normal((5, n)).astype(dtype)
        for st in stencils:
            ref = _apply_numpy([st], None, y)
            got = cp.asnumpy(_cuda.apply([st], None, cp.asarray(y), variant=variant))
            tol = 1e-12 if dtype == np.float64 else 1e-5
            scale = np.abs(ref).max()
            np.testing.assert_allclose(
                got, ref, rtol=tol, atol=tol * scale, err_msg=f"n={n} w={st.center.size}"
            )


def test_a_stencil_too_wide_to_stage_runs_through_l1():
    x = np.linspace(0.0, 1.0, 4000)
    y = np.sin(7 * x)[None] * np.arange(1, 4)[:, None]
    ref = dfl.differentiate_array(y, x, method="savgol", window=3001, polyorder=3)
    got = dfl.differentiate_array(cp.asarray(y), x, method="savgol", window=3001, polyorder=3)
    np.testing.assert_allclose(cp.asnumpy(got), ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize(
    ("method", "params"),
    [("finite_difference", {}), ("savgol", {"window": 21}), ("savgol", {"window": 9})],
)
@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
def test_nan_found_by_the_kernels_names_its_position(method, params, irregular):
    """nan_policy='raise' on CuPy: the kernels flag the NaN as they write (no read pass
    before), the error names where it is; 'propagate' returns the CPU's NaN pattern;
    an inf that only makes NaN in the output (inf - inf) is not reported as NaN input."""
    x, y = _batch(irregular=irregular)
    bad = y.copy()
    bad[2, 123] = np.nan
    with pytest.raises(ValueError, match=r"\(2, 123\)"):
        dfl.differentiate_array(cp.asarray(bad), x, method=method, **params)
    ref = dfl.differentiate_array(bad, x, method=method, nan_policy="propagate", **params)
    got = dfl.differentiate_array(
        cp.asarray(bad), x, method=method, nan_policy="propagate", **params
    )
    np.testing.assert_array_equal(np.isnan(cp.asnumpy(got)), np.isnan(ref))
    inf = y.copy()
    inf[1, 200] = np.inf
    ref = dfl.differentiate_array(inf, x, method=method, **params)
    got = cp.asnumpy(dfl.differentiate_array(cp.asarray(inf), x, method=method, **params))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


def test_median_mad_kernel_equals_numpy():
    """Row medians and MADs from the shared-memory sort: odd and even lengths, ties,
    a row too long for it (cupy.median instead), NaN rows."""
    from deltaflow.kernels import _bandwidth_xp, _cuda

    rng = np.random.default_rng(3)
    for m in (1, 2, 3, 31, 64, 999, 1000, 4096, 5001):
        e = rng.standard_normal((7, m))
        e[1] = np.round(e[1])  # ties
        e[2, : m // 2] = 0.5
        e[4, m // 3] = np.nan
        med, mad = _bandwidth_xp._median_mad(cp.asarray(e), cp)
        ref = np.median(e, axis=1)
        ref_mad = np.median(np.abs(e - ref[:, None]), axis=1)
        np.testing.assert_array_equal(cp.asnumpy(med), ref, err_msg=f"m={m}")
        np.testing.assert_array_equal(cp.asnumpy(mad), ref_mad, err_msg=f"m={m}")
        if m <= _cuda.MEDIAN_MAX:
            got = _cuda.median_mad(cp.asarray(e))
            np.testing.assert_array_equal(cp.asnumpy(got[0]), ref)


@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
def test_savgol_windows_chosen_on_the_device_equal_the_hosts(irregular):
    """savgol's automatic windows for CuPy data come from the device (no host copy of the
    data) and equal the host's choice (but for rare rounding ties: the block fits sum in
    cuBLAS's order); where they agree, so does the derivative."""
    from deltaflow.kernels import savgol as sgm

    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 6.0, 1000)
    if irregular:
        h = x[1] - x[0]
        x[1:-1] += rng.uniform(-0.3 * h, 0.3 * h, 998)
    y = rng.uniform(0.5, 2, (300, 1)) * np.sin(rng.uniform(0.5, 3, (300, 1)) * x)
    y += rng.choice([1e-3, 1e-2, 5e-2], (300, 1)) * rng.standard_normal((300, 1000))
    from deltaflow.kernels import _bandwidth, _bandwidth_xp

    sigma = cp.asnumpy(_bandwidth_xp.noise_sigma(cp.asarray(y), x, cp))
    np.testing.assert_array_equal(sigma, _bandwidth.noise_sigma(y, x))  # the same sums
    for order in (1, 2):
        params = sgm.SavgolParams()
        ref = sgm._choose(y, x, order, params, np)["window"]
        got = sgm._choose(cp.asarray(y), x, order, params, cp)["window"]
        assert isinstance(got, np.ndarray)
        same = got == ref
        assert np.count_nonzero(~same) <= 3, f"windows differ on rows {np.flatnonzero(~same)}"
        d_ref = dfl.differentiate_array(y, x, method="savgol", order=order)
        d_got = dfl.differentiate_array(cp.asarray(y), x, method="savgol", order=order)
        np.testing.assert_allclose(cp.asnumpy(d_got)[same], d_ref[same], rtol=1e-10, atol=1e-10)
