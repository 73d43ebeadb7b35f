"""The steps of a training run that stand on their own: checks before loading, reading back an
interrupted run, the preflight audit, saving the trained weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medft.config import MethodName
from medft.runs import rundir
from medft.runs.rundir import RunDir
from medft.runtime.distributed import is_main_process
from medft.runtime.errors import DataError

log = logging.getLogger("medft")


def check_model_early(cfg: DictConfig):
    """Fail before loading data when the weights are unreachable or the method cannot fit."""
    from medft.modeling.methods import descriptor
    from medft.modeling.models import num_decoder_layers, resolve_source

    source = resolve_source(cfg.model)
    layers = num_decoder_layers(cfg.model, source)
    descriptor(cfg.method.name).validate(cfg.method, cfg.model, layers)
    return source


def check_skip_ratio(label_report: dict, max_ratio: float) -> None:
    for split, stats in label_report.items():
        skipped = sum(entry["count"] for entry in stats["skipped"].values())
        if stats["rows"] and skipped / stats["rows"] > max_ratio:
            reasons = ", ".join(f"{r}={e['count']} (e.g. {e['examples'][0]})" for r, e in stats["skipped"].items())
            raise DataError(
                f"{skipped}/{stats['rows']} {split} rows cannot be trained on ({reasons}); "
                f"above data.max_skip_ratio={max_ratio}: see data_report.json"
            )
        if split == "train" and stats["kept"] == 0:
            raise DataError("no training rows left after tokenization; see data_report.json")


def final_value(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history if key in h]
    return values[-1] if values else None


def previous_run(cfg: DictConfig, run_dir: Path, resolved: dict) -> dict[str, Any]:
    """With resume=: what the interrupted run left (checkpoint, W&B id), after checking it is the same run."""
    if not cfg.resume:
        return {}
    from medft.training import resume as resume_lib

    stored = RunDir(run_dir).config
    if stored.is_file():
        resume_lib.check_same_run(OmegaConf.to_container(OmegaConf.load(stored)), resolved, run_dir)
    if RunDir(run_dir).metrics.is_file():
        return {"finished": True, "metrics": rundir.read_json(RunDir(run_dir).metrics)}
    checkpoint = resume_lib.find_checkpoint(cfg.resume, run_dir)
    if checkpoint is None:
        log.info(
            "resume=%s: no complete checkpoint in %s; starting from step 0", cfg.resume, RunDir(run_dir).checkpoints
        )
    manifest = rundir.read_json(RunDir(run_dir).manifest) if RunDir(run_dir).manifest.is_file() else {}
    wandb_info = manifest.get("wandb") or {}
    return {"checkpoint": checkpoint, "wandb_id": wandb_info.get("id")}


def preflight(cfg, sft, tokenized, datasets, tokenizer, spec, model, packed_rows, run_dir: Path, wandb_run) -> None:
    """Audit the training signal before step 0; the summary lands in preflight.json and W&B."""
    from medft.modeling import coverage
    from medft.text import audit

    try:
        summary = audit.preflight(
            rows=tokenized["train"],
            records=datasets["train"],
            tokenizer=tokenizer,
            spec=spec,
            model_template=getattr(tokenizer, "medft_model_template", None),
            packed_rows=packed_rows,
            collator=sft.data_collator,
            model_checks=[lambda report: coverage.check_lora_coverage(report, model, cfg.model, cfg.method)],
        )
    except audit.AuditError as err:
        if is_main_process():
            rundir.write_json(RunDir(run_dir).preflight, getattr(err, "summary", {}))
        raise
    if not is_main_process():
        return
    rundir.write_json(RunDir(run_dir).preflight, summary)
    log.info("preflight: %s", "; ".join(f"{k}: {v}" for k, v in summary["checks"].items()))
    if wandb_run is not None:
        wandb_run.summary.update({f"preflight/{k}": v for k, v in summary["checks"].items()})


def save_artifact(sft, model, tokenizer, cfg: DictConfig, run_dir: Path, weights_dtype) -> Path:
    """Adapters for LoRA/QLoRA (float32, as trained), the whole model for freeze/full in the
    dtype it loaded in (its float32 master weights rounded once, at the end); safetensors only."""
    is_adapter = MethodName(cfg.method.name) in (MethodName.lora, MethodName.qlora)
    target = RunDir(run_dir).adapter if is_adapter else RunDir(run_dir).model
    if getattr(sft, "is_fsdp_enabled", False) or getattr(sft, "is_deepspeed_enabled", False):
        # Sharded weights: the Trainer gathers them (every rank must take part).
        sft.save_model(str(target))
        (target / "training_args.bin").unlink(missing_ok=True)
        return target
    if not is_main_process():
        return target
    if not is_adapter:
        model.to(weights_dtype)
    # save_pretrained rather than Trainer.save_model, which also pickles training_args.bin.
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    if not is_adapter:
        from medft.modeling.models import keep_checkpoint_identity

        keep_checkpoint_identity(target, cfg.model)
    return target
