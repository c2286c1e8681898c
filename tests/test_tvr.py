"""tvr: exactness on polynomials, piecewise-linear signals, the automatic alpha, errors."""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.kernels import get_method
from deltaflow.kernels.tvr import TVRParams, difference_rows, fit

from truths import TRUTHS, noisy, rmse


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("tv_order", [1, 2, 3])
def test_polynomials_of_degree_tv_order_are_not_penalised(tv_order, irregular):
    """The penalty vanishes on polynomials of degree <= tv_order: the fit is the data."""
    rng = np.random.default_rng(1)
    x = np.linspace(0, 2, 60)
    if irregular:
        x[1:-1] += rng.uniform(-0.01, 0.01, 58)
    y = np.polyval(rng.standard_normal(tv_order + 1), x)
    s = fit(y[None], x, np.array([10.0]), tv_order, TVRParams())
    # the IRLS weights of an exactly flat penalty reach their cap (1e10): ~1e-5 roundoff
    np.testing.assert_allclose(s[0], y, atol=1e-4 * np.ptp(y))


def test_difference_rows_are_plain_differences_on_uniform_x():
    x = np.arange(10.0) * 0.1
    rows = difference_rows(x, 3)
    np.testing.assert_allclose(rows, np.tile([-1.0, 3.0, -3.0, 1.0], (7, 1)), atol=1e-12)


def test_chartrand_recovers_a_piecewise_constant_derivative():
    """TV of the first derivative suits a signal whose slope jumps (a triangle wave)."""
    x = np.linspace(0, 4, 400)
    slope = np.where((x // 1) % 2 == 0, 1.0, -1.0)
    y = np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(x))])
    yn = y + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    d = dfl.differentiate_array(yn, x, method="tvr", tv_order=1)
    fd = dfl.differentiate_array(yn, x)
    away = np.abs(x - np.round(x)) > 0.1  # away from the corners
    assert np.sqrt(np.mean((d - slope)[away] ** 2)) < 0.05
    assert rmse(d, slope) < 0.25 * rmse(fd, slope)


def test_larger_alpha_smooths_more():
    x = np.linspace(0, 1, 200)
    y = noisy(np.sin(6 * x), 0.05, seed=3)
    tv = []
    for alpha in (0.01, 0.1, 1.0):
        d = dfl.differentiate_array(y, x, method="tvr", alpha=alpha, tv_order=1)
        tv.append(np.abs(np.diff(d)).sum())
    assert tv[0] > tv[1] > tv[2]


def test_automatic_alpha_is_per_series_and_beats_finite_differences():
    t = TRUTHS["sin"]
    x = t.grid(300)
    clean = t(x)
    rng = np.random.default_rng(4)
    y = clean + np.array([[0.005], [0.05]]) * rng.standard_normal((2, x.size))
    d, s, chosen = dfl.differentiate_array(
        y, x, method="tvr", return_smoothed=True, return_choices=True
    )
    assert chosen["alpha"].shape == (2,)
    assert chosen["alpha"][1] > chosen["alpha"][0] > 0
    fd = dfl.differentiate_array(y, x)
    for r in range(2):
        assert rmse(d[r], t(x, 1), 30) < 0.5 * rmse(fd[r], t(x, 1), 30)
        assert rmse(s[r], clean) < rmse(y[r], clean)


@pytest.mark.parametrize("order", [1, 2])
def test_noisy_irregular_grid(order):
    t = TRUTHS["exp"]
    x = t.grid(201, irregular=True, seed=2)
    d = dfl.differentiate_array(noisy(t(x), 0.01, seed=3), x, method="tvr", order=order)
    true = t(x, order)
    assert rmse(d, true, 20) < (0.04 if order == 1 else 0.2) * np.sqrt(np.mean(true**2))


def test_spec_capabilities():
    spec = get_method("tvr")
    assert spec.irregular and spec.has_smoothed and spec.orders == (1, 2, 3)
    assert spec.footprint(1, spec.make_params()) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 2, "tv_order": 1}, "tv_order must be >= order"),
        ({"alpha": -1.0}, "method 'tvr': alpha: Input should be greater than 0"),
        ({"tv_order": 4}, "method 'tvr': tv_order"),
        ({"iterations": 0}, "method 'tvr': iterations"),
        ({"order": 4}, "order must be in 1..3, got 4"),
    ],
)
def test_invalid_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dfl.differentiate_array(np.arange(20.0) ** 2, method="tvr", **kwargs)


def test_too_short_series_is_named():
    with pytest.raises(ValueError, match="method 'tvr' with these parameters needs at least"):
        dfl.differentiate_array(np.arange(4.0), method="tvr")
