"""The tvr fits solved many series at a time (lockstep lanes, vectorised over them) are
bit for bit the fits solved one series at a time: lanes converging at different
iterations, constant series, irregular x, every tv_order, one partial group, several
groups and a partial one, and a lone series."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from deltaflow.kernels import tvr


@numba.njit(cache=False)
def _one_by_one(y, rows, alpha, iters, tol, out):
    r, n = y.shape
    m, w = rows.shape
    band = np.empty((n, w))
    chol = np.empty((n, w))
    g = np.empty(m)
    z = np.empty(n)
    s = np.empty(n)
    yr = np.empty(n)
    for k in range(r):
        for i in range(n):
            yr[i] = y[k, i]
            s[i] = yr[i]
        tvr._solve(yr, s, rows, alpha[k], iters, tol, band, chol, g, z)
        for i in range(n):
            out[k, i] = s[i]


def _alone(y, rows, alpha, iters, tol, out):
    """Each series through _fit_rows on its own (a batch of one)."""
    for k in range(y.shape[0]):
        tvr._fit_rows(y[k : k + 1], rows, alpha[k : k + 1], iters, tol, out[k : k + 1])


@pytest.mark.parametrize("tv_order", [1, 2, 3])
@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("count", [1, 11, 3 * tvr._LANES + 5])
def test_lanes_bit_identical_to_one_series_at_a_time(tv_order, irregular, count):
    """tv_order 1: the lanes are _solve's fits. tv_order 2 has its own written-out kernel
    (_fit_rows4, _solve's fits up to rounding: test_tvr_cv) and tv_order 3 the Givens one
    (_fit_rows_qr, test_tvr_order2); there a series' fit in a batch is its fit alone, to
    the last bit."""
    rng = np.random.default_rng(tv_order + 10 * irregular + count)
    n = 300
    x = np.sort(rng.uniform(0.0, 6.0, n)) if irregular else np.linspace(0.0, 6.0, n)
    rows = tvr.difference_rows(x, tv_order + 1)
    y = np.sin(x)[None, :] + 0.02 * rng.standard_normal((count, n))
    if count > 5:
        y[3] = 1.0  # a constant series
        y[5] *= 40.0  # a series on another scale
    alpha = np.exp(rng.uniform(-3.0, 4.0, count))  # lanes converge at different iterations
    for iters, tol in ((20, 1e-6), (8, 1e-4), (1, 1e-6), (200, 1e-10)):
        want = np.empty_like(y)
        got = np.empty_like(y)
        (_one_by_one if tv_order == 1 else _alone)(y, rows, alpha, iters, tol, want)
        tvr._fit_rows(y, rows, alpha, iters, tol, got)
        np.testing.assert_array_equal(got, want)
