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


@pytest.mark.parametrize("name", ["spectral", "auto"])
def test_blocks_in_flight_on_threads_give_the_serial_result(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the main thread NumPy blocks run on the pool, at most as many at once as the
    cores (here 3) and BLOCK_CAP_BYTES allow, written back in order: the same derivatives
    and choices as one block at a time; a block's error is raised."""
    import threading
    import time

    x, y = _series(41, 64)
    spec = get_method(name)
    p = spec.make_params({})
    monkeypatch.setattr(api, "BLOCK_MIN_ROWS", 1)
    # one block at a time (a small batch stays on the caller's thread)
    ref = run_kernel(dataclasses.replace(spec, block_bytes=4 * 64 * 8), y, x, 1, p)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=3)
    monkeypatch.setattr(api, "_threads_for", lambda size: 3)
    monkeypatch.setattr(api, "_pool", lambda: pool)
    lock = threading.Lock()
    live, most, threads = [0], [0], set()

    def choose(yb, *args):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
            threads.add(threading.current_thread())
        time.sleep(0.02)  # hold the block so that the others start meanwhile
        try:
            if yb.shape[0] == 1:
                raise FloatingPointError("the short last block")
            return spec.choose(yb, *args)
        finally:
            with lock:
                live[0] -= 1

    blocked = dataclasses.replace(spec, block_bytes=4 * 64 * 8, choose=choose)  # 11 blocks
    got = run_kernel(blocked, y[:40], x, 1, p)
    assert most[0] == 3 and threading.main_thread() not in threads
    np.testing.assert_array_equal(got.output.derivative, ref.output.derivative[:40])
    for k in ref.chosen:
        np.testing.assert_array_equal(got.chosen[k], ref.chosen[k][:40])
    # the cap on bytes in flight: two blocks' inputs fit, so two at a time
    most[0] = 0
    monkeypatch.setattr(api, "BLOCK_CAP_BYTES", 2 * 4 * 64 * 8)
    run_kernel(blocked, y[:40], x, 1, p)
    assert most[0] == 2
    with pytest.raises(FloatingPointError, match="short last block"):
        run_kernel(blocked, y, x, 1, p)
    # one block's bytes: one block at a time, on the caller's thread
    most[0] = 0
    threads.clear()
    monkeypatch.setattr(api, "BLOCK_CAP_BYTES", 4 * 64 * 8)
    run_kernel(blocked, y[:40], x, 1, p)
    assert most[0] == 1 and threads == {threading.main_thread()}
    pool.shutdown()
