"""One SFT job, start to finish: ``run_training`` (the stages are in ``medft.training.recipe``),
and the number a sweep optimises from a run's metrics."""

from __future__ import annotations

from typing import Any

from medft.config import METRIC_KEYS, check_objective
from medft.training.job import JobInfo, default_group
from medft.training.memory import plan_memory
from medft.training.recipe import run_training
from medft.training.steps import previous_run as _previous_run

__all__ = [
    "METRIC_KEYS",
    "JobInfo",
    "check_objective",
    "default_group",
    "objective_value",
    "plan_memory",
    "run_training",
    "_previous_run",
]


def objective_value(metrics: dict[str, Any], key: str) -> float | None:
    """The number a sweep optimises: a metrics.json key, dotted for nested ones."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None
