"""finite_difference: convergence order, ends, irregular grids, errors."""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl

from truths import TRUTHS


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("accuracy", [2, 4, 6])
def test_convergence_slope_matches_accuracy(order, accuracy, irregular):
    """Max error (ends included) falls like h**accuracy (at least)."""
    t = TRUTHS["sin"]
    ns = np.array([21, 41, 81])
    errs = []
    for n in ns:
        x = t.grid(int(n), irregular=irregular, seed=3)
        d = dfl.differentiate_array(t(x), x, order=order, accuracy=accuracy)
        errs.append(np.max(np.abs(d - t(x, order))))
    slope = -np.polyfit(np.log(ns - 1), np.log(errs), 1)[0]
    # jittered grids differ per n, so their observed slope scatters more
    assert slope > accuracy - (1.0 if irregular else 0.6), (errs, slope)


@pytest.mark.parametrize("accuracy", [2, 4, 6, 8])
def test_exact_on_polynomials_including_ends(accuracy):
    """A stencil of accuracy a is exact for polynomials of degree <= a (order 1)."""
    x = np.linspace(-1, 1, 30)
    y = x**accuracy
    d = dfl.differentiate_array(y, x, order=1, accuracy=accuracy)
    np.testing.assert_allclose(d, accuracy * x ** (accuracy - 1), atol=1e-8)


def test_matches_numpy_gradient_second_order_interior_and_edges():
    x = np.linspace(0, 3, 50)
    y = np.exp(x)
    d = dfl.differentiate_array(y, x)
    np.testing.assert_allclose(d, np.gradient(y, x, edge_order=2), rtol=1e-12)


def test_axis_batch_and_float32():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 40, 5))
    x = np.cumsum(rng.uniform(0.5, 1.5, 40))
    d = dfl.differentiate_array(y, x, axis=1, accuracy=4)
    for i in range(3):
        for j in range(5):
            np.testing.assert_allclose(
                d[i, :, j], dfl.differentiate_array(y[i, :, j], x, accuracy=4), rtol=1e-12
            )
    d32 = dfl.differentiate_array(y.astype(np.float32), x, axis=1, accuracy=4)
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, d, rtol=1e-3, atol=1e-3)


def test_decreasing_coordinate_gives_same_derivative():
    x = np.linspace(0, 2, 25)
    y = x**3
    d_inc = dfl.differentiate_array(y, x, accuracy=4)
    d_dec = dfl.differentiate_array(y[::-1], x[::-1], accuracy=4)
    np.testing.assert_allclose(d_dec[::-1], d_inc, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accuracy": 3}, "accuracy"),
        ({"order": 5}, "order must be in 1..4, got 5"),
        ({"bogus": 1}, "bogus: unknown parameter"),
        ({"method": "nope"}, "unknown method 'nope'"),
        ({"x": np.r_[0.0, 1.0, 1.0, 2.0, 3.0, 4.0]}, "duplicate at position 2"),
        ({"x": np.r_[0.0, 1.0, 3.0, 2.0, 4.0, 5.0]}, "not strictly monotonic at position 3"),
        ({"x": np.r_[0.0, 1.0, np.nan, 3.0, 4.0, 5.0]}, "non-finite value(s); first at position 2"),
        ({"x": np.arange(5.0)}, "coordinate has 5 values but the data has 6"),
    ],
)
def test_invalid_input_messages(kwargs, message):
    y = np.arange(6.0) ** 2
    with pytest.raises(ValueError) as err:
        dfl.differentiate_array(y, **kwargs)
    assert message in str(err.value)


def test_too_few_samples_and_dtype_errors():
    with pytest.raises(ValueError, match="needs at least 7 samples for order 2, got 4"):
        dfl.differentiate_array(np.arange(4.0), order=2, accuracy=4)
    with pytest.raises(TypeError, match="data must be real numeric"):
        dfl.differentiate_array(np.array(["a", "b", "c"]))
    np.testing.assert_allclose(dfl.differentiate_array(np.arange(5) * 2), 2.0)


def test_nan_policies():
    y = np.sin(np.linspace(0, 1, 20))[None].repeat(3, 0)
    y[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN\(s\), at index \(1, 7\)"):
        dfl.differentiate_array(y)
    with pytest.raises(ValueError, match="nan_policy='omit' is not supported"):
        dfl.differentiate_array(y, nan_policy="omit")
    d = dfl.differentiate_array(y, nan_policy="propagate")
    assert np.isnan(d[1, 6:9]).all() and np.isfinite(d[[0, 2]]).all()
    assert np.isfinite(np.delete(d[1], [6, 7, 8])).all()


def test_array_api_strict_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(2)
    y = rng.standard_normal((4, 30))
    for x in (np.linspace(0, 1, 30), np.sort(rng.uniform(0, 1, 30))):
        ref = dfl.differentiate_array(y, x, order=2, accuracy=4)
        got = dfl.differentiate_array(xps.asarray(y), x, order=2, accuracy=4)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-10)


def test_stencils_are_kept_per_grid_and_read_only():
    from deltaflow.kernels import _stencil
    from deltaflow.kernels import finite_difference as fdm
    from deltaflow.kernels import savgol as sgm

    x = np.linspace(0.0, 2.0, 300)
    a = fdm.build_stencil(x, 1, 4)
    assert fdm.build_stencil(x.copy(), 1, 4) is a  # same grid, same object
    assert fdm.build_stencil(x + 5.0, 1, 4) is a  # uniform: the spacing alone matters
    assert fdm.build_stencil(x, 2, 4) is not a and fdm.build_stencil(x * 2, 1, 4) is not a
    with pytest.raises(ValueError, match="read-only"):
        a.center[0] = 1.0
    rng = np.random.default_rng(3)
    xi = np.sort(rng.uniform(0.0, 2.0, 300))
    b = sgm.build_stencil(xi, 11, 3, 1)
    assert sgm.build_stencil(xi.copy(), 11, 3, 1) is b
    xj = xi.copy()
    xj[150] += 1e-9  # any change in an irregular grid is another stencil
    assert sgm.build_stencil(xj, 11, 3, 1) is not b
    assert _stencil._CACHE_USED[0] <= _stencil.CACHE_BYTES
    y = np.sin(3 * xi)[None]
    np.testing.assert_array_equal(
        dfl.differentiate_array(y, xi, method="savgol", window=11),
        _stencil._apply_numpy([sgm._build_stencil(xi, 11, 3, 1)], None, y),
    )


def test_stencil_cache_stays_within_its_bound(monkeypatch):
    from deltaflow.kernels import _stencil
    from deltaflow.kernels import finite_difference as fdm

    monkeypatch.setattr(_stencil, "CACHE_BYTES", 4096)
    for n in range(20, 60):
        fdm.build_stencil(np.linspace(0.0, 1.0, n), 1, 8)
        assert _stencil._CACHE_USED[0] <= 4096


def test_nan_check_happens_in_the_kernel_not_in_a_separate_pass(monkeypatch):
    """finite_difference and savgol (a given or an automatic window) find NaN as they write
    (no extra read of the data); the error still names the position, in memory and in Dask
    blocks."""
    import xarray as xr

    import deltaflow._blocks as blocks
    import deltaflow.kernels.api as api

    calls = []
    real_any, real_block = api.any_nan, blocks.raise_on_nan
    monkeypatch.setattr(api, "any_nan", lambda y: calls.append("array") or real_any(y))
    monkeypatch.setattr(
        blocks, "raise_on_nan", lambda *a, **k: calls.append("block") or real_block(*a, **k)
    )
    x = np.linspace(0.0, 1.0, 600)
    y = np.sin(3 * x)[None].repeat(5, 0)
    arr = xr.DataArray(y, dims=("s", "t"), coords={"t": x}, name="v")
    methods = ({"method": "finite_difference"}, {"method": "savgol", "window": 11})
    for kw in (*methods, {"method": "savgol"}):
        dfl.differentiate_array(y, x, **kw)
        dfl.differentiate(arr, "t", **kw)
        dfl.differentiate(arr.chunk({"t": 150}), "t", **kw).compute()
    assert calls == []  # clean data: no separate NaN pass anywhere
    bad = y.copy()
    bad[3, 417] = np.nan
    with pytest.raises(ValueError, match=r"y: data has 1 NaN\(s\), at index \(3, 417\)"):
        dfl.differentiate_array(bad, x)
    with pytest.raises(ValueError, match=r"variable 'v', dim 't': .*index \(3, 417\)"):
        dfl.differentiate(arr.copy(data=bad), "t", method="savgol", window=11)
    lazy = dfl.differentiate(arr.copy(data=bad).chunk({"t": 418}), "t")
    with pytest.raises(ValueError, match=r"in the block at \(0, 0\), first at index \(3, 417\)"):
        lazy.data.blocks[0, 0].compute()
    with pytest.raises(ValueError, match=r"halo of the block at \(0, 418\).*\(3, 417\)"):
        lazy.data.blocks[0, 1].compute()  # only the neighbour's halo sample is NaN
    inf = y.copy()
    inf[1, 5] = np.inf  # inf - inf makes NaN outputs, but the data has no NaN: no error
    assert np.isnan(dfl.differentiate_array(inf, x)).any()


def test_kernels_check_nan_only_when_their_caller_defers_to_them():
    """auto's candidates run finite_difference and savgol with default (raise) parameters:
    they must not raise on NaN that auto's own nan_policy lets through."""
    import warnings

    from deltaflow.kernels.registry import NaNInInput, nan_check_in_kernel

    x = np.linspace(0.0, 3.0, 200)
    y = np.sin(x)[None].repeat(3, 0)
    y[1, 50] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = dfl.differentiate_array(y, x, method="auto", nan_policy="propagate")
    assert np.isnan(d[1]).any() and not np.isnan(d[[0, 2]]).any()
    spec = dfl.get_method("finite_difference")
    params = spec.make_params({})
    out = spec.apply(y, x, 1, params, {}, np, False)  # a direct call: no check
    assert np.isnan(out.derivative[1]).any()
    with nan_check_in_kernel(), pytest.raises(NaNInInput):
        spec.apply(y, x, 1, params, {}, np, False)
