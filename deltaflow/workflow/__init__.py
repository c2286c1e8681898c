"""YAML workflows: validated configs, a registry of steps and sources, restartable runs."""

from __future__ import annotations

from typing import Any

from ..apps import market_steps as _market_steps  # noqa: F401  (registers market/dynamics steps)
from ..apps import steps as _app_steps  # noqa: F401  (registers calculus/app steps)
from .config import ConfigError, LoadedWorkflow, json_schema, load_workflow, workflow_model
from .sources import SOURCES, register_source
from .steps import STEPS, Step, StepContext, StepError, register_step


def __getattr__(name: str) -> Any:
    # the runner imports deltaflow.io, which imports this package: load it on first use
    if name in ("run_workflow", "plan_workflow", "validate_workflow", "RunSummary", "RunError"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RunError",
    "RunSummary",
    "SOURCES",
    "STEPS",
    "ConfigError",
    "LoadedWorkflow",
    "Step",
    "StepContext",
    "StepError",
    "json_schema",
    "load_workflow",
    "plan_workflow",
    "register_source",
    "register_step",
    "run_workflow",
    "validate_workflow",
    "workflow_model",
]
