"""Weights & Biases runs (offline unless told otherwise) and reading offline runs back.

One W&B run per job: created before the trainer (HF's callback then reuses it) and
finished in ``finally`` so Hydra multirun jobs, which share one process, never log
into each other's run.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir

log = logging.getLogger(__name__)

SECRET_ENV_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def resolve_mode(configured: str | None) -> str:
    """online | offline | disabled. With neither WANDB_MODE nor an API key wandb refuses to
    start; offline runs can be synced later with `wandb sync`."""
    if configured:
        return configured
    env = os.environ.get("WANDB_MODE")
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_name(overrides: list[str]) -> str:
    """The job's overrides are what distinguishes it from its siblings in a group."""
    kept = [o for o in overrides if not o.startswith(("hydra.", "logger.mode", "resume="))]
    return ",".join(kept) if kept else "defaults"


def start_run(cfg, run_dir: Path, config: dict, overrides: list[str], group: str | None, run_id: str | None = None):
    """Start the job's W&B run, or return None for logger=none. A resumed job passes the
    interrupted run's id, so its curves continue in the same W&B run."""
    backend = cfg.logger.backend
    if backend == "none":
        return None
    import wandb

    mode = resolve_mode(cfg.logger.mode)
    # wandb's own console chatter (e.g. "URL not available in offline run" on every save)
    # drowns the training log; medft prints where the run is instead.
    os.environ.setdefault("WANDB_SILENT", "true")
    tags = [f"model:{cfg.model.name}", f"data:{cfg.data.name}", f"method:{config['method']['name']}"]
    tags += list(cfg.logger.tags)
    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group or group,
        name=run_name(overrides),
        tags=tags,
        config=config,
        dir=str(run_dir),
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )
    log.info("W&B run %s (%s) in group %s", run.id, mode, cfg.logger.group or group)
    if mode == "offline":
        log.info("W&B run saved offline in %s; upload it with: wandb sync %s", run.dir, Path(run.dir).parent)
    return run


def declare_metrics(run, benchmarks: list[str]) -> None:
    """Tell the dashboard how to compare runs: evaluation and benchmark curves on the
    optimizer-step axis, and the validation loss summarised by its best (lowest) value."""
    if run is None:
        return
    run.define_metric("train/global_step")
    run.define_metric("eval/loss", step_metric="train/global_step", summary="min")
    run.define_metric("eval/*", step_metric="train/global_step")
    for name in benchmarks:
        run.define_metric(f"{name}/*", step_metric="train/global_step")


def log_data(run, run_dir: Path, label_report: dict) -> None:
    """The data the run trained on, beside its curves: rows per split in the summary, the
    data report and the preflight audit as files of the run."""
    if run is None:
        return
    for split, stats in label_report.items():
        run.summary[f"data/{split}_rows"] = stats["kept"]
        run.summary[f"data/{split}_skipped"] = stats["rows"] - stats["kept"]
        run.summary[f"data/{split}_supervised_tokens"] = stats["supervised_tokens"]
    folder = RunDir(run_dir)
    for path in (folder.data_report, folder.preflight):
        if path.is_file():
            run.save(str(path), base_path=str(run_dir), policy="now")


def summarise_best(run, history: list[dict], metrics: dict) -> None:
    """Best validation loss (and its step) and the final benchmark scores, for run tables."""
    if run is None:
        return
    losses = [(h["eval_loss"], h.get("step", 0)) for h in history if isinstance(h.get("eval_loss"), (int, float))]
    if losses:
        best, step = min(losses)
        run.summary.update({"best/eval_loss": best, "best/eval_loss_step": step})
    for name, scores in (metrics.get("benchmarks") or {}).items():
        run.summary.update(
            {
                f"final/{name}/{k}": v
                for k, v in scores.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )


def log_model(run, cfg, artifact_dir: Path) -> None:
    """With logger.log_model=true: the adapter or model folder as a W&B model artifact."""
    if run is None or not cfg.logger.log_model:
        return
    import wandb

    from medft.config import slug

    kind = "adapter" if artifact_dir == RunDir(artifact_dir.parent).adapter else "model"
    artifact = wandb.Artifact(
        name=slug(f"{cfg.model.name}-{cfg.data.name}-{run.id}-{kind}", limit=120),
        type="model",
        metadata={
            "model": cfg.model.name,
            "method": str(cfg.method.name),
            "data": cfg.data.name,
            "kind": kind,
        },
    )
    artifact.add_dir(str(artifact_dir))
    run.log_artifact(artifact)
    log.info("W&B: %s logged as artifact %s", artifact_dir, artifact.name)


def finish_run(run, exit_code: int = 0) -> None:
    if run is not None:
        run.finish(exit_code=exit_code)


# --------------------------------------------------------------------------- offline reader
# The offline `.wandb` file is a LevelDB-style log of protobuf `Record`s: a 7-byte file
# header, then 32 KiB blocks of records each with a 7-byte header (crc, length, type).
# wandb 0.31 ships no reader for it, and offline runs write no config.yaml/summary.
_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _iter_payloads(data: bytes):
    pos = _HEADER
    pending = b""
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - (pos % _BLOCK)
        if left_in_block < _HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            pos += _BLOCK - (pos % _BLOCK)


def read_offline_run(run_path: Path) -> dict[str, Any]:
    """Config, tags, group, name, history rows and summary of an offline run folder (or .wandb file)."""
    import json

    from wandb.proto import wandb_internal_pb2

    run_path = Path(run_path)
    files = [run_path] if run_path.suffix == ".wandb" else sorted(run_path.glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file in {run_path}")
    result: dict[str, Any] = {
        "config": {},
        "tags": [],
        "group": None,
        "name": None,
        "id": None,
        "history": [],
        "summary": {},
    }
    for payload in _iter_payloads(files[0].read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result.update(id=record.run.run_id, group=record.run.run_group, name=record.run.display_name)
            result["tags"] = list(record.run.tags)
            for item in record.run.config.update:
                result["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                result["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                result["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "artifact":
            result.setdefault("artifacts", []).append({"name": record.artifact.name, "type": record.artifact.type})
        elif kind == "history":
            result["history"].append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            )
    return result


def find_offline_runs(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/offline-run-*"))
