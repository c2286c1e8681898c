"""benchmarks/gpu_check.py without a GPU: it fails cleanly, and its logic runs on NumPy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_without_cupy_it_says_so_and_exits_2(gpu_check, capsys):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    assert gpu_check.main([]) == 2
    assert "CuPy not available" in capsys.readouterr().err


def test_selftest_reports_every_asked_method(gpu_check, capsys):
    rc = gpu_check.main(
        [
            "--selftest",
            "--series",
            "64",
            "--length",
            "120",
            "--cpu-budget",
            "0.05",
            "--methods",
            "finite_difference,spectral",
        ]
    )
    out = capsys.readouterr().out
    assert "targets:" in out and "device-to-device copy" in out
    fd = next(line for line in out.splitlines() if line.startswith("finite_difference"))
    # NumPy against itself: identical results; as fast as the CPU, so the 20x target is missed
    assert float(fd.split()[1]) == 0.0
    assert "CPU ratio" in fd
    sp = next(line for line in out.splitlines() if line.startswith("spectral"))
    assert "not GPU-capable" in sp or "met" in sp or "MISSED" in sp
    assert rc == 1


def test_verdicts_name_each_missed_target(gpu_check):
    r = gpu_check.Result("savgol", "ok", 1e-8, 100.0, 0.1, 10.0, 10.0)
    missed = " ".join(r.verdicts())
    assert "agreement" in missed and "copy ratio 0.10 < 0.5" in missed and "CPU ratio" in missed
    assert gpu_check.Result("savgol", "ok", 1e-12, 2000.0, 0.7, 10.0, 200.0).verdicts() == []
