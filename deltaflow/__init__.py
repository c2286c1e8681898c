"""deltaflow: chunked, distributed numerical differentiation of labelled data."""

from __future__ import annotations

from typing import Any

from . import accessor as _accessor  # noqa: F401  (registers the .delta accessor)
from .apps import check_gradient, critical_points, descent_path, residual, sensitivity
from .apps.discovery import discover
from .apps.finance import greeks, risk_neutral_density
from .apps.stochastic import log_return_rate
from .calculus import (
    curl,
    directional_derivative,
    divergence,
    gradient,
    hessian,
    jacobian,
    jacobian_logdet,
    laplacian,
)
from .engine import differentiate, smooth
from .integrate import integrate
from .io import open_store
from .kernels import differentiate_array, get_method, registered
from .scattered import fit_local

__version__ = "0.1.0"


def run_workflow(*args: Any, **kwargs: Any) -> Any:
    """Run a YAML workflow (see :func:`deltaflow.workflow.runner.run_workflow`)."""
    from .workflow.runner import run_workflow as _run

    return _run(*args, **kwargs)


def methods() -> dict[str, dict[str, Any]]:
    """Every registered method: parameters (defaults, constraints), orders, capabilities."""
    return {name: spec.describe() for name, spec in sorted(registered().items())}


__all__ = [
    "__version__",
    "check_gradient",
    "critical_points",
    "curl",
    "descent_path",
    "discover",
    "directional_derivative",
    "divergence",
    "fit_local",
    "gradient",
    "greeks",
    "hessian",
    "jacobian",
    "jacobian_logdet",
    "laplacian",
    "log_return_rate",
    "residual",
    "risk_neutral_density",
    "sensitivity",
    "differentiate",
    "differentiate_array",
    "get_method",
    "integrate",
    "methods",
    "open_store",
    "run_workflow",
    "smooth",
]
