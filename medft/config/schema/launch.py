"""``logger`` and ``launcher``: where a run reports to and how many processes it runs in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from medft.config.schema.enums import LoggerBackend, Strategy
from medft.config.schema.fields import setting


@dataclass
class LoggerConfig:
    backend: LoggerBackend = setting(LoggerBackend.wandb, "wandb: log curves and results to W&B; none: no tracker.")
    project: str = setting("medft", "W&B project.")
    entity: Optional[str] = setting(None, "W&B team or user (null: the API key's default entity).")
    mode: Optional[str] = setting(
        None,
        "online, offline or disabled. null = auto: WANDB_MODE when set, else online with an API key, else offline.",
    )
    group: Optional[str] = setting(
        None, "W&B group of the run (null: <name>-sweep-<folder> in a sweep, else name, else <model>-<data>-<method>)."
    )
    tags: List[str] = setting(help="Extra W&B tags (model, data and method tags are always added).", factory=list)
    log_model: bool = setting(
        False, "Upload the run's adapter/ or model/ folder as a W&B model artifact when training ends."
    )


@dataclass
class LauncherConfig:
    """Workers per job. N > 1: medft freezes the config and starts torchrun itself."""

    nproc_per_node: int = setting(
        1, "Worker processes (GPUs) on this node; > 1 makes medft freeze the config and start torchrun itself."
    )
    nnodes: int = setting(1, "Nodes taking part in the job.")
    node_rank: int = setting(0, "This node's rank among nnodes (0 on the first).")
    rdzv_endpoint: Optional[str] = setting(
        None, "Multi-node rendezvous: host:port of node 0 (all nodes pass the same value); needed when nnodes > 1."
    )
    strategy: Strategy = setting(
        Strategy.ddp,
        "ddp: torchrun + DistributedDataParallel. fsdp, deepspeed_zero2, deepspeed_zero3: `accelerate launch` "
        "with the matching file in conf/accelerate/.",
    )
    accelerate_config: Optional[str] = setting(
        None,
        "Your own accelerate config file instead of the shipped one for strategy (conf/accelerate/<strategy>.yml).",
    )
