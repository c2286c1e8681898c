"""Attributes of engine outputs: provenance (``deltaflow_*``), long_name and derived units.

Units follow the UDUNITS/CF product syntax (``m s-1``): when both the data and the
coordinate units parse as products of powers, exponents are combined (``m s-1`` over
``s`` gives ``m s-2``); otherwise the quotient is written as ``degC / (x y)^2``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

_TOKEN = re.compile(r"^([A-Za-z_%][A-Za-z_%]*?)(\^?-?\d+)?$")


def _parse_units(u: str) -> list[tuple[str, int]] | None:
    """'kg m-3' -> [('kg', 1), ('m', -3)]; None when u is not a plain product of powers."""
    out: list[tuple[str, int]] = []
    for tok in u.replace("*", " ").replace(".", " ").split():
        m = _TOKEN.match(tok)
        if m is None:
            return None
        exp = int(m.group(2).lstrip("^")) if m.group(2) else 1
        out.append((m.group(1), exp))
    return out


def _format_units(terms: list[tuple[str, int]]) -> str:
    parts = [sym if e == 1 else f"{sym}{e}" for sym, e in terms if e != 0]
    return " ".join(parts) if parts else "1"


def _combine(a: list[tuple[str, int]], b: list[tuple[str, int]], sign: int) -> str:
    """a * b**sign, exponents of equal symbols summed, a's order first."""
    acc: dict[str, int] = {}
    for sym, e in a:
        acc[sym] = acc.get(sym, 0) + e
    for sym, e in b:
        acc[sym] = acc.get(sym, 0) + sign * e
    return _format_units(list(acc.items()))


def _dimensionless(u: str) -> bool:
    return u.strip() in ("", "1")


def derivative_units(data_units: str | None, coord_units: str | None, order: int) -> str | None:
    """Units of the order-th derivative; None when either unit is unknown.

    ``derivative_units('degC', 's', 1) == 'degC s-1'``; ``('degC', 's', 2) -> 'degC s-2'``.
    """
    return _power_units(data_units, coord_units, -order)


def integral_units(data_units: str | None, coord_units: str | None) -> str | None:
    """Units of the integral along a coordinate: ``('m s-1', 's') -> 'm'``."""
    return _power_units(data_units, coord_units, 1)


def _power_units(data_units: str | None, coord_units: str | None, power: int) -> str | None:
    if data_units is None or coord_units is None:
        return None
    data_units, coord_units = str(data_units), str(coord_units)
    if _dimensionless(coord_units):
        return data_units
    a = [] if _dimensionless(data_units) else _parse_units(data_units)
    b = _parse_units(coord_units)
    if a is not None and b is not None:
        return _combine(a, [(s, e * abs(power)) for s, e in b], 1 if power > 0 else -1)
    c = f"({coord_units})" if " " in coord_units else coord_units
    if abs(power) != 1:
        c = f"{c}^{abs(power)}"
    return f"{data_units} {c}" if power > 0 else f"{data_units} / {c}"


def json_params(params: Any) -> str:
    """A method's parameter model as a compact, sorted JSON string."""
    data = params.model_dump(mode="json") if hasattr(params, "model_dump") else dict(params)
    return json.dumps(data, sort_keys=True, default=str)


def choices_summary(chosen: dict[str, Any]) -> str:
    """JSON: min / median / max of each per-series choice (numpy values only)."""
    out = {}
    for key, val in chosen.items():
        arr = np.asarray(val, dtype=np.float64)
        if arr.size == 0:
            continue
        out[key] = {
            "min": float(np.nanmin(arr)),
            "median": float(np.nanmedian(arr)),
            "max": float(np.nanmax(arr)),
        }
    return json.dumps(out, sort_keys=True)


def derivative_attrs(
    attrs_in: dict[str, Any],
    name: Any,
    *,
    method: str,
    order: int,
    dim: str,
    params: Any,
    axis_units: str | None,
    axis_attrs: dict[str, Any],
    exact: bool = True,
    smoothed: bool = False,
) -> dict[str, Any]:
    """The attrs of a derivative (or, with ``smoothed``, of the smoothed signal)."""
    label = attrs_in.get("long_name") or (str(name) if name is not None else "data")
    units_in = attrs_in.get("units")
    if smoothed:
        out = {"long_name": f"{label} (smoothed along {dim})"}
        if units_in is not None:
            out["units"] = units_in
    else:
        sup = "" if order == 1 else str(order)
        out = {"long_name": f"d{sup}({label})/d({dim}){sup}"}
        units = derivative_units(units_in, axis_units, order)
        if units is not None:
            out["units"] = units
    out.update(
        {
            "deltaflow_method": method,
            "deltaflow_order": int(order),
            "deltaflow_dim": dim,
            "deltaflow_params": json_params(params),
            # 1/0 rather than a bool: netCDF attributes cannot hold bools
            "deltaflow_exact": int(bool(exact)),
        }
    )
    if smoothed:
        out["deltaflow_output"] = "smoothed"
    out.update(axis_attrs)
    return out
