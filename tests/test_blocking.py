"""Kernels with ``block_bytes`` see at most that many bytes of series at a time, same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deltaflow.kernels import api
from deltaflow.kernels.api import run_kernel
from deltaflow.kernels.registry import get_method


def _series(rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 3.0, n)
    rng = np.random.default_rng(5)
    f = rng.uniform(0.5, 2.0, (rows, 1))
    return x, np.sin(f * x) + 0.01 * rng.standard_normal((rows, n))


@pytest.mark.parametrize("name", ["spectral", "auto", "spline"])
def test_blocks_give_the_whole_batch_result(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "BLOCK_MIN_ROWS", 1)  # blocks of block_bytes alone
    x, y = _series(23, 128)
    y = y.reshape(23, 1, 128)  # leading dims are flattened into rows and restored
    spec = get_method(name)
    whole = dataclasses.replace(spec, block_bytes=None)
    # 5 series per block: 23 = 4 x 5 + 3, so the last block is short
    blocked = dataclasses.replace(spec, block_bytes=5 * 128 * 8)
    p = spec.make_params({})
    ref = run_kernel(whole, y, x, 1, p, smoothed=spec.has_smoothed)
    got = run_kernel(blocked, y, x, 1, p, smoothed=spec.has_smoothed)
    np.testing.assert_allclose(got.output.derivative, ref.output.derivative, rtol=1e-12, atol=1e-12)
    if spec.has_smoothed:
        np.testing.assert_allclose(got.output.smoothed, ref.output.smoothed, rtol=1e-12, atol=1e-12)
    assert got.output.derivative.shape == y.shape
    assert set(got.chosen) == set(ref.chosen)
    for k in ref.chosen:
        assert np.shape(got.chosen[k]) == (23, 1)
        np.testing.assert_array_equal(got.chosen[k], ref.chosen[k])
    # choices handed in (the engine's first pass) are split the same way
    again = run_kernel(blocked, y, x, 1, p, chosen=ref.chosen)
    np.testing.assert_allclose(
        again.output.derivative, ref.output.derivative, rtol=1e-12, atol=1e-12
    )


def test_spectral_and_auto_declare_a_block() -> None:
    for name in ("spectral", "auto"):
        assert get_method(name).block_bytes == 1 << 22


@pytest.mark.parametrize(
    ("cap_rows", "sizes"),
    [(64, [9, 9, 9, 3]), (4, [4, 4, 4, 4, 4, 4, 4, 2])],
)
def test_blocks_hold_a_floor_of_series_within_the_cap(
    cap_rows: int, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few long series per block_bytes: blocks get BLOCK_MIN_ROWS series (per-call work from
    the coordinates is shared), as long as their input fits in BLOCK_CAP_BYTES."""
    x, y = _series(30, 128)
    monkeypatch.setattr(api, "BLOCK_MIN_ROWS", 9)
    monkeypatch.setattr(api, "BLOCK_CAP_BYTES", cap_rows * 128 * 8)
    spec = get_method("spectral")
    seen: list[int] = []

    def choose(yb, *args):
        seen.append(yb.shape[0])
        return spec.choose(yb, *args)

    # block_bytes alone would give blocks of 2 series
    counting = dataclasses.replace(spec, block_bytes=2 * 128 * 8, choose=choose)
    p = spec.make_params({})
    got = run_kernel(counting, y, x, 1, p)
    assert seen == sizes
    ref = run_kernel(dataclasses.replace(spec, block_bytes=None), y, x, 1, p)
    np.testing.assert_allclose(got.output.derivative, ref.output.derivative, rtol=1e-12, atol=1e-12)
