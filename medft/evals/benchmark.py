"""What every benchmark offers the runner: one :class:`Benchmark` per ``EvalKind``.

A benchmark reads its items first (``load_items``: data only, so an offline mistake fails
before any weights load), then scores a loaded model on them (``score``). The registry in
:mod:`medft.evals.registry` maps each kind to its benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from medft.config import EvalKind


@runtime_checkable
class Benchmark(Protocol):
    kind: EvalKind
    fewshot: bool  # takes eval.fewshot examples

    def check(self, eval_cfg) -> None:
        """Rules on the eval config's keys that only this benchmark has; ConfigError naming the key."""

    def load_items(self, eval_cfg, model_cfg, trained: bool) -> Any:
        """The items to score. ``model_cfg`` is the run's (or the base model's) full config;
        ``trained`` says the model was fine-tuned with it, so its training data is known."""

    def score(self, loaded, eval_cfg, data, progress=None) -> dict:
        """``{"metrics", "items"}`` and optionally ``"groups"`` and ``"skipped"``; ``progress`` is a bar to update."""

    def count(self, data) -> int:
        """How many items ``score`` will go through (the progress bar's total)."""


def use_chat_template(eval_cfg) -> bool:
    """``eval.use_chat_template``, true unless set false."""
    value = eval_cfg.get("use_chat_template") if "use_chat_template" in eval_cfg else None
    return True if value is None else bool(value)


def _no_rules(eval_cfg) -> None:
    return None


@dataclass(frozen=True)
class FunctionBenchmark:
    """A benchmark made of its module's functions."""

    kind: EvalKind
    load: Callable[..., Any]
    scorer: Callable[..., dict]
    counter: Callable[[Any], int]
    rules: Callable[[Any], None] = _no_rules
    fewshot: bool = False

    def check(self, eval_cfg) -> None:
        self.rules(eval_cfg)

    def load_items(self, eval_cfg, model_cfg, trained: bool) -> Any:
        return self.load(eval_cfg, model_cfg, trained)

    def score(self, loaded, eval_cfg, data, progress=None) -> dict:
        return self.scorer(loaded, eval_cfg, data, progress)

    def count(self, data) -> int:
        return self.counter(data)
