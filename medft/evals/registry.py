"""Every benchmark by its ``EvalKind``: the runner and the settings rules ask here."""

from __future__ import annotations

from typing import Any

from medft.config import EvalKind
from medft.evals import heldout, kormedmcqa, pubmedqa
from medft.evals.benchmark import Benchmark

BENCHMARKS: dict[EvalKind, Benchmark] = {
    b.kind: b for b in (kormedmcqa.BENCHMARK, pubmedqa.BENCHMARK, heldout.BENCHMARK)
}


def benchmark(kind: Any) -> Benchmark:
    """The benchmark of an ``EvalKind``, its string, or an eval config's ``kind``."""
    return BENCHMARKS[EvalKind(kind)]


def fewshot_kinds() -> list[str]:
    return [k.value for k, b in BENCHMARKS.items() if b.fewshot]
