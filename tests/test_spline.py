"""spline: agreement with SciPy's smoothing spline, exactness, GCV, irregular x, NaNs, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import make_smoothing_spline

import deltaflow as dfl
from deltaflow.kernels.spline import DERIVATIVE_FACTOR

from truths import TRUTHS, noisy


def _irregular(n=80, seed=0, a=0.0, b=3.0):
    rng = np.random.default_rng(seed)
    return np.sort(np.r_[a, b, rng.uniform(a, b, n - 2)])


@pytest.mark.parametrize("irregular", [False, True])
def test_cubic_matches_scipy_smoothing_spline(irregular):
    """degree 3 minimises the same criterion as scipy's make_smoothing_spline."""
    x = _irregular(seed=1) if irregular else np.linspace(0.0, 3.0, 80)
    rng = np.random.default_rng(2)
    y = np.sin(2 * x) + 0.05 * rng.standard_normal((3, x.size))
    lam = 0.01
    step = (x[-1] - x[0]) / (x.size - 1)
    smoothing = lam / step**3
    for order in (1, 2, 3):
        d, f = dfl.differentiate_array(
            y,
            x,
            method="spline",
            order=order,
            degree=3,
            smoothing=smoothing,
            return_smoothed=True,
        )
        for r in range(3):
            ref = make_smoothing_spline(x, y[r], lam=lam)
            np.testing.assert_allclose(f[r], ref(x), atol=1e-9)
            if order < 3:  # f''' of a cubic jumps at knots; compare orders 1 and 2 only
                np.testing.assert_allclose(d[r], ref.derivative(order)(x), atol=1e-7)


@pytest.mark.parametrize("degree", [3, 5, 7])
@pytest.mark.parametrize("smoothing", [1e-3, 1.0, 1e6])
def test_penalty_null_space_is_reproduced_exactly(degree, smoothing):
    """Polynomials of degree < m cost no penalty: reproduced for any smoothing, ends included."""
    x = _irregular(n=60, seed=3, a=-1.0, b=2.0)
    m = (degree + 1) // 2
    coef = [0.7, -1.3, 0.4, 0.25][:m]
    y = np.polynomial.polynomial.polyval(x, coef)
    for order in range(1, 4):
        d = dfl.differentiate_array(
            y, x, method="spline", order=order, degree=degree, smoothing=smoothing
        )
        true = np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(coef, order))
        # order 3 divides state rounding by the cube of the closest spacing (~0.03 here)
        tol = 1e-5 if order == 3 else 1e-7
        np.testing.assert_allclose(d, true, atol=tol * (1 + abs(true).max()))


@pytest.mark.parametrize("degree", [3, 5, 7])
def test_tiny_smoothing_reproduces_a_cubic_inside(degree):
    """Near interpolation: a cubic and its derivatives are recovered away from the ends."""
    x = np.linspace(-1.0, 1.0, 101)
    y = 1 + 2 * x - 3 * x**2 + 0.5 * x**3
    truths = {1: 2 - 6 * x + 1.5 * x**2, 2: -6 + 3 * x, 3: np.full_like(x, 3.0)}
    inner = slice(25, -25)
    for order, true in truths.items():
        if order == 3 and degree == 3:
            continue  # piecewise-constant third derivative of a cubic spline
        d = dfl.differentiate_array(
            y, x, method="spline", order=order, degree=degree, smoothing=1e-6
        )
        assert np.max(np.abs(d - true)[inner]) < 1e-5 * 10**order, order


def test_gcv_smoothing_grows_with_noise_and_matches_scipy():
    """Plain GCV (factor removed) gives scipy's GCV fit; the choice grows with the noise."""
    t = TRUTHS["sin"]
    x = t.grid(201, irregular=True, seed=4)
    levels = (0.001, 0.01, 0.1)
    ys = np.stack([noisy(t(x), lev, seed=7) for lev in levels])
    kw = {"method": "spline", "order": 1, "degree": 3, "criterion": "gcv", "return_choices": True}
    _, ch = dfl.differentiate_array(ys, x, **kw)
    s = ch["smoothing"]
    assert s.shape == (3,)
    assert s[0] < s[1] < s[2]
    gcv_only = s / DERIVATIVE_FACTOR[3][1]
    for r, lev in enumerate(levels):
        _, f = dfl.differentiate_array(
            ys[r], x, method="spline", degree=3, smoothing=gcv_only[r], return_smoothed=True
        )
        ref = make_smoothing_spline(x, ys[r])(x)
        sigma = lev * np.ptp(t(x))
        assert np.sqrt(np.mean((f - ref) ** 2)) < 0.05 * sigma, r


@pytest.mark.parametrize("criterion", ["ml", "gcv"])
def test_automatic_smoothing_beats_fixed_extremes(criterion):
    """Either choice lands between under- and over-smoothing on noisy data."""
    t = TRUTHS["black_scholes"]
    x = t.grid(201, irregular=True, seed=5)
    y = np.stack([noisy(t(x), 0.01, seed=s) for s in range(3)])
    true = t(x, 1)

    def err(**kw):
        d = dfl.differentiate_array(y, x, method="spline", order=1, **kw)
        return np.sqrt(np.mean((d - true)[:, 20:-20] ** 2))

    auto = err(criterion=criterion)
    assert auto < 0.5 * err(smoothing=1e-2)
    assert auto < 0.5 * err(smoothing=1e12)


def test_nan_omit_equals_fit_on_observed_samples():
    x = _irregular(n=70, seed=6)
    rng = np.random.default_rng(8)
    y = np.cos(x) + 0.02 * rng.standard_normal((2, x.size))
    y[1, [5, 6, 30]] = np.nan
    lam = 0.02
    step = (x[-1] - x[0]) / (x.size - 1)
    d, f = dfl.differentiate_array(
        y,
        x,
        method="spline",
        degree=3,
        smoothing=lam / step**3,
        nan_policy="omit",
        return_smoothed=True,
    )
    keep = ~np.isnan(y[1])
    ref = make_smoothing_spline(x[keep], y[1, keep], lam=lam)
    np.testing.assert_allclose(f[1, keep], ref(x[keep]), atol=1e-9)
    np.testing.assert_allclose(d[1, keep], ref.derivative()(x[keep]), atol=1e-7)
    # the omitted points get the spline's value there, and the clean row is untouched
    assert np.isfinite(d[1]).all()
    clean = dfl.differentiate_array(y[0], x, method="spline", degree=3, smoothing=lam / step**3)
    np.testing.assert_allclose(d[0], clean, rtol=1e-12)


def test_nan_omit_with_automatic_smoothing_and_propagate():
    x = np.linspace(0, 4, 120)
    rng = np.random.default_rng(9)
    y = np.sin(x) + 0.01 * rng.standard_normal((3, x.size))
    y[2, 40:45] = np.nan
    d, ch = dfl.differentiate_array(y, x, method="spline", nan_policy="omit", return_choices=True)
    assert np.isfinite(d).all() and np.isfinite(ch["smoothing"]).all()
    assert np.max(np.abs(d[2] - np.cos(x))[10:-10]) < 0.1
    p = dfl.differentiate_array(y, x, method="spline", nan_policy="propagate")
    assert np.isnan(p[2]).all() and np.isfinite(p[:2]).all()
    np.testing.assert_allclose(p[:2], d[:2], rtol=1e-12)


def test_order_three_quintic():
    t = TRUTHS["sin"]
    x = t.grid(301, irregular=True, seed=2)
    d = dfl.differentiate_array(t(x), x, method="spline", order=3, smoothing=1e-2)
    assert np.max(np.abs(d - t(x, 3))[30:-30]) < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"smoothing": -1.0}, "method 'spline': smoothing: Input should be greater than 0"),
        ({"smoothing": 0.0}, "smoothing: Input should be greater than 0"),
        ({"degree": 4}, "method 'spline': degree: Input should be 3, 5 or 7"),
        ({"order": 4}, "method 'spline': order must be in 1..3, got 4"),
    ],
)
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError) as err:
        dfl.differentiate_array(np.sin(np.arange(20.0)), method="spline", **kwargs)
    assert message in str(err.value)


def test_too_few_samples():
    with pytest.raises(ValueError, match="needs at least 5 samples for order 1, got 3"):
        dfl.differentiate_array(np.arange(3.0), method="spline")


@pytest.mark.parametrize("degree", [3, 5, 7])
def test_corrected_ends_reproduce_the_lowest_penalised_degree(degree):
    """ends='corrected' recovers a polynomial of degree m at the ends; the natural spline not."""
    x = _irregular(n=90, seed=11, a=-1.0, b=2.0)
    m = (degree + 1) // 2
    coef = [0.3, -0.5, 0.8, 1.2, -0.6][: m + 1]
    y = np.polynomial.polynomial.polyval(x, coef)
    for order in range(1, min(m, 3) + 1):  # spline gives orders up to 3
        true = np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(coef, order))
        # a kernel half width of ~10 samples (smoothing ~ width**(2m))
        kw = {"order": order, "degree": degree, "smoothing": 10.0 ** (2 * m)}
        cor = dfl.differentiate_array(y, x, method="spline", ends="corrected", **kw)
        nat = dfl.differentiate_array(y, x, method="spline", **kw)
        scale = 1 + abs(true).max()
        np.testing.assert_allclose(cor, true, atol=1e-6 * scale)
        assert np.max(np.abs(nat - true)) > 1e-2 * scale, order


def test_corrected_ends_reduce_end_error_on_noisy_exp():
    """On exp with noise the corrected ends cut the error, over the whole range and inside."""
    x = np.linspace(0.0, 2.0, 201)
    rng = np.random.default_rng(12)
    y = np.exp(x) + 0.01 * np.ptp(np.exp(x)) * rng.standard_normal((20, x.size))
    inner = slice(20, -20)
    for order, smoothing in ((1, 1e8), (2, 1e8)):
        kw = {"order": order, "smoothing": smoothing}
        cor = dfl.differentiate_array(y, x, method="spline", ends="corrected", **kw) - np.exp(x)
        nat = dfl.differentiate_array(y, x, method="spline", **kw) - np.exp(x)
        assert np.sqrt(np.mean(cor**2)) < 0.75 * np.sqrt(np.mean(nat**2)), order
        assert np.sqrt(np.mean(cor[:, inner] ** 2)) < 0.9 * np.sqrt(np.mean(nat[:, inner] ** 2))


def test_corrected_ends_nan_omit_equals_fit_on_observed_samples():
    x = _irregular(n=70, seed=13)
    rng = np.random.default_rng(14)
    y = np.exp(x) + 0.05 * rng.standard_normal((2, x.size))
    y[1, [5, 6, 30, 50]] = np.nan
    kw = {"method": "spline", "ends": "corrected", "smoothing": 1e3, "return_smoothed": True}
    d, f = dfl.differentiate_array(y, x, nan_policy="omit", **kw)
    keep = ~np.isnan(y[1])
    # smoothing is in units of the mean spacing: the same lam on the observed samples
    ratio = (x.size - 1) / (keep.sum() - 1)
    d_ref, f_ref = dfl.differentiate_array(
        y[1, keep], x[keep], **{**kw, "smoothing": 1e3 * ratio**-5}
    )
    np.testing.assert_allclose(f[1, keep], f_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d[1, keep], d_ref, rtol=1e-7, atol=1e-7)
    one = dfl.differentiate_array(y[0], x, **kw)[0]
    np.testing.assert_allclose(d[0], one, rtol=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_fit_rss_by_lanes_equals_row_by_row(d):
    """The GCV's residual sums, many rows at once, are those of the row kernel: exactly for
    the cubic, to rounding for the quintic (its kernel fuses multiply-adds)."""
    from deltaflow.kernels import _statespace as ss

    x = _irregular(n=90, seed=11)
    u, _ = ss.scaled(x)
    rng = np.random.default_rng(12)
    y = np.sin(x) + 0.05 * rng.standard_normal((45, x.size))  # not a multiple of LANES
    for obs in (np.ones(x.size, dtype=bool), rng.random(x.size) > 0.2):
        ys = np.where(obs, y, 0.0)
        g = ss.gains(u, obs, d, 1e-3)
        ref = np.empty((ys.shape[0], 1))
        z0 = np.ascontiguousarray(g.z[:, 0, :])
        ss._fit_rss_rows(ys, obs, g.fs, g.ks, g.gs, g.es, g.minv, z0, ref)
        tol = 0.0 if d == 2 else 1e-12
        np.testing.assert_allclose(ss.fit_rss(g, ys), ref[:, 0], rtol=tol, atol=0)
        np.testing.assert_allclose(ss.fit_rss(g, ys[:3]), ref[:3, 0], rtol=tol, atol=0)
        pick = np.array([40, 2, 7, 7])
        np.testing.assert_array_equal(ss.fit_rss(g, ys, pick), ss.fit_rss(g, ys[pick]))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_smoothing_by_lanes_is_bit_identical_to_row_by_row(d):
    """The smoother run many rows at once (orders below d) gives exactly the row kernel's
    derivative and fit, on any number of rows and with unobserved samples."""
    from deltaflow.kernels import _statespace as ss

    x = _irregular(n=80, seed=21)
    u, _ = ss.scaled(x)
    rng = np.random.default_rng(22)
    y = np.cos(2 * x) + 0.05 * rng.standard_normal((70, x.size))  # 2 x LANES + 6
    for obs in (np.ones(x.size, dtype=bool), rng.random(x.size) > 0.2):
        ys = np.where(obs, y, 0.0)
        g = ss.gains(u, obs, d, 1e-2)
        for order in range(d):
            for rows in (ys, ys[:5], ys[:1]):
                out = np.empty(rows.shape)
                fit = np.empty(rows.shape)
                ss._smooth_rows(
                    rows, obs, g.u, g.fs, g.ks, g.gs, g.es, g.minv, g.z, order, 2.0, out, fit
                )
                got, got_fit = ss.smooth(g, rows, order, 2.0, True)
                np.testing.assert_array_equal(got, out)
                np.testing.assert_array_equal(got_fit, fit)
                np.testing.assert_array_equal(ss.smooth(g, rows, order, 2.0, False)[0], out)


def test_gcv_climb_finds_the_full_grid_choice():
    """The GCV search skips coarse values that a bound rules out and scores fewer fine
    points (a climb), and still picks what scoring them all picks, alone or in a batch."""
    from deltaflow.kernels import _gridsearch as gs
    from deltaflow.kernels import spline as sp

    x = np.linspace(0.0, 3.0, 151)
    rng = np.random.default_rng(13)
    y = np.concatenate(
        [
            f + lev * np.ptp(f) * rng.standard_normal((3, x.size))
            for f in (np.sin(2 * x), np.exp(x), x**3)
            for lev in (0.001, 0.01, 0.05)
        ]
    )
    p = sp.SplineParams(criterion="gcv")
    climbed = sp._choose(y, x, 1, p, np)["smoothing"]
    full_search = gs.grid_search
    try:
        gs.grid_search = lambda *a, climb=False, bound=None, **k: full_search(*a, **k)
        full = sp._choose(y, x, 1, p, np)["smoothing"]
    finally:
        gs.grid_search = full_search
    np.testing.assert_array_equal(climbed, full)
    alone = np.concatenate([sp._choose(y[r], x, 1, p, np)["smoothing"][None] for r in (0, 13)])
    np.testing.assert_array_equal(alone, climbed[[0, 13]])


def test_gcv_bound_skips_values_and_keeps_the_choice_with_gaps():
    """On irregular x with NaN gaps ('omit'), the bounded search scores fewer coarse values
    than the full grid and picks the same smoothing."""
    from deltaflow.kernels import _gridsearch as gs
    from deltaflow.kernels import spline as sp

    x = _irregular(n=160, seed=14)
    rng = np.random.default_rng(15)
    y = np.sin(3 * x) + 0.02 * rng.standard_normal((6, x.size))
    y[1, [10, 50, 51]] = np.nan
    y[4, 100] = np.nan
    p = sp.SplineParams(nan_policy="omit", degree=3, criterion="gcv")
    calls = {"bounded": 0, "full": 0}
    full_search = gs.grid_search

    def counting(kind, **fixed):
        def search(lg, rows, evaluate, *a, climb=False, bound=None, **k):
            def counted(v, sel):
                calls[kind] += sel.size
                return evaluate(v, sel)

            kw = {"climb": climb, "bound": bound} if kind == "bounded" else {}
            return full_search(lg, rows, counted, *a, **k, **kw)

        return search

    try:
        gs.grid_search = counting("bounded")
        bounded = sp._choose(y, x, 2, p, np)["smoothing"]
        gs.grid_search = counting("full")
        full = sp._choose(y, x, 2, p, np)["smoothing"]
    finally:
        gs.grid_search = full_search
    np.testing.assert_array_equal(bounded, full)
    assert calls["bounded"] < 0.8 * calls["full"]


def test_automatic_smoothing_is_per_series_in_any_batch():
    """Rows whose GCV searches take different paths (lengths 12-60, uniform and irregular x,
    noise 1-50 %): each row's choice alone equals its choice in the batch. The climb hands
    the evaluations rows out of order; a shortcut that took that for every row in order gave
    8 of 200 such batches other rows' smoothing."""
    rng = np.random.default_rng(0)
    for trial in range(120):
        n = int(rng.integers(12, 60))
        x = np.sort(rng.uniform(0, 1, n)) if trial % 2 else np.linspace(0, 1, n)
        if np.min(np.diff(x)) < 1e-3:
            continue
        y = np.sin(6 * x)[None] + rng.uniform(0.01, 0.5) * rng.standard_normal((3, n))
        _, both = dfl.differentiate_array(y, x, method="spline", return_choices=True)
        alone = [
            dfl.differentiate_array(y[i], x, method="spline", return_choices=True)[1]["smoothing"]
            for i in range(3)
        ]
        np.testing.assert_array_equal(both["smoothing"], np.ravel(alone), err_msg=f"trial {trial}")


def test_ml_choice_is_kalmans_and_avoids_gcvs_undersmoothing():
    """criterion='ml' (the default) picks what kalman picks for the same spline; on noisy
    Black-Scholes prices, where GCV undersmooths a draw now and then, its worst Gamma over
    the draws is far better."""
    t = TRUTHS["black_scholes"]
    x = t.grid(201)
    y = np.stack([noisy(t(x), lev, seed=s) for lev in (0.05, 0.1) for s in range(8)])
    step = x[1] - x[0]
    for degree, model in ((5, "ca"), (7, "cj")):
        _, ch = dfl.differentiate_array(y, x, method="spline", degree=degree, return_choices=True)
        _, k = dfl.differentiate_array(y, x, method="kalman", model=model, return_choices=True)
        want = k["measurement_noise"] / (k["process_noise"] * step**degree)
        np.testing.assert_allclose(ch["smoothing"], want, rtol=1e-9)
    true = t(x, 2)
    worst = {}
    for c in ("ml", "gcv"):
        d = dfl.differentiate_array(y, x, method="spline", order=2, criterion=c)
        worst[c] = np.max(np.sqrt(np.mean((d - true) ** 2, axis=-1)))
    assert worst["ml"] < 0.6 * worst["gcv"], worst  # measured 0.0102 against 0.0261


@pytest.mark.parametrize("d", [2, 3, 4])
def test_lanes_read_and_write_the_rows_they_are_given(d):
    """The lanes kernels read a subset of rows in place (any order) and write their results
    into the same rows: exactly what the gathered rows give, unobserved samples unread."""
    from deltaflow.kernels import _statespace as ss

    x = _irregular(n=60, seed=41)
    u, _ = ss.scaled(x)
    rng = np.random.default_rng(42)
    y = np.sin(2 * x) + 0.05 * rng.standard_normal((40, x.size))
    obs = rng.random(x.size) > 0.2
    g = ss.gains(u, obs, d, 1e-2)
    pick = np.array([3, 39, 0, 17, 18, 5, 22, 9, 30, 31, 2, 11, 26, 35, 7, 1, 20, 13])
    ynan = np.where(obs, y, np.nan)  # never read
    deriv = np.full(y.shape, -1.0)
    fit = np.full(y.shape, -1.0)
    ss.smooth_into(g, ynan, pick, 1, 3.0, deriv, fit)
    ref_d, ref_f = ss.smooth(g, np.where(obs, y, 0.0)[pick], 1, 3.0, True)
    np.testing.assert_array_equal(deriv[pick], ref_d)
    np.testing.assert_array_equal(fit[pick], ref_f)
    others = np.setdiff1d(np.arange(y.shape[0]), pick)
    assert (deriv[others] == -1.0).all() and (fit[others] == -1.0).all()
    ys = np.where(obs, y, 0.0)
    rss = ss.innovation_rss(g, ynan, pick)
    np.testing.assert_array_equal(rss, ss.innovation_rss(g, ys[pick]))
    g2 = ss.gains(u, obs, d, 1e2, smoother=False)
    both = ss.innovation_rss_many([g, g2], ynan, pick)
    np.testing.assert_array_equal(both[:, 0], rss)
    np.testing.assert_array_equal(both[:, 1], ss.innovation_rss(g2, ys[pick]))
    np.testing.assert_array_equal(ss.fit_rss(g, ynan, pick), ss.fit_rss(g, ys[pick]))


def test_groups_on_threads_give_what_one_thread_gives(monkeypatch):
    """A batch of many groups (per-series smoothing and NaN patterns) runs its groups side by
    side on threads: the same results as one group after another."""
    from deltaflow.kernels import _stencil

    x = _irregular(n=70, seed=51)
    rng = np.random.default_rng(52)
    y = np.cos(x) + 0.02 * rng.standard_normal((30, x.size))
    y[4, 10] = y[9, [0, 33]] = np.nan
    kw = dict(method="spline", order=1, nan_policy="omit", return_smoothed=True)
    serial = dfl.differentiate_array(y, x, **kw)
    auto = dfl.differentiate_array(y, x, **kw, ends="corrected")
    monkeypatch.setattr(_stencil, "_THREAD_MIN_SIZE", 1)  # threads even for this batch
    for ref, got in zip(serial, dfl.differentiate_array(y, x, **kw), strict=True):
        np.testing.assert_array_equal(got, ref)
    for ref, got in zip(auto, dfl.differentiate_array(y, x, **kw, ends="corrected"), strict=True):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_end_correction_in_lanes_equals_row_by_row(d):
    """The boundary correction computed in the lanes' blocks (many rows) gives exactly what
    the row kernels and the per-row correction give (one row at a time)."""
    from deltaflow.kernels import _statespace as ss

    x = _irregular(n=90, seed=61)
    u, _ = ss.scaled(x)
    rng = np.random.default_rng(62)
    y = x**d + np.sin(3 * x) + 0.05 * rng.standard_normal((19, x.size))
    obs = rng.random(x.size) > 0.15
    ys = np.where(obs, y, 0.0)
    g = ss.gains(u, obs, d, 1e-3)
    for order in range(1, d):
        deriv, fit = ss.end_correction(g, ys, order, 2.0, True)
        assert np.isfinite(deriv).all()
        for r in (0, 7, 18):
            one_d, one_f = ss.end_correction(g, ys[r : r + 1], order, 2.0, True)
            np.testing.assert_array_equal(deriv[r], one_d[0])
            np.testing.assert_array_equal(fit[r], one_f[0])
        np.testing.assert_array_equal(ss.end_correction(g, ys, order, 2.0, False)[0], deriv)


def test_grid_search_scoring_many_values_at_once_changes_nothing():
    """grid_search with ``evaluate_many`` (the coarse grid in one call, the fine points once
    per group of rows sharing a coarse best) returns what one value per call returns."""
    from deltaflow.kernels import _gridsearch as gs

    rng = np.random.default_rng(71)
    rows = 37
    peak = rng.uniform(-1.5, 4.0, rows)
    width = rng.uniform(0.3, 2.0, rows)
    calls = []

    def score(values, sel):
        v = np.asarray(values, dtype=float)[:, None]
        s = -((v - peak[sel]) ** 2) / width[sel] + 0.1 * np.sin(7 * v + sel)
        return s, s * 2.0

    def one(value, sel):
        calls.append(1)
        s, a = score([value], sel)
        return s[0], a[0]

    def many(values, sel):
        calls.append(len(values))
        return score(values, sel)

    lg = np.arange(-2.0, 5.0 + 1e-9, 1.0)
    ref = gs.grid_search(lg, rows, one, 0.05)
    n_one = len(calls)
    calls.clear()
    got = gs.grid_search(lg, rows, one, 0.05, evaluate_many=many)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(calls) < n_one  # fewer calls: the values of a call share its rows


def test_rows_of_masks_exactly_and_groups_by_value_and_nan_pattern():
    from deltaflow.kernels import _statespace as ss

    rng = np.random.default_rng(0)
    y = rng.standard_normal((50, 30))
    y[3, 4] = np.nan
    y[7, :] = np.inf  # sum inf: tested, no NaN
    y[8, 2], y[8, 5] = -np.inf, np.inf  # sum NaN without a NaN
    y[9] = 1e308  # the sum overflows
    y[10, [0, 29]] = np.nan
    y2, mask = ss.rows_of(y)
    np.testing.assert_array_equal(mask, np.isnan(y))
    vals = rng.choice([1.0, 2.0, 3.5], 50)
    for m in (np.zeros_like(mask), mask):
        groups = ss.group_rows(vals, m)
        assert sorted(np.concatenate(groups).tolist()) == list(range(50))
        for g in groups:
            assert np.unique(vals[g]).size == 1
            assert (m[g] == m[g[0]]).all()


@pytest.mark.parametrize("d", [2, 3, 4])
def test_end_correction_of_the_fit_alone_is_the_corrected_fit(d):
    """Order 0 without the fit (smoothed once, corrected in place) gives exactly the
    corrected fit that the general path returns next to any derivative."""
    from deltaflow.kernels import _statespace as ss

    x = _irregular(n=80, seed=63)
    u, _ = ss.scaled(x)
    rng = np.random.default_rng(64)
    y = np.cos(2 * x) + x**d + 0.05 * rng.standard_normal((21, x.size))
    obs = rng.random(x.size) > 0.1
    ys = np.where(obs, y, 0.0)
    g = ss.gains(u, obs, d, 1e-2)
    alone, none = ss.end_correction(g, ys, 0, 1.0, False)
    assert none is None
    for order in (0, 1):
        np.testing.assert_array_equal(alone, ss.end_correction(g, ys, order, 1.5, True)[1])
