"""Where the data lives: move arrays (NumPy, CuPy, Dask arrays of either) to the CPU or GPU.

``device=None`` leaves data where it is (CuPy input already runs on the GPU); ``"gpu"``
moves it to the current CUDA device through CuPy, ``"cpu"`` back to host memory. A Dask
array moves chunk by chunk, with a ``meta`` of the target kind so Dask never guesses a
NumPy chunk type; nothing is computed. :func:`check_method_device` refuses, before any
work, a method whose spec says it has no GPU path.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal, get_args

import numpy as np

from .kernels._xp import namespace, to_numpy

Device = Literal["cpu", "gpu"]  # the workflow key's type
DEVICES: tuple[str, ...] = get_args(Device)


def check_device(device: Any, where: str = "device") -> str | None:
    """``device`` as given (None, 'cpu' or 'gpu'); ValueError naming ``where`` otherwise."""
    if device is None or device in DEVICES:
        return device
    raise ValueError(
        f"{where}: must be 'cpu', 'gpu' or None (leave the data where it is), got {device!r}"
    )


def cupy_module() -> ModuleType:
    """CuPy, after checking that a CUDA device is usable; RuntimeError saying why not."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(
            f"device 'gpu' needs CuPy and an NVIDIA GPU: CuPy is not installed ({err}); "
            "pip install 'deltaflow[gpu]' on a machine with CUDA"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # driver missing or broken
        raise RuntimeError(f"device 'gpu': CuPy finds no usable CUDA device ({err})") from None
    if count < 1:
        raise RuntimeError("device 'gpu': CuPy finds no CUDA device")
    return cupy


def is_dask(a: Any) -> bool:
    """True for a Dask array."""
    return type(a).__module__.split(".")[0] == "dask" and hasattr(a, "chunks")


def array_module(a: Any) -> ModuleType:
    """The array module of ``a``'s chunks: its ``_meta``'s for a Dask array."""
    return namespace(a._meta if is_dask(a) else a)


def _meta(xp: ModuleType, a: Any) -> Any:
    return xp.empty((0,) * a.ndim, dtype=a.dtype)


def to_device(a: Any, device: str | None) -> Any:
    """``a`` on ``device`` (None: unchanged); Dask arrays stay lazy, moved per chunk."""
    if device is None:
        return a
    target = cupy_module() if device == "gpu" else np
    if array_module(a) is target:
        return a
    move = target.asarray if device == "gpu" else to_numpy
    if is_dask(a):
        return a.map_blocks(move, dtype=a.dtype, meta=_meta(target, a))
    return move(a)


def move_data(obj: Any, device: str | None) -> Any:
    """A DataArray or Dataset whose numeric data variables are on ``device``; coordinates
    stay on the host (kernels take coordinates as NumPy)."""
    if device is None:
        return obj
    import xarray as xr

    if isinstance(obj, xr.DataArray):
        return obj.copy(data=to_device(obj.data, device)) if obj.dtype.kind in "iufb" else obj
    moved = {
        k: v.copy(data=to_device(v.data, device))
        for k, v in obj.data_vars.items()
        if v.dtype.kind in "iufb"
    }
    return obj.assign(moved) if moved else obj


def check_method_device(spec: Any, data: Any, where: str, allow_host: bool = False) -> None:
    """TypeError naming the method and ``where`` when ``data`` is not host data, the method
    has no path for its array module (``spec.gpu`` false) and ``allow_host`` is not given;
    checked when the graph is built, before any work."""
    from .kernels.api import check_namespace

    check_namespace(spec, array_module(data), where, allow_host)
