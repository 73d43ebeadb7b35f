"""Config schemas: dataclasses registered in Hydra's ConfigStore, one module per config group.

The YAML files under ``conf/`` are merged onto these schemas, so an unknown key or a
value of the wrong type fails at compose time. Every field carries its help text
(``metadata["help"]``), from which docs/config.md is generated (``python -m medft.config.docs``).
Rules that span several keys live in :mod:`medft.config.rules`.

This package must stay light: it is imported by ``--help`` and ``--cfg job``, which
must not pay for torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from medft.config.schema.data import DataConfig, SourceConfig
from medft.config.schema.delivery import ChatConfig, ExportConfig
from medft.config.schema.enums import (
    Attention,
    DType,
    EvalKind,
    LoggerBackend,
    LoraTarget,
    MergeBase,
    MethodName,
    Pairing,
    SourceKind,
    Strategy,
)
from medft.config.schema.eval import EvalConfig
from medft.config.schema.fields import setting
from medft.config.schema.launch import LauncherConfig, LoggerConfig
from medft.config.schema.method import LoraSettings, MethodConfig, QuantizationSettings
from medft.config.schema.model import GenerationDefaults, ModelConfig, TinyArchitecture
from medft.config.schema.train import TrainConfig


@dataclass
class RootConfig:
    model: ModelConfig = setting(help="The base model (conf/model/).", factory=ModelConfig)
    data: DataConfig = setting(help="The training data (conf/data/).", factory=DataConfig)
    method: MethodConfig = setting(help="Which weights train (conf/method/).", factory=MethodConfig)
    train: TrainConfig = setting(help="The training loop.", factory=TrainConfig)
    logger: LoggerConfig = setting(help="Experiment tracking (conf/logger/).", factory=LoggerConfig)
    name: Optional[str] = setting(None, "The run's name, set by experiment presets; also the default W&B group.")
    seed: int = setting(42, "Seed of model initialisation, data order and sampling.")
    run: Optional[str] = setting(
        None, "evaluate, export, chat, serve: the training run directory to load (instead of model=)."
    )
    eval: Optional[EvalConfig] = setting(None, "The benchmark medft.evaluate scores (conf/eval/; null: none).")
    chat: ChatConfig = setting(help="Conversation settings of chat and serve.", factory=ChatConfig)
    export: ExportConfig = setting(
        help="How medft.export writes a trained run as a model folder.", factory=ExportConfig
    )
    resume: Optional[str] = setting(
        None,
        "auto: continue the latest complete checkpoint (of the newest unfinished run with the same overrides, "
        "or of each job's dir in a sweep); or a run dir / checkpoint path to continue (null: start fresh).",
    )
    objective: str = setting(
        "eval_loss",
        "The metrics.json key (dotted for nested, e.g. benchmarks.<name>.<metric>) that train returns and "
        "sweeps optimise.",
    )
    launcher: LauncherConfig = setting(help="Processes and nodes per job.", factory=LauncherConfig)


def register_schemas() -> None:
    """Make the schema available to ``conf/train.yaml`` as ``medft_schema``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="medft_schema", node=RootConfig)


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain data (enums as their values)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


__all__ = [
    "Attention",
    "ChatConfig",
    "DataConfig",
    "DType",
    "EvalConfig",
    "EvalKind",
    "ExportConfig",
    "GenerationDefaults",
    "LauncherConfig",
    "LoggerBackend",
    "LoggerConfig",
    "LoraSettings",
    "LoraTarget",
    "MergeBase",
    "MethodConfig",
    "MethodName",
    "ModelConfig",
    "Pairing",
    "QuantizationSettings",
    "RootConfig",
    "SourceConfig",
    "SourceKind",
    "Strategy",
    "TinyArchitecture",
    "TrainConfig",
    "register_schemas",
    "setting",
    "to_container",
]
