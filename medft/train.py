"""python -m medft.train [group=option ...] [key=value ...] [-m for sweeps]

Thin entrypoint: Hydra composes the config, medft.pipeline does the work. Nothing
heavy is imported at module level, so --help and --cfg job answer at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from medft.cli import check_overrides, user_errors
from medft.config import CONF_DIR, register_schemas

register_schemas()


def _job_info():
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from medft.pipeline import JobInfo

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return JobInfo(
        run_dir=Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        sweep_dir=Path(hc.sweep.dir) if multirun else None,
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        from medft.pipeline import run_training

        job = _job_info()
        metrics = run_training(cfg, job)
    first, last = metrics["eval_loss_initial"], metrics["eval_loss"]
    print(f"medft: run dir {job.run_dir}")
    print(
        f"medft: train loss {metrics['train_loss_first']:.4f} -> {metrics['train_loss']:.4f}"
        + (f" | validation loss {first:.4f} (step 0) -> {last:.4f}" if last is not None else "")
    )
    return last


if __name__ == "__main__":
    with user_errors():
        check_overrides(sys.argv[1:])
    main()
