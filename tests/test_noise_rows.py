"""_noise.noise_sigma's compiled row path (float64 NumPy input) gives the numbers of the
whole-array NumPy expression it replaces, bit for bit: uniform and irregular x, every
difference order, short series, ties, NaN rows, 1-D and N-D input."""

from __future__ import annotations

import numpy as np
import pytest

from deltaflow.kernels import _noise


def _numpy_reference(y, k, x):
    n = y.shape[-1]
    k = max(1, min(k, n - 2))
    if x is None or _noise._uniform(x):
        d = y
        for _ in range(k):
            d = d[..., 1:] - d[..., :-1]
        d = d / float(np.linalg.norm(_noise._binom_row(k)))
    else:
        w = _noise.difference_weights(np.asarray(x, dtype=np.float64), k)
        d = None
        for j in range(k + 1):
            term = w[:, j] * y[..., j : n - k + j]
            d = term if d is None else d + term
    return np.median(np.abs(d), axis=-1) / _noise._MAD_NORMAL


@pytest.mark.parametrize("n", [3, 5, 8, 101, 1000])
@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("shape", [(), (7,), (2, 3)])
def test_rows_equal_the_numpy_expression(n, irregular, shape):
    rng = np.random.default_rng(n + 10 * irregular + len(shape))
    x = np.linspace(0.0, 1.0, n)
    if irregular:
        x[1:-1] += rng.uniform(-0.3, 0.3, n - 2) / (n - 1)
    y = rng.standard_normal((*shape, n)) + np.sin(np.linspace(0.0, 3.0, n))
    rows = y.reshape(-1, n)
    rows[0] = np.round(rows[0], 1)  # ties
    if rows.shape[0] > 1:
        rows[1, n // 2] = np.nan
    for k in (1, 2, 4, 6):
        for grid in (x, None):
            got = _noise.noise_sigma(y, np, k=k, x=grid)
            want = _numpy_reference(y, k, grid)
            assert type(got) is type(want)
            np.testing.assert_array_equal(got, want)
