"""The state one training run builds up, stage by stage (see ``medft.training.recipe``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from medft.config.resolve import Resolved
from medft.runs.rundir import RunDir
from medft.runtime.devices import DeviceFacts


@dataclass
class JobInfo:
    """What Hydra knows about this job, passed in so the pipeline runs without Hydra too."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    sweep_dir: Path | None = None


def default_group(cfg: DictConfig, job: JobInfo) -> str:
    if cfg.logger.group:
        return cfg.logger.group
    if job.sweep_dir is not None:
        prefix = f"{cfg.name}-" if cfg.name else ""
        return f"{prefix}sweep-{job.sweep_dir.name}"
    return cfg.name or f"{cfg.model.name}-{cfg.data.name}-{cfg.method.name.value}"


@dataclass
class Job:
    """One run: its config, where it writes, its settings as resolved, and what each stage made."""

    cfg: DictConfig
    info: JobInfo
    config: dict[str, Any]  # the composed config as plain containers (config.resolved.yaml)
    main: bool  # rank 0: the one process that writes files and logs to W&B
    previous: dict[str, Any]  # what an interrupted run left (resume=)
    started: float = field(default_factory=time.time)
    facts: DeviceFacts | None = None  # the machine's, read once
    resolved: Resolved | None = None  # every auto setting, decided once from cfg and facts
    source: Any = None  # where the weights come from (medft.modeling.models.WeightsSource)
    memory: dict[str, Any] = field(default_factory=dict)  # the memory plan (CUDA)
    # setup_data
    datasets: Any = None
    data_report: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None
    spec: Any = None  # the chat template's spec
    tokenized: Any = None
    label_report: dict[str, Any] = field(default_factory=dict)
    # setup_model
    model: Any = None
    weights_dtype: Any = None  # torch dtype the weights loaded in
    model_code: str | None = None
    packing_probe: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    # start_tracking / setup_trainer
    group: str = ""
    wandb_run: Any = None
    manifest: dict[str, Any] = field(default_factory=dict)
    trainer: Any = None
    stopper: Any = None
    train_rows: Any = None
    # train / finish
    initial_eval: dict[str, Any] | None = None
    train_output: Any = None
    final_eval: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifact_dir: Path | None = None

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    @property
    def files(self) -> RunDir:
        return RunDir(self.info.run_dir)

    @property
    def has_eval(self) -> bool:
        return self.tokenized is not None and len(self.tokenized["validation"]) > 0

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint this run resumes from, if any."""
        return self.previous.get("checkpoint")
