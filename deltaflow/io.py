"""Zarr v3 sinks that survive interruption, and the reader that tells finished from not.

Layout of a deltaflow store (any fsspec URL; a local path here)::

    out.zarr/zarr.json            root group; attrs hold provenance and deltaflow_status
    out.zarr/<var>/...            one Zarr v3 array per variable (chunk grid = regions)
    out.zarr/_deltaflow/zarr.json an empty group, so Zarr and xarray skip it quietly
    out.zarr/_deltaflow/state.json  status (writing | complete), region grid, epoch, hashes
    out.zarr/_deltaflow/ledger/<epoch>/<region>   one tiny file per finished region
    out.zarr/_deltaflow/lock      the writer holding the store (pid, host, time)
    out.zarr/_deltaflow/tail_<epoch>/  (append_dim only) the last input samples kept for
                                  the next append's halo

A run writes the metadata template first (``to_zarr(compute=False)``), then one region at
a time (every region is a whole number of the store's chunks; checked before each write),
records each region in the ledger after its last byte is written, and flips
``deltaflow_status`` to ``complete`` only after the last region. A killed run therefore
leaves a store whose ledger lists exactly the regions that are safe; ``resume`` writes the
rest. Region writes never use ``safe_chunks=False``.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any, Literal

from pydantic import Field, model_validator

from .workflow.config import StrictModel

STATE_DIR = "_deltaflow"
STATUS_ATTR = "deltaflow_status"

# Default codec, chosen from benchmarks/io_throughput.py on noisy float64 (see README):
# zstd gains ~1.06x in size but writes at well under half the uncompressed rate, so the
# default is no compression; set `codec: zstd` (per store or per variable) to trade speed
# for size on smoother data.
DEFAULT_CODEC = "none"


class IncompleteStoreError(RuntimeError):
    """A deltaflow store whose run has not finished (some regions were never written)."""


class StoreLockedError(RuntimeError):
    """Another writer holds the store's lock."""


class CodecConfig(StrictModel):
    """A compression codec for a variable: none, zstd, blosc (lz4/zstd inside) or gzip."""

    name: Literal["none", "zstd", "blosc", "gzip"] = DEFAULT_CODEC
    level: int | None = Field(None, ge=0, le=22, description="compression level")
    shuffle: bool = Field(True, description="blosc: byte shuffle")
    cname: Literal["lz4", "zstd", "lz4hc", "zlib"] = Field("lz4", description="blosc: inner codec")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    def compressors(self) -> tuple[Any, ...] | None:
        """The Zarr v3 compressors tuple for this codec (None: uncompressed)."""
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        if self.name == "none":
            return None
        if self.name == "zstd":
            return (ZstdCodec(level=3 if self.level is None else self.level),)
        if self.name == "gzip":
            return (GzipCodec(level=5 if self.level is None else self.level),)
        return (
            BloscCodec(
                cname=self.cname,
                clevel=5 if self.level is None else self.level,
                shuffle="shuffle" if self.shuffle else "noshuffle",
            ),
        )


class SinkConfig(StrictModel):
    """A Zarr v3 store written region by region, with a ledger, a lock and provenance."""

    kind: Literal["zarr"] = "zarr"
    path: str = Field(description="store path or fsspec URL")
    mode: Literal["create", "overwrite", "resume", "append"] = Field(
        "create",
        description="create: refuse an existing store; overwrite: replace it; resume: write "
        "only unrecorded regions; append: extend the store along append_dim",
    )
    append_dim: str | None = Field(
        None, description="dim that append runs extend (keeps an input tail for the halo)"
    )
    chunks: dict[str, int] = Field(
        default_factory=dict, description="store chunk size per dim (default: dask chunks)"
    )
    codec: CodecConfig = Field(
        default_factory=CodecConfig, description="codec of every variable (default none)"
    )
    codecs: dict[str, CodecConfig] = Field(
        default_factory=dict, description="codec per variable, overriding codec"
    )
    variables: list[str] | None = Field(None, description="data variables to write (default: all)")
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _append(self) -> SinkConfig:
        if self.mode == "append" and not self.append_dim:
            raise ValueError("mode 'append' needs append_dim: the dim that grows")
        for d, c in self.chunks.items():
            if c < 1:
                raise ValueError(f"chunks.{d} must be >= 1, got {c}")
        return self

    def codec_for(self, var: str) -> CodecConfig:
        return self.codecs.get(var, self.codec)


# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class RegionGrid:
    """Regions of a store: the product of chunk-aligned edges along each dim."""

    dims: tuple[str, ...]
    edges: tuple[tuple[int, ...], ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RegionGrid:
        return cls(tuple(d["dims"]), tuple(tuple(e) for e in d["edges"]))

    def to_json(self) -> dict[str, Any]:
        return {"dims": list(self.dims), "edges": [list(e) for e in self.edges]}

    def __len__(self) -> int:
        n = 1
        for e in self.edges:
            n *= len(e) - 1
        return n

    def indices(self) -> Iterator[tuple[int, ...]]:
        return product(*(range(len(e) - 1) for e in self.edges))

    def bounds(self, idx: tuple[int, ...]) -> dict[str, tuple[int, int]]:
        return {d: (e[i], e[i + 1]) for d, e, i in zip(self.dims, self.edges, idx, strict=True)}

    def key(self, idx: tuple[int, ...]) -> str:
        return ",".join(f"{d}={a}-{b}" for d, (a, b) in self.bounds(idx).items())


def check_aligned(
    bounds: Mapping[str, tuple[int, int]],
    chunks: Mapping[str, int],
    sizes: Mapping[str, int],
    where: str,
) -> None:
    """RuntimeError unless every region edge lies on a chunk boundary (or the array end)."""
    for d, (a, b) in bounds.items():
        c, n = chunks[d], sizes[d]
        if a % c or (b % c and b != n) or b > n or a >= b:
            raise RuntimeError(
                f"{where}: region {d}={a}:{b} is not aligned to the store's chunks of {c} "
                f"along {d!r} (size {n}); refusing to write (misaligned writes lose data)"
            )


# --------------------------------------------------------------------------- store


class Store:
    """A deltaflow store on any fsspec filesystem: state, ledger, lock."""

    def __init__(self, path: str, storage_options: Mapping[str, Any] | None = None):
        import fsspec

        self.path = str(path)
        self.storage_options = dict(storage_options or {})
        self.fs, root = fsspec.core.url_to_fs(self.path, **self.storage_options)
        self.root = root.rstrip("/")
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    # paths
    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def meta(self) -> str:
        return self._p(STATE_DIR)

    def zarr_target(self) -> Any:
        """What zarr/xarray open: the local path, or an fsspec-backed Zarr store."""
        if self.local:
            return self.root
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.path, storage_options=self.storage_options or None)

    def exists(self) -> bool:
        """True when a Zarr group is at the path."""
        return self.fs.exists(self._p("zarr.json"))

    def occupied(self) -> bool:
        """True when anything at all is at the path (a store or other files)."""
        return self.fs.exists(self.root) and bool(self.fs.ls(self.root))

    # small files
    def _write(self, path: str, data: bytes) -> None:
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic on POSIX: a reader never sees half a file
        else:
            self.fs.pipe_file(path, data)

    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except (FileNotFoundError, OSError):
            return None

    # state
    def read_state(self) -> dict[str, Any] | None:
        raw = self._read(self._p(STATE_DIR, "state.json"))
        return None if raw is None else json.loads(raw)

    def write_state(self, state: Mapping[str, Any]) -> None:
        self._write(self._p(STATE_DIR, "state.json"), json.dumps(state, indent=1).encode())

    def ensure_meta_group(self) -> None:
        """Make _deltaflow a (empty) Zarr group so readers skip it without warnings."""
        path = self._p(STATE_DIR, "zarr.json")
        if not self.fs.exists(path):
            meta = {"zarr_format": 3, "node_type": "group", "attributes": {}}
            self._write(path, json.dumps(meta).encode())

    # ledger
    def _ledger(self, epoch: str) -> str:
        return self._p(STATE_DIR, "ledger", epoch)

    def record(self, epoch: str, key: str, nbytes: int) -> None:
        """Mark one region finished (after all its bytes are written)."""
        self._write(f"{self._ledger(epoch)}/{key}", str(nbytes).encode())

    def recorded(self, epoch: str) -> set[str]:
        """Keys of the regions finished under ``epoch``."""
        path = self._ledger(epoch)
        if not self.fs.exists(path):
            return set()
        return {
            p.rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False) if not p.endswith(".tmp")
        }

    # lock
    def _lock_path(self) -> str:
        return self._p(STATE_DIR, "lock")

    def lock_info(self) -> dict[str, Any] | None:
        raw = self._read(self._lock_path())
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"raw": raw.decode(errors="replace")}

    def acquire(self, run_id: str) -> None:
        """Take the store's lock or raise StoreLockedError naming the holder.

        Local stores use an exclusive create (atomic); a lock left by a dead process on
        this host (a killed run) is taken over. Other filesystems check then write
        (best effort: object stores have no exclusive create).
        """
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_id": run_id,
            "since": _now(),
        }
        path = self._lock_path()
        data = json.dumps(info).encode()
        for _ in range(2):
            if self.local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    return
            elif not self.fs.exists(path):
                self.fs.pipe_file(path, data)
                return
            holder = self.lock_info() or {}
            if _stale(holder):
                self.fs.rm_file(path)
                continue
            raise StoreLockedError(
                f"{self.path}: another writer holds the store (pid {holder.get('pid')} on "
                f"{holder.get('host')} since {holder.get('since')}); wait for it to finish, "
                f"or remove {path} if that process is gone"
            )
        raise StoreLockedError(f"{self.path}: could not take the lock {path}")

    def release(self, run_id: str) -> None:
        info = self.lock_info()
        if info and info.get("run_id") == run_id:
            self.fs.rm_file(self._lock_path())

    def clear(self) -> None:
        """Remove everything in the store except the lock (for overwrite)."""
        if not self.fs.exists(self.root):
            return
        for p in self.fs.ls(self.root, detail=False):
            name = p.rstrip("/").rsplit("/", 1)[-1]
            if name == STATE_DIR:
                for q in self.fs.ls(p, detail=False):
                    if q.rstrip("/").rsplit("/", 1)[-1] != "lock":
                        self.fs.rm(q, recursive=True)
            else:
                self.fs.rm(p, recursive=True)

    def tail_path(self, name: str) -> str:
        """Group path (inside the store) of an append tail."""
        return f"{STATE_DIR}/{name}"

    def path_of(self, rel: str) -> str:
        """Filesystem path of ``rel`` inside the store."""
        return self._p(rel)

    def size_on_disk(self) -> int:
        try:
            return int(self.fs.du(self.root))
        except (FileNotFoundError, OSError):
            return 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _stale(holder: Mapping[str, Any]) -> bool:
    """True when the lock's holder was on this host and no longer runs."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --------------------------------------------------------------------------- writing


def write_block(
    block: Any,
    target: Any,
    storage_options: Mapping[str, Any] | None,
    var: str,
    bounds: Mapping[str, tuple[int, int]],
    dims: tuple[str, ...],
) -> int:
    """Write one computed block into array ``var`` at ``bounds`` (checked aligned); its bytes."""
    import zarr

    from .kernels._xp import to_numpy

    arr = zarr.open_array(store=Store(target, storage_options).zarr_target(), path=var, mode="r+")
    chunks = dict(zip(dims, arr.chunks, strict=True))
    sizes = dict(zip(dims, arr.shape, strict=True))
    check_aligned({d: bounds[d] for d in dims}, chunks, sizes, f"variable {var!r}")
    sl = tuple(slice(*bounds[d]) for d in dims)
    block = to_numpy(block)  # a GPU block comes to the host here, at the sink
    expect = tuple(bounds[d][1] - bounds[d][0] for d in dims)
    if block.shape != expect:
        raise RuntimeError(f"variable {var!r}: block shape {block.shape} != region {expect}")
    arr[sl] = block
    return int(block.nbytes)


def record_region(
    store_path: str, storage_options: Mapping[str, Any] | None, epoch: str, key: str, *nbytes: int
) -> int:
    """Ledger entry for a region, after all its writes (the arguments) are done."""
    total = int(sum(nbytes))
    Store(store_path, storage_options).record(epoch, key, total)
    return total


def consolidate(store: Store) -> None:
    """Refresh the consolidated metadata so plain ``xr.open_zarr`` opens fast and quietly."""
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(store.zarr_target(), zarr_format=3)


def set_root_attrs(store: Store, attrs: Mapping[str, Any]) -> None:
    """Update the root group's attributes (provenance, status)."""
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(store.zarr_target(), mode="r+", zarr_format=3)
        g.attrs.update(dict(attrs))


# --------------------------------------------------------------------------- reading


def completeness(store: Store) -> dict[str, Any]:
    """Status of a store: complete or not, regions done and missing (first few)."""
    state = store.read_state()
    if state is None:
        return {"deltaflow": False, "complete": None, "status": "not a deltaflow store"}
    grid = RegionGrid.from_json(state["regions"])
    done = store.recorded(state["epoch"])
    keys = [grid.key(i) for i in grid.indices()]
    missing = [k for k in keys if k not in done]
    complete = state.get("status") == "complete" and not missing
    return {
        "deltaflow": True,
        "complete": complete,
        "status": state.get("status"),
        "mode": state.get("mode"),
        "regions_total": len(keys),
        "regions_done": len(keys) - len(missing),
        "missing": missing,
        "epoch": state["epoch"],
        "lock": store.lock_info(),
    }


def open_store(
    path: str,
    *,
    allow_incomplete: bool = False,
    chunks: Any = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """Open a Zarr store as an xarray Dataset, refusing an unfinished deltaflow store.

    An unfinished store (killed or running) shows its missing regions as NaN; that must
    not pass for data. ``allow_incomplete=True`` opens it with a warning instead of
    IncompleteStoreError. Plain (non-deltaflow) Zarr stores open as with ``xr.open_zarr``.
    """
    import xarray as xr

    store = Store(path, storage_options)
    if not store.exists():
        raise FileNotFoundError(f"{path}: no Zarr store there")
    info = completeness(store)
    if info["deltaflow"] and not info["complete"]:
        msg = (
            f"{path} is INCOMPLETE ({info['regions_done']}/{info['regions_total']} regions "
            f"written, status {info['status']!r}); its missing regions read as NaN. Finish it "
            "with `deltaflow run WORKFLOW --resume`"
        )
        if not allow_incomplete:
            raise IncompleteStoreError(msg + " (or pass allow_incomplete=True)")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*consolidated.*")
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")
        return xr.open_zarr(
            store.zarr_target(),
            chunks=chunks if chunks is not None else {},
            consolidated=bool(info.get("complete")) or None,
        )


def inspect_store(path: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Variables, chunks, codecs, provenance and completeness of a store (JSON-friendly)."""
    import zarr

    store = Store(path, storage_options)
    if not store.exists():
        raise FileNotFoundError(f"{path}: no Zarr store there")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(store.zarr_target(), mode="r", use_consolidated=False)
        variables = {}
        for name, arr in sorted(g.arrays()):
            attrs = dict(arr.attrs)
            variables[name] = {
                "dims": attrs.get("_ARRAY_DIMENSIONS") or list(arr.metadata.dimension_names or ()),
                "shape": list(arr.shape),
                "chunks": list(arr.chunks),
                "dtype": str(arr.dtype),
                "codec": [type(c).__name__ for c in arr.compressors] or ["none"],
                "attrs": {k: v for k, v in attrs.items() if not k.startswith("_")},
            }
        attrs = dict(g.attrs)
    return {
        "path": path,
        "variables": variables,
        "attrs": attrs,
        "completeness": completeness(store),
        "bytes_on_disk": store.size_on_disk(),
    }
