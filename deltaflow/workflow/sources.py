"""Workflow sources: files and stores to read, and generators that need no external data.

Each source is one small pydantic model registered under its ``kind`` with an
``open() -> xr.Dataset`` method that returns a lazy (dask-backed) dataset. Generators are
deterministic per element: the value at (series, sample) does not depend on the chunking or
on the window generated, so a window of a generated dataset equals the same slice of a
longer one (what append runs rely on).
"""

from __future__ import annotations

import time as _time
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


class SourceBase(StrictModel):
    """Base of every source: ``open()`` returns a lazy dataset."""

    local_paths: ClassVar[tuple[str, ...]] = ()

    def open(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Provenance: the source's settings."""
        return self.model_dump(mode="json")


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

    Dims (sensor, time); time in seconds (float) from ``time_offset * dt``. The value at a
    (sensor, sample) depends only on the seed and those indices, so a window
    (``time_offset``, ``n_samples``) equals the same slice of a longer series.
    """

    kind: Literal["sensors"] = "sensors"
    n_series: int = Field(64, ge=1, description="number of sensors")
    n_samples: int = Field(10_000, ge=2, description="samples per sensor in this window")
    time_offset: int = Field(0, ge=0, description="index of the first sample of the window")
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

    def _block(self, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        (s0, s1), (t0, t1) = block_info[None]["array-location"]  # type: ignore[index]
        if self.delay_s:
            _time.sleep(self.delay_s)
        return sensor_signal(
            np.arange(s0, s1), np.arange(t0, t1) + self.time_offset, self.dt, self.noise, self.seed
        ).astype(self.dtype)

    def open(self) -> Any:
        import dask.array as da
        import xarray as xr
        from dask.base import tokenize

        shape = (self.n_series, self.n_samples)
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
        t = (np.arange(self.n_samples) + self.time_offset) * self.dt
        return xr.Dataset(
            {self.var: (("sensor", "time"), arr, {"units": "K", "long_name": "sensor signal"})},
            coords={
                "sensor": np.arange(self.n_series),
                "time": ("time", t, {"units": "s"}),
            },
            attrs={"title": "synthetic sensor series (deltaflow generator)"},
        )


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
