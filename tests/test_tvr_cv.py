"""tvr's automatic alpha: the cross-validation kernel's reweighting step is the dense
solve of the same system, and a series' alpha does not depend on the rest of its batch."""

from __future__ import annotations

import numpy as np
import pytest

from deltaflow.kernels import tvr


@pytest.mark.parametrize("tv_order", [1, 2, 3])
@pytest.mark.parametrize("irregular", [False, True])
def test_ldl_step_is_the_dense_solve(tv_order, irregular):
    """One step: s = (I + D^T W D)^-1 y with W = alpha / max(|D y|, eps), per lane."""
    rng = np.random.default_rng(tv_order + 10 * irregular)
    n, lanes = 40, tvr._CV_V
    x = np.sort(rng.uniform(0.0, 3.0, n)) if irregular else np.linspace(0.0, 3.0, n)
    rows = tvr.difference_rows(x, tv_order + 1)
    m, w = rows.shape
    y = np.sin(2 * x)[:, None] + 0.05 * rng.standard_normal((n, lanes))
    alpha = np.geomspace(1e-3, 1.0, lanes)
    s = y.copy()
    tvr._irls_ldl(
        y,
        s,
        rows,
        tvr._pair_products(rows),
        alpha,
        1,
        np.zeros(lanes),
        np.empty((m, lanes)),
        np.empty((n, w, lanes)),
        np.empty((n, lanes)),
        np.empty((w + 4, lanes)),
    )
    d = np.zeros((m, n))
    for j in range(m):
        d[j, j : j + w] = rows[j]
    for k in range(lanes):
        g = np.abs(d @ y[:, k])
        eps = max(1e-6 * g.max(), 1e-10 * alpha[k], 1e-300)
        a = np.eye(n) + d.T @ np.diag(alpha[k] / np.maximum(g, eps)) @ d
        want = np.linalg.solve(a, y[:, k])
        np.testing.assert_allclose(s[:, k], want, rtol=0, atol=1e-9 * np.ptp(y[:, k]))


@pytest.mark.parametrize("tv_order", [1, 2, 3])
@pytest.mark.parametrize("irregular", [False, True])
def test_alpha_of_a_series_does_not_depend_on_its_batch(tv_order, irregular):
    """Alone, in a batch, in another order: the same alpha to the last bit (the lanes of
    a group stop at different alphas and iterations; the last group is padded)."""
    rng = np.random.default_rng(7 + tv_order)
    n = 120
    x = np.sort(rng.uniform(0.0, 6.0, n)) if irregular else np.linspace(0.0, 6.0, n)
    count = tvr._CV_V + 3
    level = np.geomspace(1e-3, 0.3, count)[:, None]
    y = np.sin(x)[None, :] * rng.uniform(0.5, 3.0, (count, 1))
    y = y + level * rng.standard_normal((count, n))
    y[2] = 1.0  # constant
    p = tvr.TVRParams()
    batch = tvr.choose_alpha(y, x, tv_order, p)
    perm = rng.permutation(count)
    shuffled = tvr.choose_alpha(y[perm], x, tv_order, p)
    np.testing.assert_array_equal(shuffled, batch[perm])
    for k in (0, 2, count - 1):
        np.testing.assert_array_equal(tvr.choose_alpha(y[k : k + 1], x, tv_order, p), batch[k])
    assert np.all(np.isfinite(batch)) and np.all(batch > 0)


def test_the_walk_stops_after_patience_worse_alphas():
    """Errors are finite up to the best alpha plus ``patience`` and inf after it, and the
    best of the shortened walk is the best of the whole grid on a clear single minimum."""
    rng = np.random.default_rng(3)
    n = 200
    x = np.linspace(0.0, 6.0, n)
    y = np.sin(x)[None, :] + 0.05 * rng.standard_normal((3, n))
    halves = tvr.cv_halves(x, 2)
    grid = np.log(tvr._REL_ALPHA)
    stacked = np.concatenate([y, np.full((3, 1), 0.05)], axis=1)
    short = np.empty((3, grid.size))
    full = np.empty((3, grid.size))
    tvr._cv_kernel(stacked, halves, grid, 2, 1e-4, 3, short)
    tvr._cv_kernel(stacked, halves, grid, 2, 1e-4, 0, full)
    assert np.all(np.isfinite(full))
    for r in range(3):
        best = int(np.argmin(full[r]))
        assert np.argmin(short[r]) == best
        last = int(np.flatnonzero(np.isfinite(short[r]))[-1])
        assert last == min(best + 3, grid.size - 1)
        np.testing.assert_array_equal(short[r, : last + 1], full[r, : last + 1])


@pytest.mark.parametrize("steps", [1, 6])
@pytest.mark.parametrize("irregular", [False, True])
def test_written_out_kernel_matches_the_general_one(irregular, steps):
    """tv_order 2's written-out kernel: the general kernel's fits up to rounding, over one
    step (1e-9) and several with lanes stopping at different steps (the reweighting
    amplifies rounding: weights span 1e6; 2e-7 of the range measured after 6 steps)."""
    rng = np.random.default_rng(5 + irregular)
    n, lanes = 60, tvr._CV_V
    x = np.linspace(0.0, 4.0, n)
    if irregular:  # jittered (sorted uniform draws make near-coincident samples, where
        # the reweighting itself turns rounding into O(1) differences at large alpha)
        x[1:-1] += rng.uniform(-0.3, 0.3, n - 2) * (x[1] - x[0])
    rows = tvr.difference_rows(x, 3)
    m, w = rows.shape
    assert w == 4
    y = np.cos(x)[:, None] + 0.03 * rng.standard_normal((n, lanes))
    alpha = np.geomspace(1e-3, 3.0, lanes)
    stop = np.geomspace(1e-6, 1e-2, lanes)
    rr = tvr._pair_products(rows)
    general = y.copy()
    tvr._irls_ldl(
        y,
        general,
        rows,
        rr,
        alpha,
        steps,
        stop,
        np.empty((m, lanes)),
        np.empty((n, w, lanes)),
        np.empty((n, lanes)),
        np.empty((w + 4, lanes)),
    )
    written = y.copy()
    tvr._irls_ldl3(
        y,
        written,
        rows,
        tvr._padded(rr),
        alpha,
        steps,
        stop,
        np.zeros((m + 6, lanes)),
        np.full((n + 6) * 4 * lanes, np.nan),
        np.full((n + 6) * lanes, np.nan),
        np.empty((3, lanes)),
    )
    tol = 1e-9 if steps == 1 else 1e-5
    np.testing.assert_allclose(written, general, rtol=0, atol=tol * np.ptp(y))


def test_tv_order_2_fits_are_the_reference_solves_up_to_rounding():
    """_fit_rows' written-out path (tv_order 2) against _solve one series at a time on a
    jittered grid: the same fits up to rounding, which the reweighting's weights (up to
    1e6 apart, 1e10 on a flat series) amplify to ~3e-5 of the range (measured)."""
    rng = np.random.default_rng(1)
    n = 300
    x = np.linspace(0.0, 6.0, n)
    x[1:-1] += rng.uniform(-0.3, 0.3, n - 2) * (x[1] - x[0])
    rows = tvr.difference_rows(x, 3)
    m, w = rows.shape
    y = np.sin(x)[None, :] + 0.02 * rng.standard_normal((12, n))
    y[3] = 1.0
    y[5] *= 40.0
    alpha = np.exp(rng.uniform(-3.0, 4.0, 12))
    got = np.empty_like(y)
    tvr._fit_rows(y, rows, alpha, 20, 1e-6, got)
    for k in range(12):
        s = y[k].copy()
        tvr._solve(
            y[k].copy(),
            s,
            rows,
            alpha[k],
            20,
            1e-6,
            np.empty((n, w)),
            np.empty((n, w)),
            np.empty(m),
            np.empty(n),
        )
        scale = max(np.ptp(y[k]), 1.0)
        np.testing.assert_allclose(got[k], s, rtol=0, atol=2e-4 * scale, err_msg=f"row {k}")
