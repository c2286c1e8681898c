"""Differentiation kernels: pure array functions along the last axis (no xarray, no dask).

Importing this package registers every method module listed in ``METHOD_MODULES``.
"""

from __future__ import annotations

from importlib import import_module

from .api import check_coordinate, differentiate_array, run_kernel, uniform_step
from .registry import MethodParams, MethodSpec, Output, get_method, register, registered

# one module per method; each registers its MethodSpec on import
METHOD_MODULES = (
    "finite_difference",
    "spline",
    "kalman",
    "spectral",
    "tvr",
    "savgol",
    "lowess",
    "auto",
)

for _name in METHOD_MODULES:
    import_module(f"{__name__}.{_name}")

__all__ = [
    "MethodParams",
    "MethodSpec",
    "Output",
    "check_coordinate",
    "differentiate_array",
    "get_method",
    "register",
    "registered",
    "run_kernel",
    "uniform_step",
]
