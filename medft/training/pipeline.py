"""One SFT job, start to finish: the body of ``python -m medft.train``.

compose (done by Hydra) -> validate -> check the model is reachable -> load data ->
load model + tokenizer -> apply method -> tokenize with assistant-only labels ->
evaluate at step 0 -> train -> evaluate -> save safetensors -> write the run dir.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from medft.config import MethodName, to_container, validate
from medft.runs import rundir
from medft.runtime.console import quiet_known_warnings
from medft.runtime.devices import device_kind
from medft.runtime.distributed import is_main_process
from medft.runtime.errors import ConfigError, DataError

log = logging.getLogger("medft")


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


def _check_model_early(cfg: DictConfig):
    """Fail before loading data when the weights are unreachable or the method cannot fit."""
    from medft.modeling.models import num_decoder_layers, resolve_source

    source = resolve_source(cfg.model)
    layers = num_decoder_layers(cfg.model, source)
    k = cfg.method.trainable_layers
    if MethodName(cfg.method.name) is MethodName.freeze and layers is not None and k > layers:
        raise ConfigError(
            f"method.trainable_layers={k} but model={cfg.model.name} has {layers} decoder blocks; choose 1..{layers}"
        )
    return source


def _check_skip_ratio(label_report: dict, max_ratio: float) -> None:
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


def _final_value(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history if key in h]
    return values[-1] if values else None


def run_training(cfg: DictConfig, job: JobInfo) -> dict[str, Any]:
    """Train one job and return its metrics (also written to metrics.json)."""
    quiet_known_warnings()
    validate(cfg)
    check_objective(cfg)
    if cfg.train.eval_benchmarks:
        from medft.evals.settings import check_benchmarks

        check_benchmarks(cfg.train.eval_benchmarks)  # a typo fails now, not after training
    started = time.time()
    run_dir = job.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = to_container(cfg)
    previous = _previous_run(cfg, run_dir, resolved)
    if previous.get("finished"):
        log.info("resume: %s already finished; its metrics are returned as they are", run_dir)
        return previous["metrics"]
    main = is_main_process()  # with several workers, rank 0 alone writes files and logs to W&B
    if main:
        OmegaConf.save(OmegaConf.create(resolved), run_dir / "config.resolved.yaml")

    source = _check_model_early(cfg)
    memory = plan_memory(cfg, source)

    from medft.data.cache import prepare_data
    from medft.data.report import summary_table
    from medft.evals.contamination import check_contamination

    try:
        datasets, data_report = prepare_data(cfg.data)
        check_contamination(cfg, datasets, data_report)
    except DataError as err:
        if getattr(err, "report", None) and main:  # what was read and skipped before the failure
            rundir.write_json(run_dir / "data_report.json", err.report)
        raise
    if main:
        log.info("data:\n%s", summary_table(data_report))

    import torch
    from transformers import set_seed

    from medft.modeling import methods, models
    from medft.runs import tracking
    from medft.text import tokenized_cache
    from medft.text.templates import get_spec
    from medft.training import checkpoints
    from medft.training import packing as packing_lib
    from medft.training import trainer as trainer_lib

    set_seed(cfg.seed)
    device = device_kind()
    if device == "cuda" and torch.cuda.device_count() > 1 and cfg.launcher.nproc_per_node == 1:
        log.warning(
            "%d GPUs are visible but this job uses one; set launcher.nproc_per_node=%d to use them all",
            torch.cuda.device_count(),
            torch.cuda.device_count(),
        )
    tokenizer = models.load_tokenizer(cfg.model, source)
    spec = get_spec(cfg.model.chat_template)
    tokenized, label_report, data_report["tokenization_cache"] = tokenized_cache.tokenize_cached(
        datasets, tokenizer, spec, cfg.train.max_length, cfg.data, data_report.get("fingerprint")
    )
    data_report["tokenization"] = label_report
    if main:
        rundir.write_json(run_dir / "data_report.json", data_report)
    _check_skip_ratio(label_report, cfg.data.max_skip_ratio)

    model = models.load_model(cfg.model, cfg.method, device, source)
    weights_dtype = models.torch_dtype(cfg.model.dtype, device)
    model_code = models.model_code(model)
    log.info("model: %s", model_code)
    attention = getattr(model.config, "_attn_implementation", None)
    packing, probe = packing_lib.decide_packing(cfg.train.packing, model, tokenizer, cfg.model.name, attention)
    gc = trainer_lib.use_gradient_checkpointing(cfg, device, memory.get("checkpointing_needed"))
    model = methods.apply_method(model, cfg.model, cfg.method, gradient_checkpointing=gc)
    autocast = trainer_lib.use_bf16(cfg, device) or trainer_lib.use_fp16(cfg, device)
    if not autocast and MethodName(cfg.method.name) in (MethodName.freeze, MethodName.full):
        methods.align_input_dtypes(model)
    params = methods.trainable_summary(model)
    log.info(
        "trainable parameters: %s of %s (%.3f%%)",
        params["trainable_params"],
        params["total_params"],
        params["trainable_percent"],
    )

    group = default_group(cfg, job)
    wandb_run = (
        tracking.start_run(cfg, run_dir, resolved, job.overrides, group, run_id=previous.get("wandb_id"))
        if main
        else None
    )
    info: dict[str, Any] = {
        "run_dir": str(run_dir),
        "overrides": job.overrides,
        "group": group,
        "device": device,
        "model_source": source.describe(),
        "model_code": model_code,
        "wandb": None
        if wandb_run is None
        else {
            "id": wandb_run.id,
            "mode": tracking.resolve_mode(cfg.logger.mode),
            "project": cfg.logger.project,
        },
        "data_fingerprint": data_report.get("fingerprint"),
        "resumed_from": None if previous.get("checkpoint") is None else str(previous["checkpoint"]),
        "compute": {
            "bf16": trainer_lib.use_bf16(cfg, device),
            "gradient_checkpointing": gc,
            "attn_implementation": attention,
            "fp16": trainer_lib.use_fp16(cfg, device),
            "weights_dtype": str(weights_dtype).removeprefix("torch."),
            "trainable_dtype": "float32",
            "quantized_4bit": bool(getattr(model, "is_loaded_in_4bit", False)),
            "packing": packing,
            "packing_probe_max_logit_diff": None if probe is None else probe.max_abs_diff,
            "group_by_length": trainer_lib.use_group_by_length(cfg, packing),
            "fused_loss": trainer_lib.use_fused_loss(cfg, device),
            "liger": trainer_lib.use_liger(cfg, device),
            "tf32": trainer_lib.use_tf32(cfg, device),
            "dataloader_num_workers": cfg.train.dataloader_num_workers,
            "memory_plan": memory or None,
        },
        **params,
    }
    if main:
        rundir.write_json(run_dir / "manifest.json", rundir.manifest(info))
    tracking.declare_metrics(wandb_run, list(cfg.train.eval_benchmarks))
    exit_code = 1
    try:
        has_eval = len(tokenized["validation"]) > 0
        flatten = packing and info["compute"]["attn_implementation"] == "flash_attention_2"
        report_to = (
            ["wandb"]
            if wandb_run or (not main and getattr(cfg.logger.backend, "value", cfg.logger.backend) != "none")
            else []
        )
        args = trainer_lib.sft_config(
            cfg, run_dir, device, report_to, has_eval, flatten, packing=packing, gradient_checkpointing=gc
        )
        callbacks = checkpoints.callbacks(run_dir)
        stopper = callbacks[-1]
        if cfg.train.eval_benchmarks and cfg.train.eval_benchmarks_every > 0:
            from medft.evals.runner import benchmark_callback

            callbacks.append(
                benchmark_callback(
                    cfg, run_dir, list(cfg.train.eval_benchmarks), cfg.train.eval_benchmarks_every, wandb_run
                )
            )
        train_rows = tokenized["train"].remove_columns(["id"])
        if packing:
            train_rows = packing_lib.pack_rows(train_rows, cfg.train.max_length)
        sft = trainer_lib.build_trainer(
            model,
            tokenizer,
            args,
            train_rows,
            tokenized["validation"].remove_columns(["id"]) if has_eval else None,
            callbacks=callbacks,
            data_collator=packing_lib.RowPackedCollator(tokenizer.pad_token_id) if packing and not flatten else None,
            fused_loss=info["compute"]["fused_loss"],
        )
        _preflight(
            cfg, sft, tokenized, datasets, tokenizer, spec, model, train_rows if packing else None, run_dir, wandb_run
        )
        tracking.log_data(wandb_run, run_dir, label_report)
        # Step-0 validation loss: the baseline every later number is read against. A resumed
        # run reads it back instead: its model is no longer at step 0.
        checkpoint = previous.get("checkpoint")
        if checkpoint is not None:
            step0 = run_dir / "eval_step0.json"
            initial_eval = rundir.read_json(step0) if step0.is_file() else None
            log.info("resume: continuing from %s", checkpoint)
        else:
            initial_eval = sft.evaluate() if has_eval else None
            if main:
                rundir.write_json(run_dir / "eval_step0.json", initial_eval)
        with checkpoints.checkpoint_on_sigterm(stopper):
            train_output = sft.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
        if stopper.stopped_at is not None:
            raise stopper.preempted(checkpoints.latest_complete(run_dir / "checkpoints"))
        final_eval = sft.evaluate() if has_eval else {}
        # train() starts a fresh trainer state, so the step-0 evaluation is added back here.
        history = ([{**initial_eval, "epoch": 0.0, "step": 0}] if initial_eval else []) + list(sft.state.log_history)

        artifact_dir = _save(sft, model, tokenizer, cfg, run_dir, weights_dtype)
        metrics = {
            "train_loss": _final_value(sft.state.log_history, "loss"),
            "train_loss_first": next((h["loss"] for h in sft.state.log_history if "loss" in h), None),
            "train_loss_mean": train_output.training_loss,
            "eval_loss_initial": None if initial_eval is None else initial_eval["eval_loss"],
            "eval_loss": final_eval.get("eval_loss"),
            "eval_perplexity": math.exp(final_eval["eval_loss"]) if "eval_loss" in final_eval else None,
            "global_step": sft.state.global_step,
            "epochs": sft.state.epoch,
            "train_rows": len(tokenized["train"]),
            "validation_rows": len(tokenized["validation"]),
            "train_supervised_tokens": label_report["train"]["supervised_tokens"],
            "runtime_s": round(time.time() - started, 2),
            "train_runtime_s": train_output.metrics.get("train_runtime"),
            "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if device == "cuda" else None,
            "peak_rss_gb": rundir.peak_rss_gb(),
            "resumed_from": info["resumed_from"],
            "artifact": str(artifact_dir.relative_to(run_dir)),
            **params,
        }
        if not main:
            exit_code = 0
            return metrics
        if cfg.train.eval_benchmarks:
            from medft.evals.runner import run_benchmarks
            from medft.runs.loading import LoadedModel

            loaded = LoadedModel(cfg, tokenizer, model, run_dir, artifact_dir.name == "adapter")
            metrics["benchmarks"] = run_benchmarks(loaded, list(cfg.train.eval_benchmarks), run_dir / "eval", wandb_run)
        rundir.write_json(run_dir / "metrics.json", metrics)
        rundir.write_json(run_dir / "history.json", history)
        rundir.plot_loss(history, run_dir / "loss.png", f"{group} · {tracking.run_name(job.overrides)}")
        if wandb_run is not None:
            wandb_run.summary.update({f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        tracking.summarise_best(wandb_run, history, metrics)
        tracking.log_model(wandb_run, cfg, artifact_dir)
        exit_code = 0
        return metrics
    finally:
        tracking.finish_run(wandb_run, exit_code)


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


def objective_value(metrics: dict[str, Any], key: str) -> float | None:
    """The number a sweep optimises: a metrics.json key, dotted for nested ones."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None


def check_objective(cfg: DictConfig) -> None:
    key = cfg.objective
    head = key.split(".")[0]
    if head == "benchmarks":
        name = key.split(".")[1] if key.count(".") >= 2 else None
        if name not in list(cfg.train.eval_benchmarks):
            raise ConfigError(
                f"objective={key} needs the benchmark scored: add train.eval_benchmarks=[{name or '<name>'}] "
                f"and name a metric as benchmarks.<name>.<metric>"
            )
    elif key not in METRIC_KEYS:
        raise ConfigError(
            f"objective={key} is not a training metric; use one of {', '.join(METRIC_KEYS)} "
            f"or benchmarks.<name>.<metric>"
        )


def plan_memory(cfg: DictConfig, source, device: str | None = None, free_bytes: int | None = None) -> dict[str, Any]:
    """On CUDA, before any weights load: refuse a run that cannot fit (one line, with settings
    that do) and decide whether activations need checkpointing. Empty off CUDA."""
    if not cfg.train.memory_check:
        return {}
    if device is None:
        from medft.runtime.devices import device_kind

        device = device_kind()
    if device != "cuda":
        return {}
    from medft.training import memplan

    if free_bytes is None:
        import torch

        free_bytes = torch.cuda.mem_get_info()[0]
    shape = memplan.shape_from_source(cfg.model, source)
    needed = None
    if cfg.train.gradient_checkpointing is None:
        without = memplan.estimate_for_config(cfg, shape, device=device, gradient_checkpointing=False)
        needed = without.total > 0.9 * free_bytes  # keep a margin for fragmentation
        with open_dict(cfg):
            cfg.train.gradient_checkpointing = needed  # what check_fits and the trainer then assume
    try:
        estimate = memplan.check_fits(cfg, source, free_bytes)
    finally:
        if needed is not None:
            with open_dict(cfg):
                cfg.train.gradient_checkpointing = None
    log.info("memory plan: %s of %.1f GiB free", estimate.describe(), free_bytes / 2**30)
    return {
        "estimate_gib": round(estimate.total / 2**30, 2),
        "free_gib": round(free_bytes / 2**30, 2),
        "checkpointing_needed": needed,
        "breakdown_gib": {k: round(v / 2**30, 2) for k, v in estimate.breakdown().items()},
    }


def _previous_run(cfg: DictConfig, run_dir: Path, resolved: dict) -> dict[str, Any]:
    """With resume=: what the interrupted run left (checkpoint, W&B id), after checking it is the same run."""
    if not cfg.resume:
        return {}
    from medft.training import resume as resume_lib

    stored = run_dir / "config.resolved.yaml"
    if stored.is_file():
        resume_lib.check_same_run(OmegaConf.to_container(OmegaConf.load(stored)), resolved, run_dir)
    if (run_dir / "metrics.json").is_file():
        return {"finished": True, "metrics": rundir.read_json(run_dir / "metrics.json")}
    checkpoint = resume_lib.find_checkpoint(cfg.resume, run_dir)
    if checkpoint is None:
        log.info("resume=%s: no complete checkpoint in %s; starting from step 0", cfg.resume, run_dir / "checkpoints")
    manifest = rundir.read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    wandb_info = manifest.get("wandb") or {}
    return {"checkpoint": checkpoint, "wandb_id": wandb_info.get("id")}


def _preflight(cfg, sft, tokenized, datasets, tokenizer, spec, model, packed_rows, run_dir: Path, wandb_run) -> None:
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
            rundir.write_json(run_dir / "preflight.json", getattr(err, "summary", {}))
        raise
    if not is_main_process():
        return
    rundir.write_json(run_dir / "preflight.json", summary)
    log.info("preflight: %s", "; ".join(f"{k}: {v}" for k, v in summary["checks"].items()))
    if wandb_run is not None:
        wandb_run.summary.update({f"preflight/{k}": v for k, v in summary["checks"].items()})


def _save(sft, model, tokenizer, cfg: DictConfig, run_dir: Path, weights_dtype) -> Path:
    """Adapters for LoRA/QLoRA (float32, as trained), the whole model for freeze/full in the
    dtype it loaded in (its float32 master weights rounded once, at the end); safetensors only."""
    is_adapter = MethodName(cfg.method.name) in (MethodName.lora, MethodName.qlora)
    target = run_dir / ("adapter" if is_adapter else "model")
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
