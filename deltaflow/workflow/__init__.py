"""YAML workflows: validated configs, a registry of steps and sources, restartable runs."""

from __future__ import annotations

from ..apps import steps as _app_steps  # noqa: F401  (registers calculus/app steps)
from .config import ConfigError, LoadedWorkflow, json_schema, load_workflow, workflow_model
from .sources import SOURCES, register_source
from .steps import STEPS, Step, StepContext, StepError, register_step

__all__ = [
    "SOURCES",
    "STEPS",
    "ConfigError",
    "LoadedWorkflow",
    "Step",
    "StepContext",
    "StepError",
    "json_schema",
    "load_workflow",
    "register_source",
    "register_step",
    "workflow_model",
]
