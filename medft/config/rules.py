"""Cross-field rules of a composed config, all reported at once.

Each rule is a small function of the config returning its violations, each one line naming
the key and the fix. :func:`violations` runs every rule; :func:`validate` raises one
:class:`ConfigViolations` listing them all, so a user fixes a config in one go.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from medft.config.schema.enums import MethodName
from medft.runtime.errors import ConfigError

REMOTE_CODE_CHOICES = ("auto", "true", "false")
LOGGER_MODES = (None, "online", "offline", "disabled")
# The metrics.json keys of a training run that `objective` may name (benchmarks.<name>.<metric> too).
METRIC_KEYS = (
    "train_loss",
    "train_loss_first",
    "train_loss_mean",
    "eval_loss_initial",
    "eval_loss",
    "eval_perplexity",
    "global_step",
    "runtime_s",
    "train_runtime_s",
    "peak_memory_gb",
    "peak_rss_gb",
)

Rule = Callable[[Any], list[str]]


class ConfigViolations(ConfigError):
    """Several rules broken at once: the message is a header line and one line per violation."""

    def __init__(self, found: list[str]):
        self.violations = list(found)
        if len(found) == 1:
            super().__init__(found[0])
        else:
            super().__init__("\n".join([f"{len(found)} problems in the config:", *(f"  - {v}" for v in found)]))


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def method_sections(cfg) -> list[str]:
    method = cfg.method
    name = MethodName(method.name)
    found = []
    if name in (MethodName.lora, MethodName.qlora) and method.lora is None:
        found.append(f"method={name.value} needs method.lora settings; use a method config from conf/method/")
    if name is MethodName.qlora and method.quantization is None:
        found.append("method=qlora needs method.quantization; use conf/method/qlora.yaml")
    if name is not MethodName.qlora and method.quantization is not None:
        found.append(f"method.quantization is set but method={name.value} does not quantize; use method=qlora")
    return found


def qlora_runs_here(cfg) -> list[str]:
    if MethodName(cfg.method.name) is not MethodName.qlora:
        return []
    found = []
    if not bitsandbytes_available():
        found.append(
            "method=qlora needs 4-bit bitsandbytes, which is not installed here; "
            "`pip install bitsandbytes` or use method=lora"
        )
    tiny = cfg.model.tiny
    if tiny is not None and (tiny.hidden_size % 64 or tiny.intermediate_size % 64):
        found.append(
            "method=qlora quantizes in blocks of 64: model.tiny.hidden_size and model.tiny.intermediate_size "
            "must be multiples of 64"
        )
    return found


def trainable_layers(cfg) -> list[str]:
    method = cfg.method
    name = MethodName(method.name)
    k = method.trainable_layers
    if name is MethodName.freeze:
        if k is None or k < 1:
            return [f"method.trainable_layers={k} must be a positive number of top decoder blocks to train"]
    elif k is not None:
        return [f"method.trainable_layers only applies to method=freeze, not method={name.value}"]
    return []


def model_weights(cfg) -> list[str]:
    model = cfg.model
    found = []
    if str(model.trust_remote_code).lower() not in REMOTE_CODE_CHOICES:
        found.append(f"model.trust_remote_code={model.trust_remote_code} must be one of auto, true, false")
    if model.hub_id is None and model.path is None and model.tiny is None:
        found.append(f"model={model.name} names no weights: set model.hub_id or model.path")
    return found


def data_splits(cfg) -> list[str]:
    found = []
    if not cfg.data.sources:
        found.append("data.sources is empty: pick a data config, e.g. data=sample or data=aihub")
    for key in ("validation_ratio", "test_ratio"):
        value = cfg.data[key]
        if not 0.0 <= value < 0.5:
            found.append(f"data.{key}={value} must be in [0, 0.5)")
    return found


def train_loop(cfg) -> list[str]:
    train = cfg.train
    found = []
    if train.per_device_batch_size < 1 or train.gradient_accumulation_steps < 1:
        found.append("train.per_device_batch_size and train.gradient_accumulation_steps must be >= 1")
    if train.max_length < 16:
        found.append(f"train.max_length={train.max_length} is too short for a chat turn; use >= 16")
    if train.learning_rate <= 0:
        found.append(f"train.learning_rate={train.learning_rate} must be > 0")
    if not 0.0 <= train.warmup_ratio < 1.0:
        found.append(f"train.warmup_ratio={train.warmup_ratio} must be in [0, 1)")
    return found


def checkpoints(cfg) -> list[str]:
    train = cfg.train
    found = []
    if train.load_best_model_at_end and train.save_strategy == "no":
        found.append("train.load_best_model_at_end=true needs checkpoints; set train.save_strategy=epoch or steps")
    if train.save_steps < 0:
        found.append(f"train.save_steps={train.save_steps} must be >= 0 (0: save as train.save_strategy says)")
    return found


def launcher(cfg) -> list[str]:
    launch = cfg.get("launcher")
    if launch is None:
        return []
    found = []
    if launch.nproc_per_node < 1 or launch.nnodes < 1:
        found.append("launcher.nproc_per_node and launcher.nnodes must be >= 1")
    if launch.nnodes > 1 and not launch.rdzv_endpoint:
        found.append("launcher.nnodes > 1 needs launcher.rdzv_endpoint=<node-0 host>:<port> on every node")
    return found


def logger_mode(cfg) -> list[str]:
    if cfg.logger.mode not in LOGGER_MODES:
        return [f"logger.mode={cfg.logger.mode} must be one of online, offline, disabled"]
    return []


def objective(cfg) -> list[str]:
    """The key a run returns and sweeps optimise must be a metric the run writes."""
    key = cfg.get("objective") or "eval_loss"
    head = key.split(".")[0]
    if head == "benchmarks":
        name = key.split(".")[1] if key.count(".") >= 2 else None
        if name not in list(cfg.train.eval_benchmarks):
            return [
                f"objective={key} needs the benchmark scored: add train.eval_benchmarks=[{name or '<name>'}] "
                f"and name a metric as benchmarks.<name>.<metric>"
            ]
    elif key not in METRIC_KEYS:
        return [
            f"objective={key} is not a training metric; use one of {', '.join(METRIC_KEYS)} "
            f"or benchmarks.<name>.<metric>"
        ]
    return []


RULES: tuple[Rule, ...] = (
    method_sections,
    qlora_runs_here,
    trainable_layers,
    model_weights,
    data_splits,
    train_loop,
    checkpoints,
    launcher,
    logger_mode,
    objective,
)


def violations(cfg, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """Every broken rule of a composed config, one line each (empty when the config is sound)."""
    return [line for rule in rules for line in rule(cfg)]


def validate(cfg) -> None:
    """Raise one ConfigViolations listing every broken rule; return quietly when there is none."""
    found = violations(cfg)
    if found:
        raise ConfigViolations(found)


def check_objective(cfg) -> None:
    """The objective rule alone, raised as one ConfigError."""
    found = objective(cfg)
    if found:
        raise ConfigViolations(found)
