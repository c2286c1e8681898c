"""kalman: exactness, the dense Gaussian-process reference, ML noise choices, NaNs, errors."""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.kernels.kalman import ML_DERIVATIVE_FACTOR

from truths import TRUTHS, noisy


def _irregular(n=60, seed=0, a=0.0, b=3.0):
    rng = np.random.default_rng(seed)
    return np.sort(np.r_[a, b, rng.uniform(a, b, n - 2)])


def _wiener_cov(xs, pa, pb, d):
    """Cov(f^(pa)(a), f^(pb)(b)) over all pairs of xs, for f the (d-1)-fold integral of a
    unit Wiener process started at 0 (exact Gauss–Legendre quadrature of a polynomial)."""
    a, b = xs[:, None, None], xs[None, :, None]
    lo = np.minimum(a, b)
    gx, gw = np.polynomial.legendre.leggauss(d + 1)
    s = 0.5 * lo * (gx + 1.0)
    w = 0.5 * lo * gw
    ka, kb = d - 1 - pa, d - 1 - pb
    fa = (a - s) ** ka / np.prod(np.arange(1, ka + 1))
    fb = (b - s) ** kb / np.prod(np.arange(1, kb + 1))
    return np.sum(w * fa * fb, axis=-1)


@pytest.mark.parametrize("model", ["cv", "ca", "cj"])
def test_matches_dense_gaussian_process_with_diffuse_start(model):
    """The RTS smoother equals universal kriging with the integrated-Wiener covariance."""
    d = {"cv": 2, "ca": 3, "cj": 4}[model]
    x = _irregular(n=40, seed=1)
    rng = np.random.default_rng(2)
    y = np.sin(2 * x) + 0.05 * rng.standard_normal(x.size)
    q, r = 30.0, 2e-3
    xs = x - x[0]
    kyy = q * _wiener_cov(xs, 0, 0, d)
    v = kyy + r * np.eye(x.size)
    h = np.stack([xs**p / np.prod(np.arange(1, p + 1)) for p in range(d)], axis=1)
    vi_h = np.linalg.solve(v, h)
    beta = np.linalg.solve(h.T @ vi_h, vi_h.T @ y)
    alpha = np.linalg.solve(v, y - h @ beta)
    for order in range(1, min(d, 3)):  # kalman gives orders up to 2
        kdy = q * _wiener_cov(xs, order, 0, d)
        hd = np.zeros_like(h)
        for p in range(order, d):
            hd[:, p] = xs ** (p - order) / np.prod(np.arange(1, p - order + 1))
        ref = hd @ beta + kdy @ alpha
        got = dfl.differentiate_array(
            y, x, method="kalman", model=model, order=order, process_noise=q, measurement_noise=r
        )
        np.testing.assert_allclose(got, ref, atol=1e-7 * np.abs(ref).max())


@pytest.mark.parametrize(("model", "degree"), [("cv", 3), ("ca", 5), ("cj", 7)])
def test_is_the_smoothing_spline_with_lam_r_over_q(model, degree):
    x = _irregular(n=70, seed=3)
    rng = np.random.default_rng(4)
    y = np.cos(3 * x) + 0.05 * rng.standard_normal((2, x.size))
    q, r = 5.0, 1e-2
    step = (x[-1] - x[0]) / (x.size - 1)
    smoothing = r / q / step**degree
    for order in range(1, min((degree + 1) // 2, 3)):
        k = dfl.differentiate_array(
            y, x, method="kalman", model=model, order=order, process_noise=q, measurement_noise=r
        )
        s = dfl.differentiate_array(
            y, x, method="spline", degree=degree, order=order, smoothing=smoothing
        )
        np.testing.assert_allclose(k, s, rtol=1e-10, atol=1e-10 * np.abs(s).max())


@pytest.mark.parametrize("model", ["cv", "ca", "cj"])
def test_noiseless_line_gives_the_slope(model):
    x = _irregular(n=50, seed=5, a=-2.0, b=5.0)
    y = 0.3 - 1.7 * x
    for kw in ({}, {"process_noise": 1e-3, "measurement_noise": 1.0}):
        d = dfl.differentiate_array(y, x, method="kalman", model=model, **kw)
        np.testing.assert_allclose(d, -1.7, atol=1e-9)


def test_noiseless_quadratic_gives_exact_curvature_with_ca():
    x = _irregular(n=50, seed=6)
    y = 2.0 + 0.5 * x - 1.25 * x**2
    d1 = dfl.differentiate_array(
        y, x, method="kalman", order=1, process_noise=1e-2, measurement_noise=1.0
    )
    d2 = dfl.differentiate_array(
        y, x, method="kalman", order=2, process_noise=1e-2, measurement_noise=1.0
    )
    np.testing.assert_allclose(d1, 0.5 - 2.5 * x, atol=1e-9)
    np.testing.assert_allclose(d2, -2.5, atol=1e-8)


def test_ml_measurement_noise_estimates_the_noise_variance():
    t = TRUTHS["sin"]
    x = t.grid(400, irregular=True, seed=7)
    levels = np.array([0.002, 0.01, 0.05])
    ys = np.stack([noisy(t(x), lev, seed=3) for lev in levels])
    _, ch = dfl.differentiate_array(ys, x, method="kalman", return_choices=True)
    sigma2 = (levels * np.ptp(t(x))) ** 2
    np.testing.assert_allclose(ch["measurement_noise"], sigma2, rtol=0.25)
    ratio = ch["measurement_noise"] / ch["process_noise"]
    assert ratio[0] < ratio[1] < ratio[2]  # more noise, more smoothing


def test_one_noise_given_the_other_chosen():
    t = TRUTHS["exp"]
    x = t.grid(300, seed=1)
    y = noisy(t(x), 0.01, seed=8)
    sigma2 = (0.01 * np.ptp(t(x))) ** 2
    _, both = dfl.differentiate_array(y, x, method="kalman", return_choices=True)
    _, ch_r = dfl.differentiate_array(
        y, x, method="kalman", measurement_noise=sigma2, return_choices=True
    )
    assert ch_r["measurement_noise"] == sigma2
    # with r fixed at (about) its ML value the chosen q lands near the joint choice
    assert 0.3 < ch_r["process_noise"] / both["process_noise"] < 3.0
    _, ch_q = dfl.differentiate_array(
        y, x, method="kalman", process_noise=both["process_noise"], return_choices=True
    )
    assert ch_q["process_noise"] == both["process_noise"]
    # r by ML given q, then times the derivative factor
    f = ML_DERIVATIVE_FACTOR["ca"][1]
    assert 0.5 < ch_q["measurement_noise"] / (sigma2 * f) < 2.0


def test_ml_choice_beats_fixed_extremes_for_derivatives():
    t = TRUTHS["black_scholes"]
    x = t.grid(201, irregular=True, seed=5)
    y = np.stack([noisy(t(x), 0.01, seed=s) for s in range(3)])
    true = t(x, 2)

    def err(**kw):
        d = dfl.differentiate_array(y, x, method="kalman", order=2, **kw)
        return np.sqrt(np.mean((d - true)[:, 20:-20] ** 2))

    auto = err()
    r = (0.01 * np.ptp(t(x))) ** 2
    assert auto < 0.5 * err(process_noise=r * 1e-8, measurement_noise=r)
    assert auto < 0.5 * err(process_noise=r * 1e2, measurement_noise=r)


def test_nan_omit_skips_updates_exactly():
    """Skipping the update at a NaN gives the smoother of the observed samples alone."""
    x = _irregular(n=60, seed=9)
    rng = np.random.default_rng(10)
    y = np.sin(x) + 0.02 * rng.standard_normal((2, x.size))
    gaps = [0, 4, 5, 6, 30, 59]
    y[1, gaps] = np.nan
    kw = {"process_noise": 2.0, "measurement_noise": 4e-4, "model": "ca"}
    for order in (1, 2):
        d, f = dfl.differentiate_array(
            y, x, method="kalman", order=order, nan_policy="omit", return_smoothed=True, **kw
        )
        keep = ~np.isnan(y[1])
        sub, fsub = dfl.differentiate_array(
            y[1, keep], x[keep], method="kalman", order=order, return_smoothed=True, **kw
        )
        np.testing.assert_allclose(d[1, keep], sub, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(f[1, keep], fsub, rtol=1e-9, atol=1e-9)
        assert np.isfinite(d).all()  # gaps (ends included) get the model's prediction
        clean = dfl.differentiate_array(y[0], x, method="kalman", order=order, **kw)
        np.testing.assert_allclose(d[0], clean, rtol=1e-12)


def test_nan_omit_with_ml_and_propagate():
    x = np.linspace(0, 4, 150)
    rng = np.random.default_rng(11)
    y = np.sin(x) + 0.01 * rng.standard_normal((3, x.size))
    y[2, 50:60] = np.nan
    d, ch = dfl.differentiate_array(y, x, method="kalman", nan_policy="omit", return_choices=True)
    assert np.isfinite(d).all()
    assert np.isfinite(ch["process_noise"]).all() and np.isfinite(ch["measurement_noise"]).all()
    assert np.max(np.abs(d[2] - np.cos(x))[15:-15]) < 0.1
    p = dfl.differentiate_array(y, x, method="kalman", nan_policy="propagate")
    assert np.isnan(p[2]).all()
    np.testing.assert_allclose(p[:2], d[:2], rtol=1e-12)
    with pytest.raises(ValueError, match=r"10 NaN\(s\), at index \(2, 50\)"):
        dfl.differentiate_array(y, x, method="kalman")


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        (
            {"model": "cv", "order": 2},
            ValueError,
            "method 'kalman': order 2 needs model='ca' (model='cv' gives orders up to 1)",
        ),
        ({"order": 3}, ValueError, "method 'kalman': order must be in 1..2, got 3"),
        ({"model": "cz"}, ValueError, "method 'kalman': model: Input should be 'cv', 'ca' or 'cj'"),
        (
            {"process_noise": -1.0},
            ValueError,
            "method 'kalman': process_noise: Input should be greater than 0",
        ),
        (
            {"measurement_noise": 0.0},
            ValueError,
            "method 'kalman': measurement_noise: Input should be greater than 0",
        ),
    ],
)
def test_invalid_parameters(kwargs, exc, message):
    with pytest.raises(exc) as err:
        dfl.differentiate_array(np.sin(np.arange(30.0)), method="kalman", **kwargs)
    assert message in str(err.value)


def test_too_few_samples():
    with pytest.raises(ValueError, match="needs at least 5 samples for order 1, got 4"):
        dfl.differentiate_array(np.arange(4.0), method="kalman")


@pytest.mark.parametrize("d", [2, 3, 4])
def test_innovation_rss_by_lanes_is_bit_identical_to_row_by_row(d):
    """The likelihood's residual sums, many rows at once, are exactly the row kernel's."""
    from deltaflow.kernels import _statespace as ss

    x = _irregular(n=75, seed=31)
    u, _ = ss.scaled(x)
    rng = np.random.default_rng(32)
    y = np.sin(x) + 0.05 * rng.standard_normal((37, x.size))  # LANES + 5
    for obs in (np.ones(x.size, dtype=bool), rng.random(x.size) > 0.2):
        ys = np.where(obs, y, 0.0)
        g = ss.gains(u, obs, d, 1e-2)
        for rows in (ys, ys[:3], ys[:1]):
            ref = np.empty((rows.shape[0], 1))
            ss._innovation_rss_rows(rows, obs, g.fs, g.ks, g.sinv, g.es, g.minv, ref)
            np.testing.assert_array_equal(ss.innovation_rss(g, rows), ref[:, 0])
