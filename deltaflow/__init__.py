"""deltaflow: chunked, distributed numerical differentiation of labelled data."""

from __future__ import annotations

from typing import Any

from .kernels import differentiate_array, get_method, registered

__version__ = "0.1.0"


def methods() -> dict[str, dict[str, Any]]:
    """Every registered method: parameters (defaults, constraints), orders, capabilities."""
    return {name: spec.describe() for name, spec in sorted(registered().items())}


__all__ = ["__version__", "differentiate_array", "get_method", "methods"]
