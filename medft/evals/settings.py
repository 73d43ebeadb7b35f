"""Benchmark configs by name (``conf/eval/*.yaml`` on the ``EvalConfig`` schema) and their rules.

``train.eval_benchmarks`` loads benchmarks by name through :func:`load_benchmark`.
"""

from __future__ import annotations

from medft.config import CONF_DIR, EvalConfig, EvalKind
from medft.runtime.errors import ConfigError


def benchmark_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "eval").glob("*.yaml"))


def load_benchmark(name: str, key: str = "train.eval_benchmarks", chosen=None):
    """A benchmark config by its conf/eval/ name, typed like ``eval=<name>``.

    ``chosen`` is the job's composed ``eval`` section: when it is this benchmark, its
    command-line settings (``eval=kormedmcqa eval.path=...`` next to
    ``train.eval_benchmarks=[kormedmcqa]``) are used instead of the file's defaults.
    """
    from omegaconf import OmegaConf

    path = CONF_DIR / "eval" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{key}: {name} is not a benchmark; choose from: {', '.join(benchmark_names())}")
    cfg = OmegaConf.merge(OmegaConf.structured(EvalConfig), OmegaConf.load(path))
    if chosen is not None and chosen.get("name") == name:
        cfg = OmegaConf.merge(cfg, OmegaConf.to_container(chosen, resolve=True, enum_to_str=True))
    check(cfg)
    return cfg


def check_benchmarks(names) -> None:
    """Fail before training when train.eval_benchmarks names an unknown benchmark."""
    for name in names or ():
        load_benchmark(str(name))


def check(eval_cfg) -> None:
    """Rules across an eval config's keys, one ConfigError naming the key."""
    kind = EvalKind(eval_cfg.kind)
    if eval_cfg.limit is not None and eval_cfg.limit < 1:
        raise ConfigError(f"eval.limit={eval_cfg.limit} must be >= 1 (or null for every item)")
    if eval_cfg.fewshot < 0:
        raise ConfigError(f"eval.fewshot={eval_cfg.fewshot} must be >= 0")
    if eval_cfg.batch_size < 1 or eval_cfg.max_new_tokens < 1:
        raise ConfigError("eval.batch_size and eval.max_new_tokens must be >= 1")
    from medft.evals import registry

    benchmark = registry.benchmark(kind)
    if eval_cfg.fewshot and not benchmark.fewshot:
        only = ", ".join(f"eval={k}" for k in registry.fewshot_kinds())
        raise ConfigError(f"eval.fewshot={eval_cfg.fewshot}: only {only} has few-shot examples; set it to 0")
    benchmark.check(eval_cfg)
