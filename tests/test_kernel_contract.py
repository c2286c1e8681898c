"""The kernel contract, checked for every registered method through one table.

Each method gets the same checks: the oracle table (analytic truths, clean and noisy,
uniform and irregular), batched == one-by-one, float32, decreasing x, per-series choices,
and the chunk contract at the array level (a block with the method's halo reproduces the
whole-series result). A new method must add its row to ``ORACLE_RMSE``.
"""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.kernels import get_method, registered, run_kernel

from truths import TRUTHS, noisy

# Largest acceptable RMSE of the derivative, relative to the RMS of the true derivative,
# over the interior (10 % trimmed at each end) and over the whole range.
# keys: method -> (order, noise level) -> (interior, whole)
ORACLE_RMSE: dict[str, dict[tuple[int, float], tuple[float, float]]] = {
    "finite_difference": {
        (1, 0.0): (1e-3, 1e-3),
        (2, 0.0): (1e-3, 5e-3),
    },
    "spline": {
        (1, 0.0): (1e-9, 2e-4),
        (2, 0.0): (1e-7, 1e-2),
        (1, 0.01): (3e-2, 8e-2),
        (2, 0.01): (0.3, 0.45),
    },
    "kalman": {
        (1, 0.0): (1e-9, 1e-4),
        (2, 0.0): (1e-7, 8e-3),
        (1, 0.01): (3e-2, 6e-2),
        (2, 0.01): (0.25, 0.4),
    },
    # whole-range order 2: the odd reflection leaves a kink in the second derivative at
    # the ends, so the last few samples carry Gibbs ripple (sin, periodic: 3e-16 / 2e-3).
    # Worst measured: 5.7e-7/3.9e-4, 1.6e-4/0.12, 2.3e-2/3.6e-2, 0.16/0.39
    "spectral": {
        (1, 0.0): (1e-5, 1e-3),
        (2, 0.0): (2e-4, 0.2),
        (1, 0.01): (0.04, 0.06),
        (2, 0.01): (0.25, 0.6),
    },
    # auto: finite_difference (accuracy 4) on noise-free data (spectral where periodic), a
    # smoother otherwise. Worst measured: 2.9e-8/4.8e-8, 1.2e-8/2.3e-8, 1.4e-2/2.9e-2,
    # 0.12/0.17 (before the spline's corrected ends: 1.4e-2/3.1e-2, 0.14/0.24)
    "auto": {
        (1, 0.0): (1e-7, 1e-7),
        (2, 0.0): (1e-7, 1e-7),
        (1, 0.01): (0.025, 0.04),
        (2, 0.01): (0.17, 0.25),
    },
    "tvr": {
        (1, 0.0): (5e-4, 5e-4),
        (2, 0.0): (5e-4, 5e-4),
        (1, 0.01): (0.04, 0.06),
        (2, 0.01): (0.2, 0.3),
    },
    # automatic window; worst measured: 3.2e-6/3.0e-6, 4.0e-4/3.6e-4, 1.9e-2/2.5e-2,
    # 1.4e-1/1.8e-1 (order 2 on Black-Scholes: Gamma is small away from the strike)
    "savgol": {
        (1, 0.0): (1e-5, 1e-5),
        (2, 0.0): (1e-3, 1e-3),
        (1, 0.01): (2.5e-2, 3.5e-2),
        (2, 0.01): (2e-1, 2.5e-1),
    },
    # automatic span; worst measured: 1.5e-4/1.7e-4, 5.1e-3/7.3e-3, 2.7e-2/3.8e-2,
    # 1.7e-1/2.6e-1
    "lowess": {
        (1, 0.0): (3e-4, 3e-4),
        (2, 0.0): (1e-2, 1.5e-2),
        (1, 0.01): (4e-2, 5.5e-2),
        (2, 0.01): (2.5e-1, 3.5e-1),
    },
}

# irregular x where it differs: spectral's least-squares harmonics reach 2/3 of the mean
# step's Nyquist frequency, so the reflection's ripple is cut off earlier. Worst measured
# (jittered grid): order 2 5.1e-4/0.12 without noise, 0.28/0.49 at 1 % (Black-Scholes)
ORACLE_RMSE_IRREGULAR: dict[str, dict[tuple[int, float], tuple[float, float]]] = {
    "spectral": {(2, 0.0): (1e-3, 0.2), (2, 0.01): (0.35, 0.6)},
}

ORACLE_SIGNALS = ("sin", "exp", "poly", "black_scholes")
N = 201


def _methods():
    return sorted(registered())


def _cases(spec, irregular=False):
    table = dict(ORACLE_RMSE.get(spec.name, {}))
    if irregular:
        table.update(ORACLE_RMSE_IRREGULAR.get(spec.name, {}))
    for order in (1, 2):
        if order not in spec.orders:
            continue
        for (o, level), tol in table.items():
            if o == order:
                yield order, level, tol


def test_every_method_has_an_oracle_row():
    missing = [m for m in _methods() if m not in ORACLE_RMSE]
    assert not missing, f"add these methods to ORACLE_RMSE: {missing}"


@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
@pytest.mark.parametrize("signal", ORACLE_SIGNALS)
@pytest.mark.parametrize("method", _methods())
def test_oracle_table(method, signal, irregular):
    spec = get_method(method)
    if irregular and not spec.irregular:
        pytest.skip(f"{method} needs uniform spacing")
    truth = TRUTHS[signal]
    x = truth.grid(N, irregular=irregular, seed=5)
    clean = truth(x)
    failures = []
    for order, level, (tol_in, tol_all) in _cases(spec, irregular):
        if order >= len(truth.derivs):
            continue
        y = noisy(clean, level, seed=11) if level else clean
        d = dfl.differentiate_array(y, x, method=method, order=order)
        true = truth(x, order)
        scale = np.sqrt(np.mean(true**2))
        trim = N // 10
        err_in = np.sqrt(np.mean((d - true)[trim:-trim] ** 2)) / scale
        err_all = np.sqrt(np.mean((d - true) ** 2)) / scale
        if not (err_in <= tol_in and err_all <= tol_all):
            failures.append(
                f"order {order} noise {level}: interior {err_in:.2e} (<= {tol_in:.0e}), "
                f"whole {err_all:.2e} (<= {tol_all:.0e})"
            )
    assert not failures, "; ".join(failures)


def _batch(n=120, rows=5, seed=0, irregular=False):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 3.0, n)
    if irregular:
        x[1:-1] += rng.uniform(-0.3, 0.3, n - 2) * (x[1] - x[0])
    phase = rng.uniform(0, 2 * np.pi, (rows, 1))
    freq = rng.uniform(0.5, 2.0, (rows, 1))
    amp = rng.uniform(0.5, 3.0, (rows, 1))
    y = amp * np.sin(freq * x + phase) + 0.02 * rng.standard_normal((rows, n))
    return x, y


@pytest.mark.parametrize("method", _methods())
def test_batched_equals_one_by_one(method):
    spec = get_method(method)
    for irregular in (False, True) if spec.irregular else (False,):
        x, y = _batch(irregular=irregular)
        for order in (1, 2):
            if order not in spec.orders:
                continue
            full = dfl.differentiate_array(y, x, method=method, order=order)
            for r in range(y.shape[0]):
                one = dfl.differentiate_array(y[r], x, method=method, order=order)
                np.testing.assert_allclose(
                    full[r], one, rtol=1e-9, atol=1e-9 * np.abs(one).max(), err_msg=f"row {r}"
                )
            # rows whose choices differ (noise from none to 30 %): a search that visits
            # rows in its own order must still give each row its own result
            levels = np.array([0.0, 0.3, 0.01, 0.1, 0.03])[:, None]
            mixed = np.sin(3.0 * x) + levels * np.random.default_rng(5).standard_normal(y.shape)
            dm = dfl.differentiate_array(mixed, x, method=method, order=order)
            for r in range(y.shape[0]):
                one = dfl.differentiate_array(mixed[r], x, method=method, order=order)
                np.testing.assert_allclose(
                    dm[r], one, rtol=1e-9, atol=1e-9 * np.abs(one).max(), err_msg=f"mixed {r}"
                )
            y3 = np.stack([y, y[::-1]])  # several leading axes
            d3 = dfl.differentiate_array(y3, x, method=method, order=order)
            np.testing.assert_allclose(d3[0], full, rtol=1e-9, atol=1e-9 * np.abs(full).max())


@pytest.mark.parametrize("method", _methods())
def test_float32_and_axis(method):
    x, y = _batch(rows=4)
    d64 = dfl.differentiate_array(y, x, method=method, order=1)
    d32 = dfl.differentiate_array(y.astype(np.float32), x, method=method, order=1)
    assert d32.dtype == np.float32
    scale = np.abs(d64).max()
    np.testing.assert_allclose(d32, d64, atol=2e-3 * scale)
    dt = dfl.differentiate_array(y.T, x, method=method, order=1, axis=0)
    np.testing.assert_allclose(dt.T, d64, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize("method", _methods())
def test_decreasing_coordinate(method):
    x, y = _batch(rows=3)
    d = dfl.differentiate_array(y, x, method=method, order=1)
    d_rev = dfl.differentiate_array(y[:, ::-1], x[::-1], method=method, order=1)
    np.testing.assert_allclose(d_rev[:, ::-1], d, rtol=1e-9, atol=1e-9 * np.abs(d).max())


@pytest.mark.parametrize("method", _methods())
def test_choices_are_per_series(method):
    spec = get_method(method)
    x, y = _batch(rows=4)
    p = spec.make_params()
    chosen = spec.choose(y, x, 1, p, np) if spec.choose else {}
    for name, value in chosen.items():
        assert np.shape(value) == y.shape[:-1], (name, np.shape(value))


@pytest.mark.parametrize("method", _methods())
def test_halo_block_reproduces_whole_series(method):
    """The chunk contract at array level: a block plus its halo gives the same values."""
    spec = get_method(method)
    x, y = _batch(n=300, rows=3, seed=4, irregular=spec.irregular)
    for order in (1, 2):
        if order not in spec.orders:
            continue
        p = spec.make_params()
        halo = spec.footprint(order, p)
        if halo is None:
            continue
        full = run_kernel(spec, y, x, order, p)
        for a, b in ((0, 100), (100, 200), (150, 300), (37, 91)):
            lo, hi = max(a - halo, 0), min(b + halo, x.shape[0])
            part = run_kernel(spec, y[:, lo:hi], x[lo:hi], order, p, chosen=full.chosen)
            np.testing.assert_allclose(
                part.output.derivative[:, a - lo : b - lo],
                full.output.derivative[:, a:b],
                rtol=1e-10,
                atol=1e-10 * np.abs(full.output.derivative).max(),
                err_msg=f"block [{a}, {b}) with halo {halo}, order {order}",
            )


@pytest.mark.parametrize("method", _methods())
def test_unknown_parameter_is_named(method):
    with pytest.raises(ValueError, match=rf"method '{method}': wibble: unknown parameter"):
        dfl.differentiate_array(np.arange(50.0), method=method, wibble=3)


def test_methods_listing_describes_every_method():
    info = dfl.methods()
    assert set(info) == set(registered())
    for name, d in info.items():
        assert d["orders"][0] <= 1 and d["orders"][-1] >= 2, name
        assert "nan_policy" in d["parameters"]
        assert d["footprint"] in ("local", "global")
