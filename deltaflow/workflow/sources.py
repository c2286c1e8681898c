"""Workflow sources: files and stores to read, and generators that need no external data.

Each source is one small pydantic model registered under its ``kind`` with an
``open() -> xr.Dataset`` method that returns a lazy (dask-backed) dataset. Generators are
deterministic per element: the value at (series, sample) does not depend on the chunking or
on the window generated, so a window of a generated dataset equals the same slice of a
longer one (what append runs rely on).

Every source takes ``time_range: [start, end]``, a half-open window ``start <= t < end``
along ``time_dim`` (default ``time``): numbers for a numeric coordinate (in its units),
ISO datetimes for a datetime one. Consecutive windows ``[a, b]``, ``[b, c]`` therefore
meet exactly: the sample at ``b`` belongs to the second, none is repeated or dropped,
which is what scheduled ``append`` runs rely on. Files are cut lazily (no data read); the
``sensors`` generator produces only the window's samples.
"""

from __future__ import annotations

import math
import re
import time as _time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from .config import StrictModel

SOURCES: dict[str, type[SourceBase]] = {}

Chunks = dict[str, int]


def register_source(cls: type[SourceBase]) -> type[SourceBase]:
    """Class decorator: add a source model to the registry under its ``kind``."""
    kind = cls.model_fields["kind"].default
    if kind in SOURCES:
        raise ValueError(f"source kind {kind!r} is already registered")
    SOURCES[kind] = cls
    return cls


class SourceError(ValueError):
    """A problem with a source setting; ``key`` is its path under ``source``."""

    def __init__(self, key: tuple[str | int, ...], message: str):
        self.key = key
        super().__init__(message)


_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def _range_value(v: Any, name: str) -> float | str:
    """One bound of a time_range: a finite number, or a datetime as a UTC ISO string."""
    if isinstance(v, bool) or v is None:
        raise ValueError(f"{name}: expected a number or an ISO datetime, got {v!r}")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise ValueError(f"{name}: expected a finite number, got {v!r}")
        return float(v)
    if isinstance(v, datetime | date):
        v = v.isoformat()
    if isinstance(v, str):
        text = v.strip()
        try:
            return _range_value(float(text), name)
        except ValueError:
            pass
        if _ISO_DATE.match(text):
            import pandas as pd

            try:
                ts = pd.Timestamp(text)
            except ValueError:
                ts = None
            if ts is not None:
                if ts.tzinfo is not None:
                    ts = ts.tz_convert(UTC).tz_localize(None)
                return ts.isoformat()
        raise ValueError(
            f"{name}: got {v!r}, which is neither a number nor an ISO datetime "
            "(like 2026-01-01T10:00:00)"
        )
    raise ValueError(f"{name}: expected a number or an ISO datetime, got {type(v).__name__}")


def range_key(v: float | str) -> Any:
    """A time_range bound as a comparable value (float, or datetime64[ns])."""
    return v if isinstance(v, float) else np.datetime64(v, "ns")


class SourceBase(StrictModel):
    """Base of every source: ``open()`` returns a lazy dataset; ``open_window()`` that
    dataset cut to ``time_range`` along ``time_dim`` (what a run reads)."""

    local_paths: ClassVar[tuple[str, ...]] = ()
    #: True where ``open()`` applies ``time_range`` itself (a generator of the window only)
    windows_itself: ClassVar[bool] = False

    time_range: tuple[float | str, float | str] | None = Field(
        None,
        description="read only start <= t < end along time_dim (half-open, so consecutive "
        "windows [a, b], [b, c] neither repeat nor drop a sample): numbers in the "
        "coordinate's units, or ISO datetimes (UTC) for a datetime coordinate",
    )
    time_dim: str = Field("time", description="the dim time_range selects along")

    @field_validator("time_range", mode="before")
    @classmethod
    def _check_range(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise ValueError("expected [start, end] (two values)")
        a, b = (_range_value(x, n) for x, n in zip(v, ("start", "end"), strict=True))
        if isinstance(a, float) != isinstance(b, float):
            raise ValueError(f"start {a!r} and end {b!r} must both be numbers or both be datetimes")
        if not range_key(a) < range_key(b):
            raise ValueError(
                f"start must be before end (the window is [start, end), end excluded), "
                f"got start {a!r}, end {b!r}"
            )
        return (a, b)

    def open(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def open_window(self) -> Any:
        """The lazy dataset of ``open()``, cut to ``time_range`` (when set)."""
        ds = self.open()
        if self.time_range is None or self.windows_itself:
            return ds
        return select_window(ds, self.time_dim, self.time_range)

    def describe(self) -> dict[str, Any]:
        """Provenance: the source's settings."""
        return self.model_dump(mode="json")


def window_bounds(
    coord: np.ndarray, dim: str, time_range: tuple[float | str, float | str]
) -> tuple[int, int]:
    """Index bounds ``[i0, i1)`` of the samples with ``start <= coord < end``.

    ``coord`` must increase strictly; bounds are numbers for a numeric coordinate and
    ISO datetimes for a datetime64 one. Raises SourceError naming the problem.
    """
    values = np.asarray(coord)
    a, b = time_range
    if values.dtype.kind == "M":
        if isinstance(a, float):
            like = np.datetime_as_string(values[0], unit="s") if values.size else "2026-01-01"
            raise SourceError(
                ("time_range",),
                f"{dim!r} holds datetimes; give ISO datetimes like {like}, "
                f"got numbers [{a:g}, {b:g}]",
            )
        values = values.astype("datetime64[ns]")
        lo, hi = np.datetime64(a, "ns"), np.datetime64(b, "ns")
    elif values.dtype.kind in "iuf":
        if not isinstance(a, float) or not isinstance(b, float):
            raise SourceError(
                ("time_range",),
                f"{dim!r} holds numbers ({values.dtype}); give numbers in its units, "
                f"got [{a}, {b}]",
            )
        lo, hi = a, b
    else:
        raise SourceError(
            ("time_dim",),
            f"coordinate {dim!r} has dtype {values.dtype}; time_range needs a numeric or "
            "datetime coordinate",
        )
    if values.size > 1 and not bool(np.all(values[1:] > values[:-1])):
        raise SourceError(
            ("time_dim",),
            f"coordinate {dim!r} does not increase strictly; time_range needs a sorted axis",
        )
    i0 = int(np.searchsorted(values, lo, side="left"))
    i1 = int(np.searchsorted(values, hi, side="left"))
    if i1 <= i0:
        span = f"{_show(values[0])} .. {_show(values[-1])}" if values.size else "no samples at all"
        raise SourceError(
            ("time_range",),
            f"[{_show(a)}, {_show(b)}) selects no sample of {dim!r} (which spans {span})",
        )
    return i0, i1


def _show(v: Any) -> str:
    if isinstance(v, np.datetime64):
        return str(np.datetime_as_string(v, unit="auto"))
    if isinstance(v, float | np.floating):
        return f"{float(v):g}"
    return str(v)


def select_window(ds: Any, dim: str, time_range: tuple[float | str, float | str]) -> Any:
    """``ds`` cut lazily to ``start <= dim < end``; dask chunks along ``dim`` kept uniform."""
    if dim not in ds.dims:
        raise SourceError(
            ("time_dim",),
            f"no dim {dim!r} in the source to apply time_range to; dims: "
            + ", ".join(map(str, ds.dims)),
        )
    if dim not in ds.coords:
        raise SourceError(
            ("time_dim",), f"dim {dim!r} has no coordinate; time_range selects by coordinate"
        )
    i0, i1 = window_bounds(ds[dim].values, dim, time_range)
    chunk = 0
    for var in ds.variables.values():
        if var.chunks is not None and dim in var.dims:
            chunk = max(chunk, *var.chunks[var.dims.index(dim)])
    out = ds.isel({dim: slice(i0, i1)})
    if chunk and i0 % chunk:
        out = out.chunk({dim: chunk})  # blocks from the window's start, as a fresh open gives
    return out


def _chunk(ds: Any, chunks: Chunks | None) -> Any:
    if not chunks:
        return ds if ds.chunks else ds.chunk()
    unknown = sorted(set(chunks) - set(ds.dims))
    if unknown:
        raise ValueError(
            f"chunks: unknown dim(s) {', '.join(unknown)}; dims: {', '.join(map(str, ds.dims))}"
        )
    return ds.chunk(chunks)


ChunkField = Field(
    None, description="dask chunk size per dim (-1 = whole dim); default: the store's chunks"
)


# --------------------------------------------------------------------------- files


@register_source
class ZarrSource(SourceBase):
    """A Zarr store (local path or fsspec URL, e.g. s3://bucket/x.zarr)."""

    kind: Literal["zarr"] = "zarr"
    path: str = Field(description="store path or fsspec URL")
    variables: list[str] | None = Field(None, description="data variables to keep")
    chunks: Chunks | None = ChunkField
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def open(self) -> Any:
        from ..io import open_store

        ds = open_store(
            self.path, chunks=self.chunks or {}, storage_options=self.storage_options or None
        )
        return _keep(ds, self.variables)


@register_source
class NetCDFSource(SourceBase):
    """A NetCDF file (or a glob of files combined by coordinates)."""

    kind: Literal["netcdf"] = "netcdf"
    path: str = Field(description="file path, URL or glob")
    variables: list[str] | None = Field(None, description="data variables to keep")
    chunks: Chunks | None = ChunkField

    def open(self) -> Any:
        import xarray as xr

        if any(c in self.path for c in "*?["):
            ds = xr.open_mfdataset(self.path, chunks=self.chunks or {}, combine="by_coords")
        else:
            if "://" not in self.path and not Path(self.path).exists():
                raise FileNotFoundError(f"source.path: {self.path} does not exist")
            ds = xr.open_dataset(self.path, chunks=self.chunks or {})
        return _keep(ds, self.variables)


def _keep(ds: Any, variables: list[str] | None) -> Any:
    if variables is None:
        return ds
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(
            f"source.variables: {', '.join(missing)} not in the source; it has "
            + ", ".join(map(str, ds.data_vars))
        )
    return ds[variables]


class _TableSource(SourceBase):
    path: str = Field(description="file path or fsspec URL")
    layout: Literal["long", "wide"] = Field(
        "long",
        description="long: one row per (dims...) with value columns; wide: one row per index "
        "value and one column per series",
    )
    dims: list[str] | None = Field(
        None, description="long layout: the columns that become dims, e.g. [sensor, time]"
    )
    variables: list[str] | None = Field(
        None, description="long layout: value columns (default: every other numeric column)"
    )
    index: str | None = Field(None, description="wide layout: the column that becomes a dim")
    columns_dim: str = Field("series", description="wide layout: dim made of the column names")
    var: str = Field("value", description="wide layout: name of the data variable")
    parse_dates: list[str] = Field(default_factory=list, description="columns read as datetimes")
    chunks: Chunks | None = ChunkField

    @model_validator(mode="after")
    def _layout_keys(self) -> _TableSource:
        if self.layout == "long" and not self.dims:
            raise ValueError("layout 'long' needs dims: the columns that become dims")
        if self.layout == "wide" and not self.index:
            raise ValueError("layout 'wide' needs index: the column that becomes a dim")
        return self

    def _read(self) -> Any:
        raise NotImplementedError

    def open(self) -> Any:
        import pandas as pd
        import xarray as xr

        df = self._read()
        for col in self.parse_dates:
            if col not in df.columns:
                raise ValueError(f"source.parse_dates: no column {col!r}")
            df[col] = pd.to_datetime(df[col])
        if self.layout == "long":
            dims = list(self.dims or [])
            missing = [d for d in dims if d not in df.columns]
            if missing:
                raise ValueError(
                    f"source.dims: column(s) {', '.join(missing)} not in {self.path}; columns: "
                    + ", ".join(map(str, df.columns))
                )
            values = self.variables or [
                c for c in df.columns if c not in dims and pd.api.types.is_numeric_dtype(df[c])
            ]
            missing = [v for v in values if v not in df.columns]
            if missing:
                raise ValueError(f"source.variables: column(s) {', '.join(missing)} not found")
            indexed = df.set_index(dims)[values]
            if not indexed.index.is_unique:
                raise ValueError(
                    f"source.dims: rows of {self.path} repeat some ({', '.join(dims)})"
                )
            ds = xr.Dataset.from_dataframe(indexed.sort_index())
        else:
            assert self.index is not None
            if self.index not in df.columns:
                raise ValueError(f"source.index: no column {self.index!r} in {self.path}")
            wide = df.set_index(self.index).sort_index()
            wide = wide.select_dtypes("number")
            labels = list(wide.columns)
            try:
                labels = [int(c) for c in labels]
            except ValueError:
                pass
            da = xr.DataArray(
                wide.to_numpy(dtype=np.float64).T,
                dims=(self.columns_dim, self.index),
                coords={self.columns_dim: labels, self.index: wide.index.to_numpy()},
                name=self.var,
            )
            ds = da.to_dataset()
        return _chunk(ds, self.chunks)


@register_source
class CSVSource(_TableSource):
    """A CSV table in long or wide layout, turned into a labelled dataset."""

    kind: Literal["csv"] = "csv"

    def _read(self) -> Any:
        import pandas as pd

        return pd.read_csv(self.path)


@register_source
class ParquetSource(_TableSource):
    """A Parquet table in long or wide layout, turned into a labelled dataset."""

    kind: Literal["parquet"] = "parquet"

    def _read(self) -> Any:
        import pandas as pd

        return pd.read_parquet(self.path)


# --------------------------------------------------------------------------- generators

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a counter-based hash (uint64 -> uint64)."""
    with np.errstate(over="ignore"):
        z = z + _GOLD
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _uniform(counter: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in (0, 1) from a counter and a stream number (deterministic)."""
    with np.errstate(over="ignore"):
        z = _mix(counter.astype(np.uint64) ^ (np.uint64(stream) * _GOLD))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def hash_normal(series: np.ndarray, sample: np.ndarray, seed: int) -> np.ndarray:
    """Standard normal noise at (series, sample), independent of how it is blocked.

    ``series`` has shape (m, 1) and ``sample`` shape (1, n) (int64); returns (m, n).
    """
    with np.errstate(over="ignore"):
        key = _mix(series.astype(np.uint64) * np.uint64(0x100000001B3) + np.uint64(seed))
        counter = key ^ sample.astype(np.uint64)
    u1 = _uniform(counter, 1)
    u2 = _uniform(counter, 2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _series_params(series: np.ndarray, seed: int, stream: int) -> np.ndarray:
    return _uniform(_mix(series.astype(np.uint64) + np.uint64(seed) * np.uint64(7919)), stream)


@register_source
class SensorsSource(SourceBase):
    """Synthetic noisy sensor series: a few sinusoids and a trend per sensor plus noise.

    Dims (sensor, time); sample ``i`` is at time ``i * dt`` seconds. The value at a
    (sensor, sample) depends only on the seed and those indices, so any window equals the
    same slice of a longer series. The window is ``time_range: [start, end]`` in seconds
    (the samples with ``start <= i * dt < end``), or, equivalently and kept for older
    files, ``time_offset`` (first sample index) and ``n_samples``; not both.
    """

    kind: Literal["sensors"] = "sensors"
    windows_itself: ClassVar[bool] = True
    n_series: int = Field(64, ge=1, description="number of sensors")
    n_samples: int | None = Field(
        None,
        ge=2,
        description="samples per sensor in this window (default 10000; null with time_range)",
    )
    time_offset: int | None = Field(
        None,
        ge=0,
        description="index of the window's first sample (default 0; null with time_range)",
    )
    dt: float = Field(0.01, gt=0, description="sample spacing in seconds")
    noise: float = Field(0.01, ge=0, description="noise standard deviation")
    seed: int = Field(0, ge=0, description="random seed")
    var: str = Field("temperature", description="name of the data variable")
    dtype: Literal["float64", "float32"] = "float64"
    chunks: Chunks = Field(
        default_factory=lambda: {"sensor": 64, "time": 65_536}, description="dask chunks"
    )
    delay_s: float = Field(
        0.0, ge=0, description="seconds to sleep per generated chunk (simulates a slow source)"
    )

    @model_validator(mode="after")
    def _one_window(self) -> SensorsSource:
        if self.time_range is not None:
            both = [k for k in ("n_samples", "time_offset") if getattr(self, k) is not None]
            if both:
                raise ValueError(
                    f"time_range conflicts with {', '.join(both)} (each sets the window); give "
                    "time_range (seconds) alone, or time_offset and n_samples (set them to "
                    "null to override a file's window with time_range)"
                )
            if not isinstance(self.time_range[0], float):
                raise ValueError(
                    "time_range: the sensors' time is in seconds from sample 0; give numbers, "
                    f"got {list(self.time_range)}"
                )
        if self.time_dim != "time":
            raise ValueError(f"time_dim: the sensors source's dim is 'time', got {self.time_dim!r}")
        return self

    def window(self) -> tuple[int, int]:
        """(index of the first sample, number of samples) of this window.

        For ``time_range`` the indices are those whose coordinate ``float(i) * dt`` (the
        very value the ``time`` coordinate holds) satisfies ``start <= t < end``.
        """
        if self.time_range is None:
            n = 10_000 if self.n_samples is None else self.n_samples
            return (self.time_offset or 0), n
        a, b = (float(x) for x in self.time_range)
        i0, i1 = _first_at_or_after(a, self.dt), _first_at_or_after(b, self.dt)
        if i1 <= i0:
            raise SourceError(
                ("time_range",),
                f"[{a:g}, {b:g}) selects no sample of 'time' (samples every dt={self.dt:g} s "
                "from 0 s)",
            )
        return i0, i1 - i0

    def _block(self, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        (s0, s1), (t0, t1) = block_info[None]["array-location"]  # type: ignore[index]
        if self.delay_s:
            _time.sleep(self.delay_s)
        offset = self.window()[0]
        return sensor_signal(
            np.arange(s0, s1), np.arange(t0, t1) + offset, self.dt, self.noise, self.seed
        ).astype(self.dtype)

    def open(self) -> Any:
        import dask.array as da
        import xarray as xr
        from dask.base import tokenize

        offset, n_samples = self.window()
        shape = (self.n_series, n_samples)
        cs = (
            min(self.chunks.get("sensor", shape[0]), shape[0]),
            min(self.chunks.get("time", shape[1]), shape[1]),
        )
        unknown = sorted(set(self.chunks) - {"sensor", "time"})
        if unknown:
            raise ValueError(f"source.chunks: unknown dim(s) {unknown}; dims: sensor, time")
        cs = tuple(shape[i] if c == -1 else c for i, c in enumerate(cs))
        arr = da.map_blocks(
            self._block,
            chunks=da.core.normalize_chunks(cs, shape),
            dtype=self.dtype,
            meta=np.empty((0, 0), dtype=self.dtype),
            name=f"sensors-{tokenize(self.model_dump_json())}",
        )
        t = (np.arange(n_samples) + offset) * self.dt
        return xr.Dataset(
            {self.var: (("sensor", "time"), arr, {"units": "K", "long_name": "sensor signal"})},
            coords={
                "sensor": np.arange(self.n_series),
                "time": ("time", t, {"units": "s"}),
            },
            attrs={"title": "synthetic sensor series (deltaflow generator)"},
        )


def _first_at_or_after(x: float, dt: float) -> int:
    """The smallest sample index ``i >= 0`` with ``float(i) * dt >= x`` (exact, no rounding
    slip: the same product the coordinate holds)."""
    i = max(math.ceil(x / dt), 0)
    while i > 0 and float(i - 1) * dt >= x:
        i -= 1
    while float(i) * dt < x:
        i += 1
    return i


def sensor_signal(
    series: np.ndarray, samples: np.ndarray, dt: float, noise: float, seed: int
) -> np.ndarray:
    """The sensor generator's values, shape (len(series), len(samples)); also its truth."""
    s = series[:, None]
    t = samples[None, :] * dt
    f = 0.05 + 0.45 * _series_params(s, seed, 11)
    phase = 2 * np.pi * _series_params(s, seed, 12)
    amp = 1.0 + 4.0 * _series_params(s, seed, 13)
    trend = 0.02 * (_series_params(s, seed, 14) - 0.5)
    base = 290.0 + amp * np.sin(2 * np.pi * f * t + phase)
    base = base + 0.3 * amp * np.sin(2 * np.pi * 3.1 * f * t + 0.5 * phase) + trend * t
    if noise:
        base = base + noise * hash_normal(s, samples[None, :], seed)
    return base


class Axis(StrictModel):
    """A regular grid axis: ``num`` points from ``start`` to ``stop`` (both included)."""

    start: float
    stop: float
    num: int = Field(ge=2)

    @model_validator(mode="after")
    def _order(self) -> Axis:
        if not self.stop > self.start:
            raise ValueError(f"stop must be greater than start ({self.start}), got {self.stop}")
        return self

    def values(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.num)


def _grid(axes: dict[str, Axis], chunks: Chunks | None) -> dict[str, Any]:
    import xarray as xr

    out = {}
    for name, ax in axes.items():
        c = (chunks or {}).get(name, -1)
        out[name] = xr.DataArray(ax.values(), dims=(name,), coords={name: ax.values()}).chunk(
            {name: c}
        )
    return out


@register_source
class BlackScholesSource(SourceBase):
    """Black–Scholes European call and put prices on a (spot, vol, [rate,] time) grid.

    ``time`` is the time to expiry in years; ``rate`` is a scalar or a grid axis.
    """

    kind: Literal["black_scholes"] = "black_scholes"
    strike: float = Field(100.0, gt=0)
    spot: Axis = Field(default_factory=lambda: Axis(start=50, stop=150, num=201))
    vol: Axis = Field(default_factory=lambda: Axis(start=0.1, stop=0.5, num=9))
    time: Axis = Field(default_factory=lambda: Axis(start=0.05, stop=2.0, num=40))
    rate: float | Axis = Field(0.02, description="risk-free rate: a number or an axis")
    dividend: float = Field(0.0, ge=0)
    chunks: Chunks | None = Field(None, description="dask chunks per dim (default: one chunk)")

    @field_validator("spot", "vol", "time")
    @classmethod
    def _positive(cls, ax: Axis) -> Axis:
        if ax.start <= 0:
            raise ValueError(f"axis must be positive, got start {ax.start}")
        return ax

    def open(self) -> Any:
        import xarray as xr
        from scipy.special import ndtr

        axes = {"spot": self.spot, "vol": self.vol, "time": self.time}
        if isinstance(self.rate, Axis):
            axes = {"spot": self.spot, "vol": self.vol, "rate": self.rate, "time": self.time}
        g = _grid(axes, self.chunks)
        r = g["rate"] if "rate" in g else self.rate
        s, v, t, k, q = g["spot"], g["vol"], g["time"], self.strike, self.dividend
        sq = v * np.sqrt(t)
        d1 = (np.log(s / k) + (r - q + 0.5 * v**2) * t) / sq
        d2 = d1 - sq
        n1 = xr.apply_ufunc(ndtr, d1, dask="allowed")
        n2 = xr.apply_ufunc(ndtr, d2, dask="allowed")
        disc_q = np.exp(-q * t)
        disc_r = np.exp(-r * t)
        call = s * disc_q * n1 - k * disc_r * n2
        put = k * disc_r * (1 - n2) - s * disc_q * (1 - n1)
        order = list(axes)
        ds = xr.Dataset(
            {
                "call": call.transpose(*order).assign_attrs(units="currency"),
                "put": put.transpose(*order).assign_attrs(units="currency"),
            },
            attrs={"title": "Black-Scholes option prices", "strike": k, "dividend": q},
        )
        if not isinstance(self.rate, Axis):
            ds.attrs["rate"] = self.rate
        ds["time"].attrs["units"] = "year"
        return _chunk(ds, self.chunks)


def _rosenbrock(xs: list[Any]) -> Any:
    if len(xs) < 2:
        raise ValueError("rosenbrock needs at least 2 axes")
    return sum(100.0 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2 for i in range(len(xs) - 1))


def _himmelblau(xs: list[Any]) -> Any:
    if len(xs) != 2:
        raise ValueError(f"himmelblau needs exactly 2 axes, got {len(xs)}")
    x, y = xs
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


TEST_FUNCTIONS = {
    "rosenbrock": _rosenbrock,
    "himmelblau": _himmelblau,
    "sphere": lambda xs: sum(x**2 for x in xs),
    "rastrigin": lambda xs: 10.0 * len(xs) + sum(x**2 - 10 * np.cos(2 * np.pi * x) for x in xs),
    "styblinski_tang": lambda xs: 0.5 * sum(x**4 - 16 * x**2 + 5 * x for x in xs),
}


@register_source
class FunctionSource(SourceBase):
    """A test function (rosenbrock, himmelblau, ...) sampled on a parameter grid, plus noise."""

    kind: Literal["function"] = "function"
    function: Literal["rosenbrock", "himmelblau", "sphere", "rastrigin", "styblinski_tang"] = (
        "rosenbrock"
    )
    axes: dict[str, Axis] = Field(
        default_factory=lambda: {
            "x": Axis(start=-2, stop=2, num=201),
            "y": Axis(start=-1, stop=3, num=201),
        },
        description="grid axes in dim order",
    )
    noise: float = Field(0.0, ge=0, description="noise standard deviation")
    seed: int = Field(0, ge=0)
    var: str = Field("f", description="name of the data variable")
    chunks: Chunks | None = Field(None, description="dask chunks per dim (default: one chunk)")

    @model_validator(mode="after")
    def _arity(self) -> FunctionSource:
        if not self.axes:
            raise ValueError("axes: at least one axis is needed")
        n = len(self.axes)
        if self.function == "rosenbrock" and n < 2:
            raise ValueError("rosenbrock needs at least 2 axes")
        if self.function == "himmelblau" and n != 2:
            raise ValueError(f"himmelblau needs exactly 2 axes, got {n}")
        return self

    def open(self) -> Any:
        import xarray as xr

        g = _grid(self.axes, self.chunks)
        names = list(self.axes)
        f = TEST_FUNCTIONS[self.function]([g[n] for n in names]).transpose(*names)
        if self.noise:
            shape = tuple(ax.num for ax in self.axes.values())
            flat = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
            flat_da = xr.DataArray(flat, dims=names).chunk(
                {n: (self.chunks or {}).get(n, -1) for n in names}
            )
            noise = xr.apply_ufunc(
                lambda c: hash_normal(
                    np.zeros((1, 1), np.int64), c.reshape(1, -1), self.seed
                ).reshape(c.shape),
                flat_da,
                dask="parallelized",
                output_dtypes=[np.float64],
            )
            f = f + self.noise * noise
        ds = xr.Dataset({self.var: f.assign_attrs(long_name=f"{self.function} function")})
        ds.attrs["title"] = f"{self.function} on a grid"
        return _chunk(ds, self.chunks)


def _lorenz(
    _t: float, s: np.ndarray, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0
) -> list[float]:
    x, y, z = s
    return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]


@register_source
class TrajectoriesSource(SourceBase):
    """Noisy trajectories of known dynamical systems, one per ``system`` (dims system, time).

    ``decay``: du/dt = -rate * u from random initial values (variable u); ``lorenz``:
    the Lorenz system (sigma 10, rho 28, beta 8/3) from random starts (x, y, z).
    Noise is Gaussian with standard deviation ``noise`` times each variable's spread.
    """

    kind: Literal["trajectories"] = "trajectories"
    system: Literal["decay", "lorenz"] = "lorenz"
    n_systems: int = Field(4, ge=1, le=100_000, description="independent systems")
    n_samples: int = Field(4000, ge=10, description="samples per trajectory")
    dt: float = Field(0.002, gt=0, description="sample spacing (time units)")
    rate: float = Field(1.0, gt=0, description="decay rate (decay system)")
    noise: float = Field(0.002, ge=0, description="relative noise level")
    seed: int = Field(0, ge=0)
    chunks: Chunks | None = Field(None, description="dask chunks per dim (default: one chunk)")

    def open(self) -> Any:
        import xarray as xr
        from scipy.integrate import solve_ivp

        rng = np.random.default_rng(self.seed)
        t = np.arange(self.n_samples) * self.dt
        if self.system == "decay":
            u0 = rng.uniform(0.5, 2.0, (self.n_systems, 1))
            states = {"u": u0 * np.exp(-self.rate * t)}
        else:
            starts = rng.uniform([-10, -10, 15], [10, 10, 35], (self.n_systems, 3))
            paths = np.stack(
                [
                    solve_ivp(_lorenz, (t[0], t[-1]), s0, t_eval=t, rtol=1e-10, atol=1e-10).y
                    for s0 in starts
                ]
            )
            states = {k: paths[:, i] for i, k in enumerate("xyz")}
        data = {}
        for k, v in states.items():
            spread = v.std(axis=1, keepdims=True)
            data[k] = (("system", "time"), v + self.noise * spread * rng.standard_normal(v.shape))
        ds = xr.Dataset(data, coords={"time": t, "system": np.arange(self.n_systems)})
        ds.attrs["title"] = f"{self.system} trajectories"
        return _chunk(ds, self.chunks)


@register_source
class GBMSource(SourceBase):
    """Geometric Brownian motion price paths (dims path, time; time in years)."""

    kind: Literal["gbm"] = "gbm"
    n_paths: int = Field(100, ge=1, description="number of paths")
    n_samples: int = Field(2521, ge=3, description="samples per path")
    years: float = Field(10.0, gt=0, description="length of each path in years")
    drift: float = Field(0.08, description="drift mu of S (per year)")
    volatility: float = Field(0.3, gt=0, description="volatility sigma (per sqrt(year))")
    s0: float = Field(100.0, gt=0, description="initial price")
    seed: int = Field(0, ge=0)
    var: str = Field("price", description="name of the data variable")
    chunks: Chunks | None = Field(None, description="dask chunks per dim (default: one chunk)")

    def open(self) -> Any:
        import xarray as xr

        rng = np.random.default_rng(self.seed)
        t = np.linspace(0.0, self.years, self.n_samples)
        dt = t[1] - t[0]
        mu, sig = self.drift, self.volatility
        steps = (mu - sig**2 / 2) * dt + sig * np.sqrt(dt) * rng.standard_normal(
            (self.n_paths, self.n_samples - 1)
        )
        logs = np.concatenate([np.zeros((self.n_paths, 1)), np.cumsum(steps, axis=1)], axis=1)
        da = xr.DataArray(
            self.s0 * np.exp(logs), dims=("path", "time"), coords={"time": t}
        ).assign_attrs(units="currency")
        da["time"].attrs["units"] = "year"
        ds = xr.Dataset(
            {self.var: da},
            attrs={"title": "geometric Brownian motion paths", "drift": mu, "volatility": sig},
        )
        return _chunk(ds, self.chunks)
