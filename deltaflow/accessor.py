"""The ``.delta`` accessor on DataArray and Dataset: forwards to the engine functions."""

from __future__ import annotations

from typing import Any

import xarray as xr


class DeltaAccessor:
    """``obj.delta.differentiate(dim, ...)``, ``.smooth(dim, method, ...)``,
    ``.integrate(dim, ...)``: the same as ``deltaflow.<name>(obj, ...)``."""

    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    def differentiate(self, dim: str, *args: Any, **kwargs: Any) -> Any:
        """See :func:`deltaflow.differentiate`."""
        from .engine import differentiate

        return differentiate(self._obj, dim, *args, **kwargs)

    def smooth(self, dim: str, *args: Any, **kwargs: Any) -> Any:
        """See :func:`deltaflow.smooth`."""
        from .engine import smooth

        return smooth(self._obj, dim, *args, **kwargs)

    def integrate(self, dim: str, *args: Any, **kwargs: Any) -> Any:
        """See :func:`deltaflow.integrate`."""
        from .integrate import integrate

        return integrate(self._obj, dim, *args, **kwargs)


xr.register_dataarray_accessor("delta")(DeltaAccessor)
xr.register_dataset_accessor("delta")(DeltaAccessor)
