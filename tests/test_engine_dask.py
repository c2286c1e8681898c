"""Engine on Dask: laziness, graph size, chunk merging, global methods, per-series choices,
and a real multi-process cluster."""

from __future__ import annotations

import logging
import multiprocessing
from contextlib import contextmanager

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings

import deltaflow as dfl
from deltaflow.kernels import MethodParams, MethodSpec, Output, register, registry
from deltaflow.kernels.finite_difference import SPEC as FD

from strategies import chunked_case


@contextmanager
def raise_if_dask_computes():
    """Any compute inside the block raises (a scheduler that refuses to run)."""

    def scheduler(dsk, keys, **kwargs):
        raise RuntimeError(f"graph was computed (keys {list(keys)[:3]})")

    with dask.config.set(scheduler=scheduler):
        yield


def _fd(y, x, order):
    return FD.apply(y, x, order, FD.make_params(), {}, np, False).derivative


# --------------------------------------------------------------------------- toy methods
# Registered for this module only: a global method and a local method with per-series
# choices, so that those engine paths are covered before real ones land.


class _ToyParams(MethodParams):
    pass


def _choose(y, x, order, params, xp):
    return {
        "scale": 1.0 + np.std(y, axis=-1),
        "k": (np.argmax(np.abs(y), axis=-1) % 3 + 1).astype(np.int64),
    }


def _apply_local(y, x, order, params, chosen, xp, smoothed):
    d = _fd(y, x, order) * chosen["scale"][..., None] + chosen["k"][..., None]
    return Output(d, y * chosen["scale"][..., None] if smoothed else None)


def _apply_global(y, x, order, params, chosen, xp, smoothed):
    mean = y.mean(axis=-1, keepdims=True)
    d = _fd(y, x, order) / chosen["scale"][..., None] + mean
    return Output(d, (y - mean) if smoothed else None)


TOYS = {
    "_toy_local_choose": MethodSpec(
        name="_toy_local_choose",
        summary="test only",
        params=_ToyParams,
        max_order=2,
        apply=_apply_local,
        footprint=lambda order, p: 2,
        choose=_choose,
        has_smoothed=True,
        min_samples=lambda order, p: 5,
    ),
    "_toy_global": MethodSpec(
        name="_toy_global",
        summary="test only",
        params=_ToyParams,
        max_order=2,
        apply=_apply_global,
        footprint=lambda order, p: None,
        choose=_choose,
        has_smoothed=True,
        min_samples=lambda order, p: 5,
    ),
}


@pytest.fixture(scope="module")
def toys():
    for spec in TOYS.values():
        register(spec)
    yield TOYS
    for name in TOYS:
        registry._REGISTRY.pop(name, None)


def _da(n=64, rows=6, seed=0):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.5, 1.5, n))
    y = np.sin(t / 5)[None, :] * rng.uniform(1, 2, (rows, 1)) + 0.1 * rng.standard_normal((rows, n))
    return xr.DataArray(y, dims=("s", "t"), coords={"t": t}, name="v")


# --------------------------------------------------------------------------- laziness


def test_building_the_graph_computes_nothing(toys):
    da = _da().chunk({"t": 10, "s": 4})
    ds = xr.Dataset({"a": da, "b": da * 2})
    with raise_if_dask_computes():
        outs = [
            dfl.differentiate(da, "t", order=2),
            dfl.differentiate(ds, "t"),
            dfl.differentiate(da, "t", "_toy_local_choose", return_smoothed=True),
            dfl.differentiate(da, "t", "_toy_local_choose", return_choices=True),
            dfl.integrate(da, "t", method="simpson", return_error=True),
            da.delta.differentiate("t", accuracy=4),
        ]
        with pytest.warns(UserWarning, match="global"):
            outs.append(dfl.differentiate(da, "t", "_toy_global", return_choices=True))
        with pytest.warns(UserWarning, match="global"):
            outs.append(dfl.smooth(da, "t", "_toy_global"))
    with pytest.raises(RuntimeError, match="graph was computed"), raise_if_dask_computes():
        outs[0].compute()


def test_graph_is_one_kernel_layer_and_one_overlap_layer():
    da = _da(n=100, rows=12).chunk({"t": 20, "s": 4})  # 3 x 5 blocks
    d = dfl.differentiate(da, "t", order=2).data
    hlg = d.__dask_graph__()
    new = {k: v for k, v in hlg.layers.items() if k.startswith("deltaflow")}
    assert len(new) == 2, list(new)
    kernel = [v for k, v in new.items() if "overlap" not in k][0]
    overlap = [v for k, v in new.items() if "overlap" in k][0]
    assert len(kernel) == 15  # one task per input block
    assert len(overlap) <= 2 * 15 + 5  # left/right halo slices + one x slice per column
    assert len(hlg) <= len(da.data.__dask_graph__()) + 2 * 15 + 5 + 15
    np.testing.assert_allclose(d.compute(), dfl.differentiate(da.load(), "t", order=2).values)


def test_small_chunks_are_merged_with_a_log_message(caplog):
    da = _da(n=40)
    lazy = da.chunk({"t": (1, 1, 2, 30, 3, 3)})
    with caplog.at_level(logging.INFO, logger="deltaflow"):
        d = dfl.differentiate(lazy, "t", order=2, accuracy=6)
    assert any("merging 6 chunks" in r.getMessage() for r in caplog.records)
    assert d.chunks == lazy.chunks  # the caller's chunks come back
    np.testing.assert_allclose(d.values, dfl.differentiate(da, "t", order=2, accuracy=6).values)


@pytest.mark.parametrize("patch_cost", [0, 10**6], ids=["patched-edges", "concatenated"])
@pytest.mark.parametrize("irregular", [False, True])
def test_both_block_paths_are_exact(monkeypatch, patch_cost, irregular):
    """Blocks patched at their edges and blocks concatenated with halos agree."""
    from deltaflow import _blocks

    monkeypatch.setattr(_blocks, "_PATCH_COST", patch_cost)
    monkeypatch.setattr(_blocks, "_PATCH_FACTOR", 1 if patch_cost == 0 else 10**6)
    da = _da(n=300, rows=5, seed=3)
    if not irregular:
        da = da.assign_coords(t=np.arange(300) * 0.5)
    for order, acc in ((1, 2), (2, 4), (3, 8)):
        want = dfl.differentiate(da, "t", order=order, accuracy=acc).values
        got = dfl.differentiate(da.chunk({"t": (40, 77, 100, 83)}), "t", order=order, accuracy=acc)
        np.testing.assert_allclose(got.values, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    F, E = dfl.integrate(da, "t", method="simpson", return_error=True)
    Fc, Ec = dfl.integrate(
        da.chunk({"t": (40, 77, 100, 83)}), "t", method="simpson", return_error=True
    )
    np.testing.assert_allclose(Fc.values, F.values, rtol=1e-12, atol=1e-12 * np.abs(F.values).max())
    np.testing.assert_allclose(Ec.values, E.values, atol=1e-12 * np.abs(F.values).max())


def test_irregular_coordinate_with_uniform_stretches(caplog):
    """A gap makes x irregular; blocks away from it must not get the uniform stencil."""
    t = np.arange(120) * 0.1
    t[70:] += 0.55  # one gap: uniform on either side
    y = np.sin(t)[None, :] * np.arange(1, 4)[:, None]
    da = xr.DataArray(y, dims=("s", "t"), coords={"t": t})
    want = dfl.differentiate(da, "t", order=2).values
    with caplog.at_level(logging.INFO, logger="deltaflow"):
        lazy = dfl.differentiate(da.chunk({"t": 10}), "t", order=2)
    assert any("uniformly spaced piece" in r.getMessage() for r in caplog.records)
    assert lazy.chunks == da.chunk({"t": 10}).chunks
    np.testing.assert_allclose(lazy.values, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


# --------------------------------------------------------------------------- toy paths


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("method", sorted(TOYS))
@settings(max_examples=10)
@given(case=chunked_case(min_n=12))
def test_toys_chunked_equal_unchunked(toys, method, order, case):
    dims = [f"d{i}" for i in range(case["y"].ndim)]
    dim = dims[case["axis"]]
    da = xr.DataArray(case["y"], dims=dims, coords={dim: case["x"]}, name="v")
    eager = dfl.differentiate(da, dim, method, order, return_smoothed=True, return_choices=True)
    lazy_in = da.chunk(dict(zip(dims, case["chunks"], strict=True)))
    with (
        pytest.warns(UserWarning)
        if method == "_toy_global" and len(case["chunks"][case["axis"]]) > 1
        else _nullcontext()
    ):
        lazy = dfl.differentiate(
            lazy_in, dim, method, order, return_smoothed=True, return_choices=True
        )
    for e, lz in zip(eager[:2], lazy[:2], strict=True):
        assert lz.chunks == case["chunks"]
        scale = np.abs(e.values).max()
        np.testing.assert_allclose(lz.values, e.values, rtol=1e-12, atol=1e-12 * scale)
    assert set(lazy[2].data_vars) == {"scale", "k"}
    assert lazy[2]["k"].dtype == np.int64 and dim not in lazy[2].dims
    xr.testing.assert_allclose(lazy[2].compute(), eager[2])
    want = 1.0 + np.std(np.moveaxis(case["y"], case["axis"], -1), axis=-1)
    np.testing.assert_allclose(eager[2]["scale"].values, want)


@contextmanager
def _nullcontext():
    yield


def test_choices_attrs_numpy_summary_and_dask_pointer(toys):
    da = _da()
    d = dfl.differentiate(da, "t", "_toy_local_choose")
    assert '"scale": {"max"' in d.attrs["deltaflow_choices"]
    lz = dfl.differentiate(da.chunk({"t": 16}), "t", "_toy_local_choose")
    assert "return_choices=True" in lz.attrs["deltaflow_choices"]
    sm = dfl.smooth(da.chunk({"t": 16}), "t", "_toy_local_choose")
    assert sm.attrs["deltaflow_output"] == "smoothed"
    np.testing.assert_allclose(sm.values, dfl.smooth(da, "t", "_toy_local_choose").values)


def test_global_method_memory_warning_and_limit(toys):
    da = _da(n=200, rows=40).chunk({"t": 50, "s": 10})
    with pytest.warns(UserWarning, match=r"rechunking it from 4 chunks to one; each block takes"):
        d = dfl.differentiate(da, "t", "_toy_global")
    assert d.chunks == da.chunks
    with pytest.raises(ValueError, match=r"above max_block_bytes=1.0 KiB.*deltaflow.max-block"):
        dfl.differentiate(da, "t", "_toy_global", max_block_bytes=1024)
    with dask.config.set({"deltaflow.max-block-bytes": "1KiB"}):
        with pytest.raises(ValueError, match=r"variable 'v', dim 't': .*max_block_bytes"):
            dfl.differentiate(da, "t", "_toy_global")
    # dim already in one chunk: no warning, no rechunk
    one = _da(n=200, rows=40).chunk({"t": -1, "s": 10})
    out = dfl.differentiate(one, "t", "_toy_global")
    assert out.chunks == one.chunks


# --------------------------------------------------------------------------- distributed


def test_multiprocess_cluster_matches_threaded():
    distributed = pytest.importorskip("distributed")
    da = _da(n=120, rows=8).chunk({"t": 25, "s": 3})
    want = dfl.differentiate(da, "t", order=2, accuracy=4).compute(scheduler="threads")
    # fork (where there is one) starts workers with deltaflow imported and its numba
    # kernels loaded by the threaded run above: seconds instead of half a minute
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": method}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = client.compute(dfl.differentiate(da, "t", order=2, accuracy=4)).result()
    np.testing.assert_array_equal(got.values, want.values)
