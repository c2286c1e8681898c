"""spectral on irregular x: least-squares harmonics read by the same rules as FFT bins."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import deltaflow as dfl
from deltaflow.kernels import _lsspectrum as ls
from deltaflow.kernels._spectral_wrap import wrap_mismatch
from deltaflow.kernels.spectral import EXTENSIONS

REFLECT, PERIODIC, CLOSED = (EXTENSIONS.index(k) for k in ("reflect", "periodic", "closed"))


def warped(n: int, a: float, b: float, seed: int = 7, closed: bool = True) -> np.ndarray:
    """From a to b (included) with spacing varying ~2.3x end to end and +-30 % jitter; not
    ``closed``: a jittered uniform grid of n steps from a, without b (the step across the
    wrap is then the mean step, which the "periodic" extension assumes)."""
    u = np.linspace(0.0, 1.0, n)
    x = a + (b - a) * (0.6 * u + 0.4 * u**2) if closed else a + (b - a) * np.arange(n) / n
    h = np.gradient(x)
    x[1:-1] += np.random.default_rng(seed).uniform(-0.3, 0.3, n - 2) * h[1:-1]
    return x


@pytest.mark.parametrize("kind", ["periodic", "reflect"])
@pytest.mark.parametrize("n", [33, 64, 201])
def test_bins_equal_the_fft_on_a_uniform_grid(kind, n):
    # the conventions every rule relies on: on a uniform grid the least-squares bins are
    # the rfft bins of the same extension (up to the harmonics fitted)
    x = np.linspace(0.0, 3.0, n)
    rng = np.random.default_rng(n)
    y = rng.standard_normal((3, n))
    if kind == "reflect":
        y[:, 0] = y[:, -1] = 0.0  # the odd reflection of a series that vanishes at its ends
        ext = np.concatenate([y, -y[:, -2:0:-1]], axis=1)
    else:
        ext = y
    fft = np.fft.rfft(ext, axis=-1)
    pl = ls.plan(x, kind)
    got = ls.bins(ls.coefficients(y, pl), pl)
    np.testing.assert_allclose(got, fft[:, : pl.nb], atol=1e-9 * np.abs(fft).max())
    assert pl.m == ext.shape[-1]


@pytest.mark.parametrize("kind", ["periodic", "closed"])
def test_wrap_test_in_x_equals_the_index_test_on_a_uniform_grid(kind):
    x = np.linspace(0.0, 2.0, 150)
    y = np.sin(3 * x)[None] + 0.05 * np.random.default_rng(1).standard_normal((4, 150))
    np.testing.assert_allclose(wrap_mismatch(y, kind, x), wrap_mismatch(y, kind), rtol=1e-7)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("closed", [True, False])
def test_periodic_series_on_a_warped_grid_are_exact(order, closed):
    n = 180
    x = warped(n, 0.0, 2 * np.pi, closed=closed)
    y = np.sin(x) + 0.3 * np.cos(4 * x)
    truth = {1: np.cos(x) - 1.2 * np.sin(4 * x), 2: -np.sin(x) - 4.8 * np.cos(4 * x)}[order]
    d, ch = dfl.differentiate_array(y, x, method="spectral", order=order, return_choices=True)
    assert int(ch["extension"]) == (CLOSED if closed else PERIODIC)
    np.testing.assert_allclose(d, truth, atol=1e-9 * np.abs(truth).max())


def test_noisy_periodic_series_pick_the_right_period_and_beat_the_spline():
    n = 201
    x = warped(n, 0.0, 2 * np.pi)
    rng = np.random.default_rng(3)
    # at 1 % noise the closed period is told from the other (at 5-10 % the two fit about
    # equally well, as on a uniform grid, and either gives about the same derivative)
    y1 = np.sin(x) + 0.02 * rng.standard_normal((20, n))
    _, ch = dfl.differentiate_array(y1, x, method="spectral", return_choices=True)
    assert np.mean(np.asarray(ch["extension"]) == CLOSED) >= 0.8
    y = np.sin(x) + 0.1 * rng.standard_normal((20, n))  # 5 % of the spread
    d, ch = dfl.differentiate_array(y, x, method="spectral", return_choices=True)
    assert np.mean(np.asarray(ch["extension"]) != REFLECT) >= 0.9
    err = np.sqrt(np.mean((d - np.cos(x)) ** 2))
    spline = dfl.differentiate_array(y, x, method="spline")
    assert err < 0.6 * np.sqrt(np.mean((spline - np.cos(x)) ** 2))
    # auto takes spectral for most of them
    _, cha = dfl.differentiate_array(y, x, method="auto", return_choices=True)
    from deltaflow.kernels.auto import CANDIDATES

    assert np.mean(np.asarray(cha["method"]) == CANDIDATES.index("spectral")) >= 0.7


def test_randomly_sampled_periodic_series():
    # uniformly random sample times (gaps of several mean steps): the basis keeps only the
    # harmonics the grid resolves, and the nested fit keeps the low ones' noise down
    x = np.r_[0.0, np.sort(np.random.default_rng(2).uniform(0, 2 * np.pi, 148)), 2 * np.pi]
    y = np.sin(x) + 0.02 * np.random.default_rng(1).standard_normal((20, 150))
    d, cha = dfl.differentiate_array(y, x, method="auto", return_choices=True)
    spline = dfl.differentiate_array(y, x, method="spline")
    err = np.sqrt(np.mean((d - np.cos(x)) ** 2))
    assert err < 0.6 * np.sqrt(np.mean((spline - np.cos(x)) ** 2))


def test_non_periodic_series_take_the_reflection_and_polynomials_stay_exact():
    x = warped(150, -1.0, 2.0)
    y = 1 - x + 0.5 * x**2 - 0.25 * x**3
    d, ch = dfl.differentiate_array(y, x, method="spectral", return_choices=True)
    assert int(ch["extension"]) == REFLECT
    np.testing.assert_allclose(d, -1 + x - 0.75 * x**2, atol=1e-8)
    rng = np.random.default_rng(0)
    noisy = np.exp(x)[None] + 0.01 * np.ptp(np.exp(x)) * rng.standard_normal((10, 150))
    dn, chn = dfl.differentiate_array(noisy, x, method="spectral", return_choices=True)
    assert np.all(np.asarray(chn["extension"]) == REFLECT)
    assert np.sqrt(np.mean((dn[:, 15:-15] - np.exp(x)[15:-15]) ** 2)) < 0.1 * np.exp(2.0)


def test_given_cutoff_and_smoothed_output():
    x = warped(120, 0.0, 2 * np.pi)
    y = np.sin(2 * x) + 0.02 * np.random.default_rng(5).standard_normal(120)
    out = dfl.differentiate_array(y, x, method="spectral", cutoff=0.2, periodic=True)
    assert np.sqrt(np.mean((out - 2 * np.cos(2 * x)) ** 2)) < 0.1
    da_ = xr.DataArray(y, dims="t", coords={"t": x})
    sm = da_.delta.smooth("t", method="spectral")
    assert np.sqrt(np.mean((sm.values - np.sin(2 * x)) ** 2)) < 0.02


@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_chunked_equals_unchunked(chunks):
    x = warped(90, 0.0, 2 * np.pi)
    rng = np.random.default_rng(chunks)
    y = np.sin(x)[None] * rng.uniform(0.5, 2, (10, 1)) + 0.05 * rng.standard_normal((10, 90))
    arr = xr.DataArray(y, dims=("s", "t"), coords={"t": x})
    whole = arr.delta.differentiate("t", method="spectral").values
    lazy = arr.copy(data=da.from_array(y, chunks=(chunks, 90))).delta.differentiate(
        "t", method="spectral"
    )
    np.testing.assert_allclose(lazy.values, whole, rtol=0, atol=1e-12 * np.abs(whole).max())


def test_too_long_irregular_series_are_refused_by_name_and_auto_skips_spectral():
    n = ls.MAX_SAMPLES + 1
    x = np.cumsum(np.random.default_rng(0).uniform(0.5, 1.5, n))
    with pytest.raises(ValueError, match=f"at most {ls.MAX_SAMPLES} samples"):
        dfl.differentiate_array(np.sin(x / 50), x, method="spectral")
    from deltaflow.kernels.auto import AutoParams, candidate_names

    assert "spectral" not in candidate_names(AutoParams(), 1, x)
    assert "spectral" in candidate_names(AutoParams(), 1, x[:1000])


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("order", [1, 2])
def test_a_known_period_is_fitted_on_any_grid(irregular, order):
    # 2.6 periods of a two-harmonic signal: no extension of the span is periodic, but with
    # the period given its harmonics are fitted exactly
    period = 1.7
    x = np.linspace(0.3, 0.3 + 2.6 * period, 160)
    if irregular:
        x[1:-1] += np.random.default_rng(4).uniform(-0.3, 0.3, 158) * (x[1] - x[0])
    w = 2 * np.pi / period
    y = np.sin(w * x) + 0.4 * np.cos(3 * w * x)
    truth = {
        1: w * np.cos(w * x) - 1.2 * w * np.sin(3 * w * x),
        2: -(w**2) * np.sin(w * x) - 3.6 * w**2 * np.cos(3 * w * x),
    }[order]
    d = dfl.differentiate_array(y, x, method="spectral", order=order, period=period)
    np.testing.assert_allclose(d, truth, atol=1e-9 * np.abs(truth).max())
    free = dfl.differentiate_array(y, x, method="spectral", order=order)
    assert np.abs(free - truth).max() > 1e-3 * np.abs(truth).max()  # the choice cannot know
    noisy = y + 0.02 * np.random.default_rng(5).standard_normal((20, 160))
    dn = dfl.differentiate_array(noisy, x, method="spectral", order=order, period=period)
    spline = dfl.differentiate_array(noisy, x, method="spline", order=order)
    assert np.sqrt(np.mean((dn - truth) ** 2)) < 0.5 * np.sqrt(np.mean((spline - truth) ** 2))


def test_period_contradicting_periodic_false_is_refused():
    x = np.linspace(0, 1, 50)
    with pytest.raises(ValueError, match="period is given, so periodic cannot be False"):
        dfl.differentiate_array(np.sin(x), x, method="spectral", period=1.0, periodic=False)
    with pytest.raises(ValueError, match="method 'spectral': period"):
        dfl.differentiate_array(np.sin(x), x, method="spectral", period=-1.0)


def test_plan_cache_is_bounded_in_bytes(monkeypatch):
    monkeypatch.setattr(ls, "_CACHE", type(ls._CACHE)())
    grids = [np.linspace(0, 1, 200) + 0.001 * np.sin(np.arange(200) * k) for k in (1, 2, 3)]
    one = ls._nbytes(ls.plan(grids[0], "closed"))
    monkeypatch.setattr(ls, "CACHE_BYTES", int(2.5 * one))
    for g in grids:
        ls.plan(g, "closed")
    assert len(ls._CACHE) == 2  # the oldest dropped
    assert ls.plan(grids[2], "closed") is ls.plan(grids[2], "closed")  # a hit


def test_the_irregular_length_limit_is_a_stated_capability():
    from deltaflow.kernels import get_method

    spec = get_method("spectral")
    assert spec.describe()["irregular_max_samples"] == ls.MAX_SAMPLES
    assert spec.takes_irregular(ls.MAX_SAMPLES) and not spec.takes_irregular(ls.MAX_SAMPLES + 1)
    assert get_method("spline").takes_irregular(10**6)
