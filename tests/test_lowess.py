"""lowess: exactness, the local fit against a direct weighted polyfit, robustness, NaNs."""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.kernels import get_method, run_kernel
from deltaflow.kernels._localpoly import tricube


def _grid(n=70, irregular=False, seed=0):
    x = np.linspace(-1.0, 2.0, n)
    if irregular:
        x = np.sort(np.random.default_rng(seed).uniform(-1.0, 2.0, n))
    return x


@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("iterations", [0, 3])
def test_polynomials_of_the_degree_are_exact_including_ends(degree, iterations, irregular):
    x = _grid(irregular=irregular, seed=degree)
    coef = np.random.default_rng(degree).standard_normal(degree + 1)
    y = np.polyval(coef, x)
    for order in range(1, degree + 1):
        for window in (3, 11, 25):
            d, s = dfl.differentiate_array(
                y,
                x,
                method="lowess",
                order=order,
                degree=degree,
                window=window,
                iterations=iterations,
                return_smoothed=True,
            )
            true = np.polyval(np.polyder(coef, order), x)
            np.testing.assert_allclose(d, true, atol=1e-8, err_msg=f"order {order} w {window}")
            np.testing.assert_allclose(s, y, atol=1e-10)


def test_local_fit_matches_a_direct_weighted_polyfit():
    """Derivative = the local polynomial's own coefficient (no robustness iterations)."""
    rng = np.random.default_rng(7)
    x = np.sort(rng.uniform(0.0, 3.0, 50))
    y = np.sin(2 * x) + 0.1 * rng.standard_normal(50)
    window, half = 9, 4
    d1 = dfl.differentiate_array(y, x, method="lowess", order=1, window=window, iterations=0)
    d2 = dfl.differentiate_array(y, x, method="lowess", order=2, window=window, iterations=0)
    for i in (0, 2, 4, 20, 45, 49):
        s = min(max(i - half, 0), 50 - window)
        xs, ys = x[s : s + window], y[s : s + window]
        reach = np.max(np.abs(xs - x[i])) * (half + 1) / half
        w = tricube((xs - x[i]) / reach)
        c = np.polyfit(xs - x[i], ys, 2, w=np.sqrt(w))
        np.testing.assert_allclose(d1[i], c[1], rtol=1e-8, err_msg=f"point {i}")
        np.testing.assert_allclose(d2[i], 2 * c[0], rtol=1e-8, err_msg=f"point {i}")


def test_robustness_iterations_resist_outliers():
    x = np.linspace(0, 2 * np.pi, 300)
    rng = np.random.default_rng(1)
    y = np.sin(x) + 0.01 * rng.standard_normal(300)
    spikes = rng.choice(np.arange(10, 290), 12, replace=False)
    y[spikes] += rng.choice([-1.0, 1.0], 12) * 3.0
    errs = {}
    for it in (0, 2):
        d = dfl.differentiate_array(y, x, method="lowess", window=41, iterations=it)
        errs[it] = np.sqrt(np.mean((d - np.cos(x)) ** 2))
    assert errs[2] < 0.2 * errs[0], errs
    assert errs[2] < 0.05, errs


def test_automatic_span_grows_with_noise_and_is_reported():
    x = np.linspace(0, 4 * np.pi, 400)
    rng = np.random.default_rng(3)
    levels = np.array([0.0, 0.003, 0.03, 0.3])
    y = np.sin(x) + levels[:, None] * rng.standard_normal((4, 400))
    for order in (1, 2):
        d, chosen = dfl.differentiate_array(y, x, method="lowess", order=order, return_choices=True)
        w = chosen["window"]
        assert w.shape == (4,) and np.all(w % 2 == 1)
        assert np.all(np.diff(w) > 0), w
        assert chosen["scale"].shape == (4,)
        assert np.isinf(chosen["scale"][0]) and np.all(np.isfinite(chosen["scale"][1:]))
        for r in (1, 3):
            one = dfl.differentiate_array(y[r], x, method="lowess", order=order, window=int(w[r]))
            np.testing.assert_allclose(d[r], one, rtol=1e-10, atol=1e-10 * np.abs(one).max())
    with pytest.warns(RuntimeWarning, match="lowess: .*max_window=21 on 2 of 4 series"):
        _, chosen = dfl.differentiate_array(
            y, x, method="lowess", max_window=21, return_choices=True
        )
    assert chosen["window"][3] == 21


def test_footprint_covers_the_robustness_iterations():
    spec = get_method("lowess")
    assert spec.footprint(1, spec.make_params({"window": 21, "iterations": 0})) == 10
    assert spec.footprint(1, spec.make_params({"window": 21, "iterations": 2})) == 30
    assert spec.footprint(2, spec.make_params({"max_window": 31})) == 45
    # a halo one iteration short does not reproduce the whole-series values
    x = np.linspace(0, 3, 200)
    rng = np.random.default_rng(0)
    y = np.sin(3 * x)[None] + 0.05 * rng.standard_normal((2, 200))
    y[:, 95] += 2.0
    p = spec.make_params({"window": 21, "iterations": 2})
    full = run_kernel(spec, y, x, 1, p)
    for halo, same in ((30, True), (20, False)):
        lo, hi = 100 - halo, 150 + halo
        part = run_kernel(spec, y[:, lo:hi], x[lo:hi], 1, p, chosen=full.chosen)
        got = part.output.derivative[:, 100 - lo : 150 - lo]
        assert np.allclose(got, full.output.derivative[:, 100:150], rtol=1e-12) == same


def test_nan_omit_gives_zero_weight_to_gaps():
    x = _grid(80)
    y = 1.0 - 2.0 * x + 0.5 * x**2
    y2 = np.vstack([y, y])
    y2[0, [5, 30, 31, 32, 79]] = np.nan
    d, s = dfl.differentiate_array(
        y2, x, method="lowess", window=11, nan_policy="omit", return_smoothed=True
    )
    np.testing.assert_allclose(d[0], -2.0 + x, atol=1e-9)
    np.testing.assert_allclose(s[0], y, atol=1e-10)  # gaps filled by the local fit
    np.testing.assert_allclose(d[1], d[0], atol=1e-9)
    # noisy data with gaps, automatic span: close to the gap-free answer
    rng = np.random.default_rng(2)
    z = np.sin(2 * x) + 0.02 * rng.standard_normal(80)
    zg = z.copy()
    zg[rng.choice(80, 8, replace=False)] = np.nan
    dz = dfl.differentiate_array(zg, x, method="lowess", nan_policy="omit")
    assert np.all(np.isfinite(dz))
    assert np.sqrt(np.mean((dz - 2 * np.cos(2 * x))[8:-8] ** 2)) < 0.15
    # a window left with too few valid samples gives NaN there, and only there
    g = y.copy()
    g[40:50] = np.nan
    dg = dfl.differentiate_array(g, x, method="lowess", window=5, nan_policy="omit")
    assert np.all(np.isnan(dg[43:47])) and np.all(np.isfinite(dg[:38]))


def test_nan_raise_and_propagate():
    x = _grid(60)
    y = np.sin(x)
    y[17] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN\(s\), at index \(17,\)"):
        dfl.differentiate_array(y, x, method="lowess", window=7)
    d = dfl.differentiate_array(
        y, x, method="lowess", window=7, iterations=0, nan_policy="propagate"
    )
    assert np.all(np.isnan(d[14:21])) and np.all(np.isfinite(d[:14]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 8}, "method 'lowess': window: must be odd, got 8"),
        ({"max_window": 40}, "max_window: must be odd, got 40"),
        ({"degree": 3}, "degree: Input should be 1 or 2, got 3"),
        ({"iterations": -1}, "iterations: Input should be greater than or equal to 0"),
        ({"degree": 1, "order": 2}, r"order 2 needs degree >= 2, got degree=1"),
        ({"order": 3}, "order must be in 1..2, got 3"),
        ({"window": 61}, "needs at least 61 samples for order 1, got 50"),
    ],
)
def test_errors_name_the_parameter_and_range(kwargs, message):
    kwargs = dict(kwargs)
    order = kwargs.pop("order", 1)
    with pytest.raises(ValueError, match=message):
        dfl.differentiate_array(np.sin(np.arange(50.0)), method="lowess", order=order, **kwargs)


def test_array_api_input_is_refused_by_name():
    """lowess has no device path: other namespaces get a clear error, never a silent copy."""
    xs = pytest.importorskip("array_api_strict")
    x = _grid(60)
    y = np.sin(2 * x)[None] + 0.05 * np.random.default_rng(0).standard_normal((2, 60))
    with pytest.raises(TypeError, match="method 'lowess' has no GPU path"):
        dfl.differentiate_array(xs.asarray(y), x, method="lowess")


@pytest.mark.parametrize("degree", [1, 2])
def test_uniform_tables_equal_the_point_by_point_fits(degree):
    """On uniform x the fits come from shared kernel rows and linear filters: the same
    numbers as every point's own weighted fit, up to rounding (NaN gaps and ends too)."""
    from deltaflow.kernels import lowess as lw

    x = np.linspace(0.0, 3.0, 90)
    rng = np.random.default_rng(21)
    y = np.sin(2 * x) + 0.1 * rng.standard_normal((4, x.size))
    y[1, 40] = 5.0  # an outlier for the robustness weights
    y[2, [3, 30, 31]] = np.nan
    scale = np.full(4, 0.6)
    for window in (5, 21):
        t, k, kp, lf, start, reach = lw._geometry(x, window, degree)
        assert kp.shape[0] == window  # interior row + half rows per end
        for iterations in (0, 2):
            for order in range(1, degree + 1):
                outs = []
                for tables in ((kp, lf), (kp[:0], lf[:0])):
                    out = np.empty((4, 2, x.size))
                    args = (t, k, *tables, start, reach, degree, iterations, scale, order)
                    lw._lowess_rows(y, *args, True, out)
                    outs.append(out)
                np.testing.assert_array_equal(np.isnan(outs[0]), np.isnan(outs[1]))
                np.testing.assert_allclose(outs[0], outs[1], rtol=1e-10, atol=1e-10)


def test_scale_from_fused_filters_equals_the_fit_residuals():
    """The robustness scale on uniform x (filters, residuals and median fused per row) is
    SCALE_MADS times the median absolute residual of the non-robust fit, per window group."""
    from deltaflow.kernels import lowess as lw

    x = np.linspace(0.0, 3.0, 120)
    rng = np.random.default_rng(22)
    y = np.sin(2 * x) + 0.05 * rng.standard_normal((5, x.size))
    y[3, 60] = np.nan  # 'propagate': the fit is NaN around it, the median skips those
    windows = np.array([7, 21, 7, 21, 9])
    p = lw.LowessParams(nan_policy="propagate")
    got = lw._scale(y, x, windows, p)
    for r, w in enumerate(windows):
        fit = lw._run(y[r : r + 1], x, int(w), p, 0, np.ones(1), 1)[0, 1]
        ref = lw.SCALE_MADS * np.nanmedian(np.abs(y[r] - fit))
        np.testing.assert_allclose(got[r], ref, rtol=1e-12)
