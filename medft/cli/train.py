"""python -m medft.train [group=option ...] [key=value ...] [-m for sweeps]

Thin entrypoint: Hydra composes the config, medft.training.pipeline does the work (through
torchrun when launcher.nproc_per_node > 1). Nothing heavy is imported at module level,
so --help and --cfg job answer at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from medft.cli import fail, prepare_overrides, user_errors
from medft.config import CONF_DIR, register_schemas
from medft.runtime import console

register_schemas()
log = logging.getLogger("medft")


def _job_info():
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from medft.training.pipeline import JobInfo

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return JobInfo(
        run_dir=Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        sweep_dir=Path(hc.sweep.dir) if multirun else None,
    )


def _report(job, metrics: dict) -> None:
    first, last = metrics.get("eval_loss_initial"), metrics.get("eval_loss")
    print(f"medft: run dir {job.run_dir}")
    print(
        f"medft: train loss {metrics['train_loss_first']:.4f} -> {metrics['train_loss']:.4f}"
        + (f" | validation loss {first:.4f} (step 0) -> {last:.4f}" if last is not None and first is not None else "")
    )
    from medft.cli.summary import speed_line, wandb_line

    for line in (speed_line(job.run_dir, metrics), wandb_line(job.run_dir)):
        if line:
            print(line)


def _run(cfg: DictConfig, job):
    from medft.training.checkpoints import Preempted
    from medft.training.distributed import run_job
    from medft.training.pipeline import objective_value

    try:
        metrics = run_job(cfg, job)
    except Preempted as stop:
        where = f"; checkpoint {stop.checkpoint}" if stop.checkpoint else ""
        print(f"medft: {stop}{where}", file=sys.stderr)
        print(f"medft: continue with: python -m medft.train resume={job.run_dir}", file=sys.stderr)
        stop.hand_over()
        raise SystemExit(128 + int(stop.signum)) from None  # as if the signal had ended the process
    _report(job, metrics)
    return objective_value(metrics, cfg.objective)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    job = _job_info()
    if job.sweep_dir is None:
        with user_errors():
            return _run(cfg, job)
    # In a sweep a failing job is recorded and the sweep goes on (see medft.runs.sweeps).
    from medft.runs.rundir import RunDir
    from medft.runs.sweeps import record_failure

    try:
        return _run(cfg, job)
    except Exception as err:  # noqa: BLE001 - any trial error is the trial's, not the sweep's
        record_failure(job.run_dir, err)
        log.error("job %s failed: %s (details in %s)", job.run_dir.name, err, RunDir(job.run_dir).failed)
        print(
            f"medft: job {job.run_dir.name} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
            file=sys.stderr,
        )
        return None


def _refuse_foreign_torchrun() -> None:
    """`torchrun -m medft.train` would give every rank its own Hydra run dir (each resolves
    ${now:} itself); medft starts torchrun itself, once the config is frozen."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not os.environ.get("MEDFT_WORKER"):
        fail(
            "do not start medft.train under torchrun; run `python -m medft.train ... "
            "launcher.nproc_per_node=<GPUs>` and medft starts torchrun with one run dir"
        )


def run() -> None:
    """`python -m medft.train` and `medft train` start here."""
    sys.argv[1:] = console.setup(sys.argv[1:])
    with user_errors():
        _refuse_foreign_torchrun()
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
        from medft.training.resume import rewrite_argv

        sys.argv[1:] = rewrite_argv(sys.argv[1:])
    try:
        main()
    except BrokenPipeError:  # `--help | head`: the reader has seen enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
