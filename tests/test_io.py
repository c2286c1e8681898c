"""The store layer: region alignment, ledger, lock, codecs, the reader of unfinished stores."""

from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from deltaflow.io import (
    CodecConfig,
    IncompleteStoreError,
    RegionGrid,
    SinkConfig,
    Store,
    StoreLockedError,
    check_aligned,
    inspect_store,
    open_store,
    write_block,
)


def test_region_grid_keys_and_bounds():
    g = RegionGrid(("s", "t"), ((0, 2, 3), (0, 100, 200, 250)))
    assert len(g) == 6
    idx = list(g.indices())
    assert g.bounds(idx[-1]) == {"s": (2, 3), "t": (200, 250)}
    assert g.key(idx[1]) == "s=0-2,t=100-200"
    assert RegionGrid.from_json(json.loads(json.dumps(g.to_json()))) == g


@pytest.mark.parametrize(
    "bounds,ok",
    [
        ({"t": (0, 100)}, True),
        ({"t": (200, 250)}, True),  # the last, partial chunk ends at the array end
        ({"t": (50, 150)}, False),
        ({"t": (100, 150)}, False),
        ({"t": (200, 260)}, False),
    ],
)
def test_check_aligned(bounds, ok):
    args = (bounds, {"t": 100}, {"t": 250}, "variable 'v'")
    if ok:
        check_aligned(*args)
    else:
        with pytest.raises(RuntimeError, match="not aligned to the store's chunks of 100"):
            check_aligned(*args)


def test_write_block_refuses_misaligned_regions_and_writes_nothing(tmp_path):
    path = str(tmp_path / "s.zarr")
    z = zarr.open_group(path, mode="w", zarr_format=3)
    z.create_array(
        "v",
        shape=(4, 250),
        chunks=(2, 100),
        dtype="f8",
        fill_value=np.nan,
        dimension_names=("s", "t"),
    )
    with pytest.raises(RuntimeError, match="region t=50:150 is not aligned"):
        write_block(np.ones((2, 100)), path, None, "v", {"s": (0, 2), "t": (50, 150)}, ("s", "t"))
    assert np.isnan(zarr.open_array(path, path="v")[:]).all()
    n = write_block(np.ones((2, 50)), path, None, "v", {"s": (2, 4), "t": (200, 250)}, ("s", "t"))
    assert n == 800 and zarr.open_array(path, path="v")[2:, 200:].sum() == 100


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    store = Store(str(tmp_path / "s.zarr"))
    store.acquire("first")
    with pytest.raises(StoreLockedError, match="another writer holds the store"):
        store.acquire("second")
    store.release("second")  # not the holder: nothing happens
    assert store.lock_info()["run_id"] == "first"
    store.release("first")
    assert store.lock_info() is None
    dead = subprocess.Popen(["true"])
    dead.wait()
    info = {"pid": dead.pid, "host": __import__("socket").gethostname(), "run_id": "x"}
    (tmp_path / "s.zarr" / "_deltaflow" / "lock").write_text(json.dumps(info))
    store.acquire("third")  # the holder is gone: a killed run's lock is taken over
    assert store.lock_info()["run_id"] == "third"


def test_ledger_records_regions_per_epoch(tmp_path):
    store = Store(str(tmp_path / "s.zarr"))
    assert store.recorded("e1") == set()
    store.record("e1", "t=0-100", 800)
    store.record("e1", "t=100-200", 800)
    store.record("e2", "t=0-100", 800)
    assert store.recorded("e1") == {"t=0-100", "t=100-200"}
    assert store.recorded("e2") == {"t=0-100"}


def test_codec_config():
    assert CodecConfig.model_validate("none").compressors() is None
    (zstd,) = CodecConfig.model_validate({"name": "zstd", "level": 5}).compressors()
    assert type(zstd).__name__ == "ZstdCodec" and zstd.level == 5
    (blosc,) = CodecConfig.model_validate("blosc").compressors()
    assert type(blosc).__name__ == "BloscCodec"
    sink = SinkConfig(path="x.zarr", codec="zstd", codecs={"a": "none"})
    assert sink.codec_for("a").name == "none" and sink.codec_for("b").name == "zstd"
    with pytest.raises(ValueError, match="mode 'append' needs append_dim"):
        SinkConfig(path="x.zarr", mode="append")


def test_plain_zarr_stores_open_and_are_not_called_complete(tmp_path):
    path = tmp_path / "plain.zarr"
    xr.Dataset({"a": ("t", np.arange(5.0))}).to_zarr(path, zarr_format=3, consolidated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_store(str(path))
    np.testing.assert_array_equal(ds.a, np.arange(5.0))
    info = inspect_store(str(path))
    assert info["completeness"]["complete"] is None
    assert info["variables"]["a"]["dims"] == ["t"]
    with pytest.raises(FileNotFoundError, match="no Zarr store"):
        open_store(str(tmp_path / "missing.zarr"))


def test_unfinished_store_is_refused_or_warned(tmp_path):
    path = tmp_path / "s.zarr"
    xr.Dataset({"a": ("t", np.arange(4.0))}).to_zarr(path, zarr_format=3, consolidated=False)
    store = Store(str(path))
    grid = RegionGrid(("t",), ((0, 2, 4),))
    store.write_state({"status": "writing", "epoch": "e", "regions": grid.to_json()})
    store.record("e", "t=0-2", 16)
    with pytest.raises(IncompleteStoreError, match=r"INCOMPLETE \(1/2 regions"):
        open_store(str(path))
    with pytest.warns(RuntimeWarning, match="INCOMPLETE"):
        open_store(str(path), allow_incomplete=True)
    comp = inspect_store(str(path))["completeness"]
    assert comp["complete"] is False and comp["missing"] == ["t=2-4"]
    store.record("e", "t=2-4", 16)  # all regions recorded but never marked complete
    with pytest.raises(IncompleteStoreError, match="status 'writing'"):
        open_store(str(path))
