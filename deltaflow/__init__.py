"""deltaflow: chunked, distributed numerical differentiation of labelled data."""

from __future__ import annotations

from typing import Any

from . import accessor as _accessor  # noqa: F401  (registers the .delta accessor)
from .engine import differentiate, smooth
from .integrate import integrate
from .kernels import differentiate_array, get_method, registered

__version__ = "0.1.0"


def methods() -> dict[str, dict[str, Any]]:
    """Every registered method: parameters (defaults, constraints), orders, capabilities."""
    return {name: spec.describe() for name, spec in sorted(registered().items())}


__all__ = [
    "__version__",
    "differentiate",
    "differentiate_array",
    "get_method",
    "integrate",
    "methods",
    "smooth",
]
