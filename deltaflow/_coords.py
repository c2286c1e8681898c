"""Coordinates for the engine: the numeric axis of a dim (datetime, cftime, none) and checks.

A datetime64 or cftime coordinate becomes float64 offsets from its first value in
``datetime_unit``; timedelta64 becomes a count of ``datetime_unit``; a dim without a
coordinate gets unit spacing (0, 1, ..., n-1). Every axis goes through
:func:`deltaflow.kernels.check_coordinate` (finite, strictly monotonic, right length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .kernels import check_coordinate

# numpy unit code -> CF / cftime unit name
DATETIME_UNITS = {
    "W": "weeks",
    "D": "days",
    "h": "hours",
    "m": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
}
_SECONDS = {
    "W": 604800.0,
    "D": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "ns": 1e-9,
}


@dataclass(frozen=True)
class Axis:
    """The numeric axis of one dim: values, their units (None if unknown), attrs to record."""

    dim: str
    values: np.ndarray
    units: str | None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])


def check_datetime_unit(datetime_unit: str) -> str:
    """ValueError unless ``datetime_unit`` is one of W, D, h, m, s, ms, us, ns."""
    if datetime_unit not in DATETIME_UNITS:
        raise ValueError(
            f"datetime_unit must be one of {', '.join(DATETIME_UNITS)}, got {datetime_unit!r}"
        )
    return datetime_unit


def _is_cftime(values: np.ndarray) -> bool:
    if values.dtype != object or values.size == 0:
        return False
    try:
        import cftime
    except ImportError:  # pragma: no cover - cftime is a test dependency
        return False
    return isinstance(values.flat[0], cftime.datetime)


def numeric_axis(obj: Any, dim: str, datetime_unit: str = "s", *, where: str) -> Axis:
    """The checked float64 axis of ``dim`` of a DataArray or Dataset.

    Raises ValueError naming ``where`` (variable and dim) and the first offending position
    when the coordinate is not finite, not strictly monotonic, or has duplicates.
    """
    check_datetime_unit(datetime_unit)
    if dim not in obj.dims:
        raise ValueError(f"{where}: dim {dim!r} not found; dims are {tuple(obj.dims)}")
    n = int(obj.sizes[dim])
    if dim not in obj.coords:
        return Axis(
            dim,
            np.arange(n, dtype=np.float64),
            None,
            {"deltaflow_coordinate": f"unit spacing: dim {dim!r} has no coordinate"},
        )
    coord = obj.coords[dim]
    values = np.asarray(coord.values)
    units = coord.attrs.get("units")
    attrs: dict[str, Any] = {}
    if values.dtype.kind == "M" or _is_cftime(values):
        x = _datetime_offsets(values, datetime_unit, where)
        units = datetime_unit
        ref = str(values[0]) if values.size else ""
        attrs = {
            "deltaflow_datetime_unit": datetime_unit,
            "deltaflow_coordinate": f"{dim} in {DATETIME_UNITS[datetime_unit]} since {ref}",
        }
    elif values.dtype.kind == "m":
        nat = np.isnat(values)
        x = values.astype("timedelta64[ns]").astype(np.int64) * 1e-9 / _SECONDS[datetime_unit]
        x[nat] = np.nan
        units = datetime_unit
        attrs = {"deltaflow_datetime_unit": datetime_unit}
    else:
        x = values
    return Axis(dim, check_coordinate(x, n, where=where), units, attrs)


def _datetime_offsets(values: np.ndarray, unit: str, where: str) -> np.ndarray:
    """float64 offsets of datetime64 or cftime values from the first one, in ``unit``."""
    if values.size == 0:
        return np.zeros(0)
    if values.dtype.kind == "M":
        v = values.astype("datetime64[ns]")
        nat = np.isnat(v)
        first = v[np.flatnonzero(~nat)[0]] if (~nat).any() else v[0]
        off = (v - first).astype(np.int64).astype(np.float64) * (1e-9 / _SECONDS[unit])
        off[nat] = np.nan
        return off
    import cftime

    ref = values.flat[0]
    cal = getattr(ref, "calendar", "standard") or "standard"
    # cftime has no weeks; count days and scale
    base = "D" if unit in ("W", "ns") else unit
    units = f"{DATETIME_UNITS[base]} since {ref.strftime('%Y-%m-%d %H:%M:%S.%f')}"
    try:
        num = np.asarray(cftime.date2num(values, units, calendar=cal), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: cannot convert the cftime coordinate: {err}") from None
    if unit == "W":
        num = num / 7.0
    elif unit == "ns":
        num = num * 86400e9
    return num
