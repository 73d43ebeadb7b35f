"""W&B for evaluation: results join the training run they belong to.

A run directory's manifest names its W&B run; evaluation resumes it, so benchmark scores
sit next to the run's loss curves. Without one (``logger=none`` at training, or a base
model) a new run is started in the training run's group. Offline unless told otherwise,
as in medft.runs.tracking.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from medft.runs.rundir import RunDir
from medft.runs.tracking import resolve_mode

log = logging.getLogger("medft")

TABLE_ROWS = 200


def _manifest(run_dir: Path | None) -> dict:
    path = RunDir(run_dir).manifest if run_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def start_eval_run(cfg, model_name: str, run_dir: Path | None, out_dir: Path, name: str, config: dict):
    """The W&B run to log into, or None for logger=none."""
    backend = cfg.logger.backend
    if backend == "none":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    mode = resolve_mode(cfg.logger.mode)
    settings = wandb.Settings(console="off", silent=True, x_disable_stats=True)
    manifest = _manifest(run_dir)
    previous = manifest.get("wandb") or {}
    if previous.get("id"):
        run = wandb.init(
            id=previous["id"],
            resume="allow",
            project=previous.get("project") or cfg.logger.project,
            entity=cfg.logger.entity,
            dir=str(run_dir),
            mode=mode,
            settings=settings,
        )
        log.info("W&B: logging %s into run %s (%s)", name, run.id, mode)
        return run
    group = cfg.logger.group or manifest.get("group") or cfg.name or f"{model_name}-base"
    out_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=group,
        name=f"evaluate {name}",
        job_type="evaluate",
        tags=[f"model:{model_name}", f"eval:{name}", *cfg.logger.tags],
        config=config,
        dir=str(out_dir.parent),
        mode=mode,
        settings=settings,
    )
    log.info("W&B: new run %s (%s) in group %s", run.id, mode, group)
    return run


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flat_metrics(name: str, result: dict) -> dict:
    """``<benchmark>/<metric>`` and ``<benchmark>/<group>/<metric>``, numbers only."""
    flat = {f"{name}/{k}": v for k, v in result["metrics"].items() if _numeric(v)}
    for group, values in result.get("groups", {}).items():
        flat.update({f"{name}/{group}/{k}": v for k, v in values.items() if _numeric(v)})
    return flat


def group_rows(result: dict) -> tuple[list[str], list[list]]:
    """The groups (KorMedMCQA's professions, a mixture's sources) as table columns and rows,
    so the dashboard shows them side by side as the printed table does."""
    groups = result.get("groups") or {}
    columns = list(dict.fromkeys(k for values in groups.values() for k in values))
    return ["group", *columns], [[group, *(values.get(c) for c in columns)] for group, values in groups.items()]


def log_result(run, name: str, result: dict, step: int | None = None) -> None:
    """Metrics into history and summary; the groups and the first scored items as tables."""
    if run is None:
        return
    import wandb

    flat = flat_metrics(name, result)
    if step is not None:
        flat["train/global_step"] = step  # the step axis the HF callback logs training against
    columns, rows = group_rows(result)
    if rows:
        flat[f"{name}/groups"] = wandb.Table(columns=columns, data=rows)
    items = result.get("items") or []
    if items:
        columns = [k for k, v in items[0].items() if isinstance(v, (str, int, float, bool)) or v is None]
        flat[f"{name}/items"] = wandb.Table(
            columns=columns, data=[[i.get(c) for c in columns] for i in items[:TABLE_ROWS]]
        )
    run.log(flat)
    run.summary.update({k: v for k, v in flat.items() if _numeric(v)})
