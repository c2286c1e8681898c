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
