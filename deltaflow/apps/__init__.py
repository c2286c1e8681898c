"""Applications built on the calculus layer: what users came for.

Loss landscapes (critical points, descent paths), sensitivity analysis, physics residuals
and gradient checks; each has a figure in :mod:`deltaflow.plots`.
"""

from __future__ import annotations

from .gradcheck import GradientCheck, check_gradient
from .landscape import critical_points, descent_path, sample_function
from .residual import residual
from .sensitivity import sensitivity

__all__ = [
    "GradientCheck",
    "check_gradient",
    "critical_points",
    "descent_path",
    "residual",
    "sample_function",
    "sensitivity",
]
