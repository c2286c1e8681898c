"""The peers benchmark in a tiny configuration: it runs, scores against the truth and reports.

Only the always-installed peers (NumPy, SciPy) take part, so this stays fast; the full run
is ``python benchmarks/peers.py``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_bench", ROOT / "benchmarks" / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peers_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_signals_have_exact_derivatives(peers):
    """Each signal's stated derivatives agree with a fine finite difference of the signal."""
    for sig in peers.make_signals():
        x = sig.x
        for order in (1, 2):
            h = 1e-4 * (x[-1] - x[0])
            f = sig.derivs[order - 1]
            fd = (f(x + h) - f(x - h)) / (2 * h)
            scale = np.max(np.abs(sig.truth(order)))
            assert np.max(np.abs(fd - sig.truth(order))) < 1e-5 * scale, (sig.name, order)


def test_irregular_signal_is_irregular(peers):
    sig = next(s for s in peers.make_signals() if s.irregular)
    d = np.diff(sig.x)
    assert np.all(d > 0)
    assert d.max() / d.min() > 2.0


def test_score_is_zero_for_the_truth_and_scales(peers):
    sig = peers.make_signals(quick=True)[0]
    assert peers.score(sig, 1, sig.truth(1)) == (0.0, 0.0)
    interior, whole = peers.score(sig, 1, sig.truth(1) * 1.1)
    assert math.isclose(whole, 0.1, rel_tol=1e-9)


def test_failures_are_recorded_not_dropped(peers):
    sig = peers.make_signals(quick=True)[0]

    def boom(x, Y, nu):
        raise RuntimeError("bad input")

    def nan(x, Y, nu):
        return np.full_like(Y, np.nan)

    assert peers.run_one(boom, sig, sig.truth(0), 1, {}).status.startswith("error (RuntimeError")
    assert peers.run_one(nan, sig, sig.truth(0), 1, {}).status.startswith("NaN/inf")


def test_pool_is_rms_over_draws_and_any_failure_fails(peers):
    S = peers.Score
    got = peers.pool([S(3.0, 1.0, "ok", 1.0), S(4.0, 7.0, "ok", 3.0)])
    assert got.status == "ok" and got.seconds == 2.0
    assert math.isclose(got.interior, math.sqrt(12.5)) and math.isclose(got.whole, 5.0)
    bad = peers.pool([S(1.0, 1.0), S(status="NaN/inf at 3 points"), S(1.0, 1.0)])
    assert bad.status == "NaN/inf at 3 points (draw 2 of 3)" and math.isnan(bad.interior)


def test_draws_are_independent_and_noise_free_is_one(peers):
    sig = peers.make_signals(quick=True)[0]
    seeds = {peers.noise_seed(si, li, d) for si in range(8) for li in range(5) for d in range(9)}
    assert len(seeds) == 8 * 5 * 9
    a, b = (peers.add_noise(sig.truth(0), 0.05, peers.noise_seed(0, 3, d)) for d in (0, 1))
    assert not np.allclose(a, b)
    assert peers.draws_at(0.0, 5) == 1 and peers.draws_at(0.01, 5) == 5


def test_unknown_peer_package_is_named(peers):
    with pytest.raises(ValueError, match="unknown package.*'nope'"):
        peers.build_peers(packages=["nope"])


def test_quick_run_writes_report(peers, tmp_path):
    payload = peers.run(
        True,
        tmp_path,
        auto="finite_difference",
        log=lambda s: None,
        packages=("numpy", "scipy"),
        methods=("finite_difference",),
    )
    md = (tmp_path / "peers.md").read_text()
    assert "## Targets" in md and "`finite_difference` within 1.25x" in md
    for fig in ("peers_ratio.png", "peers_noise.png", "peers_throughput.png"):
        assert (tmp_path / fig).stat().st_size > 1000
    data = json.loads((tmp_path / "peers.json").read_text())
    rows = data["accuracy"]
    # every peer appears with defaults and an oracle for every case, never dropped
    cases = {(r["signal"], r["noise"], r["order"]) for r in rows}
    for pkg, meth in (("numpy", "gradient"), ("scipy", "savgol_filter")):
        for setting in ("defaults", "oracle-interior", "oracle-whole"):
            got = {
                (r["signal"], r["noise"], r["order"])
                for r in rows
                if (r["package"], r["method"], r["setting"]) == (pkg, meth, setting)
            }
            assert got == cases, (pkg, meth, setting)
    # the oracle is never worse than the defaults on the metric it was chosen for
    for r in rows:
        if r["setting"] == "defaults" and r["status"] == "ok":
            o = next(
                q
                for q in rows
                if q["setting"] == "oracle-interior"
                and (q["signal"], q["noise"], q["order"], q["package"], q["method"])
                == (r["signal"], r["noise"], r["order"], r["package"], r["method"])
            )
            if r["package"] == "numpy":  # the default is on numpy's grid
                assert o["rmse_interior"] <= r["rmse_interior"] * (1 + 1e-12)
    # scipy's savgol ignores irregular spacing and the notes say so
    assert "ignored (mean step)" in md
    assert payload["targets"]["accuracy_cases"] > 0
    # noisy cases pool QUICK_DRAWS draws, noise-free ones one; the report says so
    assert {r["draws"] for r in rows if r["noise"] > 0} == {peers.QUICK_DRAWS}
    assert {r["draws"] for r in rows if r["noise"] == 0} == {1}
    assert f"{peers.QUICK_DRAWS} independent draws" in md
    # the throughput table carries the bandwidth bound, the fastest row a copy could give
    copy, fft = [t for t in data["throughput"] if t["family"] == "reference"]
    assert copy["status"] == "ok" and copy["series_per_s"] > 0
    assert "copy (bandwidth bound)" in md
    # and the FFT bound of the spectral family
    assert fft["bounds"] == "spectral" and fft["series_per_s"] > 0
    assert "rfft + irfft (FFT bound)" in md


def test_speedup_ceiling_is_copy_rate_over_peer_rate(peers):
    tput = [
        {
            "package": "numpy",
            "method": "copy",
            "family": "reference",
            "status": "ok",
            "series_per_s": 1e6,
        },
        {
            "package": "PyNumDiff",
            "method": "finitediff",
            "family": "finite difference",
            "status": "ok",
            "series_per_s": 1e5,
        },
        {
            "package": "deltaflow",
            "method": "finite_difference",
            "family": "finite difference",
            "status": "ok",
            "series_per_s": 5e5,
        },
    ]
    (pair,) = peers.evaluate_targets([], tput, "auto")["speed"]
    assert pair["ratio"] == pytest.approx(5.0) and pair["ceiling"] == pytest.approx(10.0)
    # a method without choices is its own given-parameters run
    assert pair["ratio_given"] == pytest.approx(5.0)
    # a given-parameters row pairs with its method, apart from the automatic one
    tput[1:] = [
        {"package": "PyNumDiff", "method": "savgoldiff", "family": "local polynomial",
         "status": "ok", "series_per_s": 100.0},
        {"package": "deltaflow", "method": "savgol", "family": "local polynomial",
         "status": "ok", "series_per_s": 5e3},
        {"package": "deltaflow", "method": "savgol" + peers.GIVEN, "family": "local polynomial",
         "status": "ok", "series_per_s": 2e4},
    ]  # fmt: skip
    t = peers.evaluate_targets([], tput, "auto")
    (pair,) = t["speed"]
    assert pair["ratio"] == pytest.approx(50.0) and pair["ratio_given"] == pytest.approx(200.0)
    assert t["speed_failing"] == [pair] and t["speed_given_failing"] == []
    # a reference bounding one family (the FFT pair, spectral) sets that family's ceiling only
    tput[1:] = [
        {"package": "numpy", "method": "fft", "family": "reference", "bounds": "spectral",
         "status": "ok", "series_per_s": 2e4},
        {"package": "PyNumDiff", "method": "spectraldiff", "family": "spectral",
         "status": "ok", "series_per_s": 1e3},
        {"package": "deltaflow", "method": "spectral", "family": "spectral",
         "status": "ok", "series_per_s": 4e3},
        {"package": "PyNumDiff", "method": "finitediff", "family": "finite difference",
         "status": "ok", "series_per_s": 1e5},
        {"package": "deltaflow", "method": "finite_difference", "family": "finite difference",
         "status": "ok", "series_per_s": 5e5},
    ]  # fmt: skip
    speed = peers.evaluate_targets([], tput, "auto")["speed"]
    ceilings = {s["deltaflow"]: s["ceiling"] for s in speed}
    assert ceilings == pytest.approx({"spectral": 20.0, "finite_difference": 10.0})


def test_given_call_applies_the_choices_made_beforehand(peers):
    x = np.linspace(0.0, 6.0, 200)
    rng = np.random.default_rng(0)
    Y = np.sin(x) + 0.01 * rng.standard_normal((6, x.size))
    assert peers.deltaflow_given_call("finite_difference", x, Y[:3]) is None
    call = peers.deltaflow_given_call("savgol", x, Y[:3])
    _, ch = peers.dfl.differentiate_array(Y[:3], x, method="savgol", return_choices=True)
    # rows 3..5 take the choices of rows 0..2, the same as passing them as parameters
    w = [int(ch["window"][i % 3]) for i in range(6)]
    want = [peers.dfl.differentiate_array(Y[i], x, method="savgol", window=w[i]) for i in range(6)]
    np.testing.assert_allclose(call(x, Y, 1), np.stack(want), rtol=1e-12, atol=1e-12)


def test_unknown_deltaflow_method_is_named(peers, tmp_path):
    with pytest.raises(ValueError, match="unknown deltaflow method 'nope'"):
        peers.run(True, tmp_path, log=lambda s: None, packages=(), methods=("nope",))


def test_batch_paths_are_timed_in_calls_of_a_few_series_too(peers):
    """A batch API whose cost per series grows with the batch is not held to one call: the
    calls of TPUT_CHUNK series give the same result and, being faster here, are kept."""
    x = np.linspace(0.0, 1.0, 50)
    Y = np.random.default_rng(0).standard_normal((3 * peers.TPUT_CHUNK + 7, 50))

    def quadratic(x, Y, nu):  # cost per series grows with the number of series
        time.sleep(1e-8 * Y.shape[0] ** 2)
        return np.gradient(Y, x, axis=1)

    chunked = peers._in_calls(quadratic)
    np.testing.assert_array_equal(chunked(x, Y, 1), quadratic(x, Y, 1))
    batched = peers.Peer(
        "toy", "quadratic", "finite difference", quadratic, {}, lambda s, o: [], batched=True
    )
    rec = peers.throughput([batched], [], Y.shape[0], 50, 0.5, lambda m: None)[-1]
    assert rec["status"] == "ok" and rec["calls"] == f"calls of {peers.TPUT_CHUNK}"
    looped = peers.Peer("toy", "quadratic", "finite difference", quadratic, {}, lambda s, o: [])
    rec = peers.throughput([looped], [], Y.shape[0], 50, 0.5, lambda m: None)[-1]
    assert rec["calls"] == "one call"  # no batch API: its call is timed as it is
