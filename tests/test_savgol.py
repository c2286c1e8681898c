"""savgol: exactness on polynomials, agreement with SciPy, automatic windows, errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.signal import savgol_filter

import deltaflow as dfl
from deltaflow.kernels import get_method
from deltaflow.kernels.savgol import build_stencil

from truths import TRUTHS, noisy


def _poly_case(p, seed=0, n=60, irregular=False):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.5, 2.0, n)
    if irregular:
        x = np.sort(rng.uniform(-1.5, 2.0, n))
    coef = rng.standard_normal(p + 1)
    return x, coef


@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
@pytest.mark.parametrize(("polyorder", "window"), [(2, 5), (3, 7), (3, 15), (4, 9), (5, 21)])
def test_polynomials_up_to_polyorder_are_exact_including_ends(polyorder, window, irregular):
    x, coef = _poly_case(polyorder, seed=window, irregular=irregular)
    y = np.polyval(coef, x)
    for order in range(1, polyorder + 1):
        d = dfl.differentiate_array(
            y, x, method="savgol", order=order, window=window, polyorder=polyorder
        )
        true = np.polyval(np.polyder(coef, order), x)
        np.testing.assert_allclose(
            d, true, atol=1e-7 * max(1.0, np.abs(true).max()), err_msg=f"order {order}"
        )


@pytest.mark.parametrize("polyorder", [2, 3, 4])
@pytest.mark.parametrize("window", [5, 11, 31])
def test_matches_scipy_savgol_filter_interior_and_ends(window, polyorder):
    rng = np.random.default_rng(window)
    x = np.linspace(0.0, 4.0, 97)
    y = np.sin(2 * x)[None, :] + 0.1 * rng.standard_normal((3, 97))
    for order in range(1, polyorder + 1):
        ref = savgol_filter(y, window, polyorder, deriv=order, delta=x[1] - x[0], mode="interp")
        got = dfl.differentiate_array(
            y, x, method="savgol", order=order, window=window, polyorder=polyorder
        )
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10 * np.abs(ref).max())
    _, smooth = dfl.differentiate_array(
        y, x, method="savgol", window=window, polyorder=polyorder, return_smoothed=True
    )
    ref0 = savgol_filter(y, window, polyorder, mode="interp")
    np.testing.assert_allclose(smooth, ref0, rtol=1e-10, atol=1e-12)


def test_irregular_path_agrees_with_uniform_path_on_near_uniform_grid():
    x = np.linspace(0.0, 2.0, 80)
    jittered = x + 1e-9 * np.r_[0.0, np.sin(np.arange(78)), 0.0]
    s_uni = build_stencil(x, 11, 3, 1)
    s_irr = build_stencil(jittered, 11, 3, 1)
    assert s_uni.uniform and not s_irr.uniform
    y = np.cos(3 * x) + np.random.default_rng(1).standard_normal(80) * 0.01
    from deltaflow.kernels._stencil import apply_stencil

    np.testing.assert_allclose(
        apply_stencil(s_irr, y, np), apply_stencil(s_uni, y, np), rtol=1e-6, atol=1e-6
    )


def test_higher_orders_up_to_polyorder():
    x = np.linspace(0, 1, 200)
    y = np.exp(x)
    for order in (3, 4):
        d = dfl.differentiate_array(y, x, method="savgol", order=order, window=21, polyorder=6)
        np.testing.assert_allclose(d, y, rtol=1e-3)


def _noisy_sin(levels, n=400, seed=3):
    x = np.linspace(0, 4 * np.pi, n)
    rng = np.random.default_rng(seed)
    y = np.sin(x)[None, :] + np.asarray(levels)[:, None] * rng.standard_normal((len(levels), n))
    return x, y


def test_automatic_window_grows_with_noise_and_is_reported():
    levels = [0.0, 0.003, 0.03, 0.3]
    x, y = _noisy_sin(levels)
    for order in (1, 2):
        d, chosen = dfl.differentiate_array(y, x, method="savgol", order=order, return_choices=True)
        w = chosen["window"]
        assert w.shape == (4,) and w.dtype.kind == "i"
        assert np.all(w % 2 == 1)
        assert np.all(np.diff(w) > 0), w
        assert w[0] <= 11, w
        # each series was differentiated with its own window
        for r in range(4):
            one = dfl.differentiate_array(y[r], x, method="savgol", order=order, window=int(w[r]))
            np.testing.assert_allclose(d[r], one, rtol=1e-12, atol=1e-12 * np.abs(one).max())


def test_automatic_window_beats_fixed_default_on_noise_and_is_near_best():
    t = TRUTHS["sin"]
    x = t.grid(301)
    y = noisy(t(x), 0.01, seed=2)
    d, chosen = dfl.differentiate_array(y, x, method="savgol", order=1, return_choices=True)
    errs = {
        w: np.sqrt(
            np.mean(
                (dfl.differentiate_array(y, x, method="savgol", window=w) - t(x, 1))[30:-30] ** 2
            )
        )
        for w in range(5, 102, 2)
    }
    err = np.sqrt(np.mean((d - t(x, 1))[30:-30] ** 2))
    assert err <= 1.6 * min(errs.values()), (chosen, min(errs, key=errs.get))
    assert err < 0.2 * errs[5]


def test_automatic_window_is_clipped_to_bounds():
    x, y = _noisy_sin([1.0, 0.0], n=300)
    with pytest.warns(RuntimeWarning, match="max_window=31 on 1 of 2 series of 300"):
        _, chosen = dfl.differentiate_array(
            y, x, method="savgol", max_window=31, return_choices=True
        )
    assert chosen["window"][0] == 31
    d, chosen = dfl.differentiate_array(  # a cap over an eighth of the series: no warning
        y, x, method="savgol", polyorder=4, order=2, return_choices=True
    )
    assert 5 <= chosen["window"][1] < chosen["window"][0] == 101
    np.testing.assert_allclose(d[1], -np.sin(x), atol=1e-3)
    # a short series caps the window at its length (pure noise on a line wants it all)
    rng = np.random.default_rng(0)
    xs = np.linspace(0.0, 1.0, 40)
    ys = xs + 10.0 * rng.standard_normal((6, 40))
    _, chosen = dfl.differentiate_array(ys, xs, method="savgol", return_choices=True)
    assert chosen["window"].max() == 39 and chosen["window"].min() >= 21, chosen


def test_automatic_choice_keeps_batch_shape_and_footprint_bounds_halo():
    x, y = _noisy_sin([0.01, 0.1, 0.01, 0.5, 0.02, 0.2])
    y3 = y.reshape(2, 3, -1)
    d3, chosen = dfl.differentiate_array(y3, x, method="savgol", return_choices=True)
    assert chosen["window"].shape == (2, 3)
    np.testing.assert_allclose(
        d3.reshape(6, -1), dfl.differentiate_array(y, x, method="savgol"), rtol=1e-12
    )
    spec = get_method("savgol")
    assert spec.footprint(1, spec.make_params({})) == 50
    assert spec.footprint(1, spec.make_params({"max_window": 41})) == 20
    assert spec.footprint(2, spec.make_params({"window": 9})) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 10}, "method 'savgol': window: must be odd, got 10"),
        ({"window": 1}, "window: Input should be greater than or equal to 3"),
        ({"window": 5, "polyorder": 5}, r"polyorder: must be less than window \(5\): allowed"),
        ({"max_window": 50}, "max_window: must be odd, got 50"),
        ({"max_window": 3, "polyorder": 4}, "max_window: must be at least 5 for polyorder 4"),
        ({"polyorder": 0}, "polyorder: Input should be greater than or equal to 1"),
        ({"order": 4}, r"order 4 needs polyorder >= 4, got polyorder=3 \(allowed orders 1..3\)"),
        ({"order": 7}, "order must be in 1..6, got 7"),
        ({"window": 61}, "needs at least 61 samples for order 1, got 50"),
        ({"nan_policy": "omit"}, "nan_policy='omit' is not supported"),
    ],
)
def test_errors_name_the_parameter_and_range(kwargs, message):
    kwargs = dict(kwargs)
    order = kwargs.pop("order", 1)
    with pytest.raises(ValueError, match=message):
        dfl.differentiate_array(np.sin(np.arange(50.0)), method="savgol", order=order, **kwargs)


def test_nan_policies():
    x = np.linspace(0, 1, 60)
    y = np.vstack([np.sin(x), np.cos(x)])
    y[1, 20] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN\(s\), at index \(1, 20\)"):
        dfl.differentiate_array(y, x, method="savgol", window=7)
    d = dfl.differentiate_array(y, x, method="savgol", window=7, nan_policy="propagate")
    assert np.all(np.isfinite(d[0]))
    assert np.all(np.isnan(d[1, 17:24])) and np.all(np.isfinite(d[1, :17]))
    # an automatic choice with NaNs under 'propagate' still gives a window per series
    d, chosen = dfl.differentiate_array(
        y, x, method="savgol", nan_policy="propagate", return_choices=True
    )
    assert chosen["window"].shape == (2,) and np.all(chosen["window"] >= 5)


@pytest.mark.parametrize("chunks", [None, {"t": 50}, {"s": 1}])
def test_automatic_window_names_nan_found_by_the_stencil(chunks):
    """With an automatic window the choice runs on the data as given and the stencil finds
    the NaN (no separate pass): the error still names its index, with one window for all
    series and with a window per series, in memory and through the Dask engine."""
    x, y = _noisy_sin([0.001, 0.3, 0.03], n=150)
    windows = dfl.differentiate_array(y, x, method="savgol", return_choices=True)[1]["window"]
    assert np.unique(windows).size == 3  # the per-series stencil path
    y[2, 97] = np.nan
    for data in (y, y[2:]):  # several windows, then one
        if chunks is None:
            with pytest.raises(ValueError, match=rf"1 NaN\(s\), at index \({len(data) - 1}, 97\)"):
                dfl.differentiate_array(data, x, method="savgol")
        else:
            da = xr.DataArray(data, dims=("s", "t"), coords={"t": x}).chunk(chunks)
            with pytest.raises(ValueError, match=rf"first at index \({len(data) - 1}, 97\)"):
                da.delta.differentiate("t", method="savgol").compute()


def test_array_api_namespace_with_grouped_windows():
    """The generic (CuPy-like) path: per-series windows regrouped without fancy setitem."""
    xs = pytest.importorskip("array_api_strict")
    x, y = _noisy_sin([0.001, 0.3, 0.03, 0.3], n=150)
    ref, chosen = dfl.differentiate_array(y, x, method="savgol", return_choices=True)
    assert np.unique(chosen["window"]).size >= 3
    got = dfl.differentiate_array(xs.asarray(y), x, method="savgol")
    assert isinstance(got, type(xs.asarray(y)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, atol=1e-12)


def test_engine_chunked_equals_unchunked_with_per_series_windows():
    """Through the xarray/dask engine: one choice key, windows differing per series."""
    xr = pytest.importorskip("xarray")
    pytest.importorskip("dask")
    from deltaflow.engine import differentiate

    x, y = _noisy_sin([0.001, 0.3, 0.03, 0.1], n=300)
    data = xr.DataArray(y, dims=("s", "t"), coords={"t": x})
    full, chosen = differentiate(data, "t", method="savgol", return_choices=True)
    assert np.unique(chosen["window"].values).size >= 3
    lazy, lazy_chosen = differentiate(
        data.chunk({"t": 70, "s": 3}), "t", method="savgol", return_choices=True
    )
    np.testing.assert_array_equal(lazy_chosen["window"].values, chosen["window"].values)
    np.testing.assert_allclose(lazy.values, full.values, rtol=1e-10, atol=1e-10)


def test_window_choice_statistics_equal_their_plain_numpy_forms():
    """The automatic window's noise estimate (fused per row) is the NumPy MAD of the
    divided differences exactly, NaNs ignored; the roughness from block fits shared by
    both derivative orders equals the one fitted for each order alone; x-only quantities
    are cached per grid and not mixed up between grids."""
    import warnings

    from deltaflow.kernels import _bandwidth as bw
    from deltaflow.kernels._noise import difference_weights

    rng = np.random.default_rng(31)
    for x in (np.linspace(0.0, 2.0, 150), np.sort(rng.uniform(0.0, 2.0, 150))):
        y = np.exp(x) + 0.01 * rng.standard_normal((5, x.size))
        y[2, 40] = np.nan
        a = difference_weights(x, bw.NOISE_DIFF_ORDER)
        m = bw.NOISE_DIFF_ORDER
        e = np.zeros((5, x.size - m))
        for i in range(m + 1):
            e += a[:, i] * y[:, i : x.size - m + i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(e, axis=1)
            ref = 1.482602218505602 * np.nanmedian(np.abs(e - med[:, None]), axis=1)
        sigma = bw.noise_sigma(y, x)
        np.testing.assert_array_equal(sigma, ref)
        clean = y[[0, 1, 3, 4]]
        s = sigma[[0, 1, 3, 4]]
        sizes = [bw._degree_blocks(x.size, q) for q in (4, 5)]
        shared = bw.block_moments(clean, x, max(d for d, _ in sizes), max(b for _, b in sizes))
        for q in (4, 5):
            alone = bw.roughness(clean, x, q, s)
            np.testing.assert_allclose(
                bw.roughness(clean, x, q, s, moments=shared), alone, rtol=1e-9
            )
    # the same call on another grid is not served from the first grid's cache
    x1, x2 = np.linspace(0.0, 1.0, 120), np.linspace(0.0, 1.0, 120) ** 1.3
    y = np.sin(3 * x2) + 0.01 * rng.standard_normal((3, 120))
    first = bw.roughness(y, x1, 5, bw.noise_sigma(y, x1))
    second = bw.roughness(y, x2, 5, bw.noise_sigma(y, x2))
    bw._block_bases.cache_clear()
    bw._block_derivatives.cache_clear()
    np.testing.assert_array_equal(bw.roughness(y, x2, 5, bw.noise_sigma(y, x2)), second)
    assert not np.allclose(first, second)


def test_row_medians_equal_numpy():
    """The window choice's row medians (branch-free quickselect) are np.nanmedian's values:
    odd and even lengths, ties, sorted rows, NaNs and all-NaN rows."""
    import warnings

    from deltaflow.kernels import _bandwidth as bw

    rng = np.random.default_rng(41)
    for n in (1, 2, 5, 17, 18, 400, 401):
        a = rng.standard_normal((8, n))
        a[1] = np.round(a[1], 1)  # ties
        a[2] = np.sort(a[2])
        a[3] = 1.0
        a[4, ::3] = np.nan
        a[5] = np.nan
        a[6, : n // 2] = 2.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(a, axis=1)
        np.testing.assert_array_equal(bw._nanmedian(a), ref)


@pytest.mark.parametrize("method", ["savgol", "lowess"])
def test_window_stopped_by_max_window_is_a_warning_naming_the_remedy(method):
    """Long noisy series want windows wider than max_window: the choice says so (how many
    series, the cap, the allowed range) and widening the cap removes both the warning and
    most of the error; a cap over an eighth of the series, or windows below it, stay silent."""
    import warnings

    x, y = _noisy_sin([0.02, 0.02, 0.0], n=1000)
    with pytest.warns(RuntimeWarning, match=rf"{method}: .*max_window=25 on 2 of 3 series"):
        capped = dfl.differentiate_array(y, x, method=method, max_window=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        wide = dfl.differentiate_array(y, x, method=method, max_window=201)
        dfl.differentiate_array(y[:, :21], x[:21], method=method, max_window=25)
        dfl.differentiate_array(y[2:], x, method=method, max_window=25)  # noise-free
    err = [np.sqrt(np.mean((d[:2, 100:-100] - np.cos(x[100:-100])) ** 2)) for d in (capped, wide)]
    assert err[1] < 0.5 * err[0]


def test_engine_probe_does_not_warn_about_its_own_synthetic_series():
    """The engine learns the choice keys from a synthetic noisy probe before reading data;
    a cap warning about that probe would blame the user's data. Clean data: no warning."""
    import warnings

    xr = pytest.importorskip("xarray")
    pytest.importorskip("dask")
    from deltaflow.engine import differentiate

    x, y = _noisy_sin([1e-6, 1e-6], n=4000)
    data = xr.DataArray(y, dims=("s", "t"), coords={"t": x}).chunk({"t": 1000})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = differentiate(data, "t", method="savgol").compute()
    np.testing.assert_allclose(out.values, np.broadcast_to(np.cos(x), y.shape), atol=1e-3)
