"""One benchmark per eval kind, asked by kind."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from medft.config import EvalConfig, EvalKind
from medft.evals import registry, settings
from medft.evals.benchmark import Benchmark
from medft.runtime.errors import ConfigError


def test_every_eval_kind_has_a_benchmark():
    assert set(registry.BENCHMARKS) == set(EvalKind)
    for kind in EvalKind:
        benchmark = registry.benchmark(kind)
        assert isinstance(benchmark, Benchmark)
        assert benchmark.kind is kind
        assert registry.benchmark(kind.value) is benchmark


def test_only_kormedmcqa_takes_fewshot_examples():
    assert registry.fewshot_kinds() == ["kormedmcqa"]


def _cfg(**keys):
    return OmegaConf.merge(OmegaConf.structured(EvalConfig), {"name": "x", **keys})


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"kind": "pubmedqa_ko", "fewshot": 2}, r"^eval.fewshot=2: only eval=kormedmcqa has few-shot examples; set"),
        (
            {"kind": "heldout", "split": "dev"},
            r"^eval.split=dev must be one of train, validation, test for eval=heldout$",
        ),
        ({"kind": "kormedmcqa", "subsets": []}, r"^eval.subsets is empty; choose from: doctor, nurse, pharm, dentist$"),
        ({"kind": "kormedmcqa", "subsets": ["vet"]}, r"^eval.subsets: vet is not a KorMedMCQA subset"),
    ],
)
def test_each_benchmark_checks_its_own_keys(keys, message):
    with pytest.raises(ConfigError, match=message):
        settings.check(_cfg(**keys))


def test_shipped_benchmarks_pass_their_checks():
    for name in settings.benchmark_names():
        settings.load_benchmark(name)
