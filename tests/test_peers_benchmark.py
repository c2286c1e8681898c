"""The peers benchmark in a tiny configuration: it runs, scores against the truth and reports.

Only the always-installed peers (NumPy, SciPy) take part, so this stays fast; the full run
is ``python benchmarks/peers.py``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
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
    # the throughput table carries the bandwidth bound, the fastest row a copy could give
    (copy,) = [t for t in data["throughput"] if t["family"] == "reference"]
    assert copy["status"] == "ok" and copy["series_per_s"] > 0
    assert "copy (bandwidth bound)" in md


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


def test_unknown_deltaflow_method_is_named(peers, tmp_path):
    with pytest.raises(ValueError, match="unknown deltaflow method 'nope'"):
        peers.run(True, tmp_path, log=lambda s: None, packages=(), methods=("nope",))
