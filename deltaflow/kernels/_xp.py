"""Array namespaces: one kernel code path for NumPy, CuPy and array-API arrays.

Kernels call :func:`namespace` on their input and use what it returns (``numpy`` for
NumPy input, ``cupy`` for CuPy input, the array's own ``__array_namespace__`` otherwise).
:func:`scipy_for` gives the matching SciPy (``scipy`` or ``cupyx.scipy``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def namespace(*arrays: Any) -> ModuleType:
    """The array module of ``arrays`` (all must share one); NumPy for plain sequences."""
    mods = set()
    for a in arrays:
        if a is None or isinstance(a, int | float | np.ndarray | np.generic | list | tuple):
            mods.add(np)
            continue
        mod = type(a).__module__.split(".")[0]
        if mod == "cupy":
            import cupy

            mods.add(cupy)
        elif hasattr(a, "__array_namespace__"):
            mods.add(a.__array_namespace__())
        else:
            mods.add(np)
    if len(mods) > 1 and np in mods:
        mods.discard(np)  # numpy scalars/coords mix freely with a device array
    if len(mods) != 1:
        raise TypeError(f"arrays from several namespaces: {sorted(m.__name__ for m in mods)}")
    return mods.pop()


def is_numpy(xp: ModuleType) -> bool:
    """True for the NumPy module itself (where the numba fast paths apply)."""
    return xp is np


def is_cupy(xp: ModuleType) -> bool:
    """True for the CuPy module (where the CUDA kernels of ``_cuda`` apply)."""
    return getattr(xp, "__name__", "") == "cupy"


def scipy_for(xp: ModuleType) -> ModuleType:
    """SciPy for NumPy, ``cupyx.scipy`` for CuPy; TypeError for others."""
    if xp is np:
        import scipy

        return scipy
    if xp.__name__ == "cupy":
        import cupyx.scipy

        return cupyx.scipy
    raise TypeError(f"no SciPy equivalent for array namespace {xp.__name__!r}")


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy copy of a NumPy, CuPy or array-API array."""
    if isinstance(a, np.ndarray):
        return a
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return np.asarray(a)


def asarray_like(a: Any, xp: ModuleType, dtype: Any = None) -> Any:
    """``a`` (host data such as weights) as an array of namespace ``xp``."""
    if xp is np:
        return np.asarray(a, dtype=dtype)
    return xp.asarray(np.asarray(a) if isinstance(a, list | tuple) else a, dtype=dtype)


def astype(a: Any, dtype: Any) -> Any:
    """``a`` as ``dtype`` without a copy when it already is (method or array-API function)."""
    if hasattr(a, "astype"):
        return a.astype(dtype, copy=False)
    return namespace(a).astype(a, dtype, copy=False)


def any_nan(y: Any) -> bool:
    """True when y holds a NaN, in one read pass (no temporary mask the size of y)."""
    xp = namespace(y)
    if is_cupy(xp):
        from ._cuda import any_nan as cuda_any_nan

        return cuda_any_nan(y)
    return bool(xp.isnan(xp.min(y)))  # min propagates NaN
