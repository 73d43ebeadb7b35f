"""One SFT job, start to finish: the body of ``medft train``, as a recipe of short stages.

setup_run (validate, resume, the device's facts -> resolved settings, the memory plan) ->
setup_data (load, clean, split, tokenize with assistant-only labels) -> setup_model (load,
packing probe, method) -> start_tracking (W&B, manifest) -> setup_trainer (TRL's trainer,
preflight audit) -> train (step-0 evaluation, training, final evaluation) -> finish (save
safetensors, metrics, benchmarks, the run dir). The stages share one :class:`Job`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medft.config import MethodName, to_container, validate
from medft.config.resolve import resolve
from medft.runs import rundir
from medft.runtime.console import quiet_known_warnings
from medft.runtime.devices import device_facts
from medft.runtime.distributed import is_main_process
from medft.runtime.errors import DataError
from medft.training import steps
from medft.training.job import Job, JobInfo, default_group
from medft.training.memory import plan_memory

log = logging.getLogger("medft")


def setup_run(cfg: DictConfig, info: JobInfo) -> Job:
    """Check the config, read back an interrupted run, decide every auto setting and plan the memory."""
    quiet_known_warnings()
    validate(cfg)
    if cfg.train.eval_benchmarks:
        from medft.evals.settings import check_benchmarks

        check_benchmarks(cfg.train.eval_benchmarks)  # a typo fails now, not after training
    started = time.time()
    info.run_dir.mkdir(parents=True, exist_ok=True)
    config = to_container(cfg)
    previous = steps.previous_run(cfg, info.run_dir, config)
    job = Job(cfg, info, config, is_main_process(), previous, started=started)
    if previous.get("finished"):
        return job
    if job.main:
        OmegaConf.save(OmegaConf.create(config), job.files.config)
    job.facts = facts = device_facts()
    job.resolved = resolve(cfg, facts)
    job.source = steps.check_model_early(cfg)
    job.memory = plan_memory(cfg, job.source, job.resolved, facts.free_memory)
    job.resolved = job.resolved.with_memory_plan(job.memory.get("checkpointing_needed"))
    return job


def setup_data(job: Job) -> None:
    """Load, clean and split the data, check it for benchmark contamination, tokenize it."""
    from medft.data.cache import prepare_data
    from medft.data.report import summary_table
    from medft.evals.contamination import check_contamination

    cfg = job.cfg
    try:
        job.datasets, job.data_report = prepare_data(cfg.data)
        check_contamination(cfg, job.datasets, job.data_report)
    except DataError as err:
        if getattr(err, "report", None) and job.main:  # what was read and skipped before the failure
            rundir.write_json(job.files.data_report, err.report)
        raise
    if job.main:
        log.info("data:\n%s", summary_table(job.data_report))
    from transformers import set_seed

    set_seed(cfg.seed)
    facts = job.facts
    if facts.cuda and facts.gpu_count > 1 and cfg.launcher.nproc_per_node == 1:
        log.warning(
            "%d GPUs are visible but this job uses one; set launcher.nproc_per_node=%d to use them all",
            facts.gpu_count,
            facts.gpu_count,
        )
    _tokenize(job)


def _tokenize(job: Job) -> None:
    from medft.modeling import models
    from medft.text import tokenized_cache
    from medft.text.templates import get_spec

    cfg = job.cfg
    job.tokenizer = models.load_tokenizer(cfg.model, job.source)
    job.spec = get_spec(cfg.model.chat_template)
    report = job.data_report
    job.tokenized, job.label_report, report["tokenization_cache"] = tokenized_cache.tokenize_cached(
        job.datasets, job.tokenizer, job.spec, cfg.train.max_length, cfg.data, report.get("fingerprint")
    )
    report["tokenization"] = job.label_report
    if job.main:
        rundir.write_json(job.files.data_report, report)
    steps.check_skip_ratio(job.label_report, cfg.data.max_skip_ratio)


def setup_model(job: Job) -> None:
    """Load the model as resolved, settle packing with the isolation probe, apply the method."""
    import torch

    from medft.modeling import methods, models
    from medft.training import packing as packing_lib

    cfg, resolved = job.cfg, job.resolved
    model = models.load_model(cfg.model, cfg.method, resolved.device, job.source, attention=resolved.attention)
    job.weights_dtype = getattr(torch, resolved.weights_dtype)
    job.model_code = models.model_code(model)
    log.info("model: %s", job.model_code)
    packed, job.packing_probe = packing_lib.decide_packing(
        cfg.train.packing, model, job.tokenizer, cfg.model.name, resolved.attention
    )
    job.resolved = resolved = resolved.with_packing(packed)
    model = methods.apply_method(model, cfg.model, cfg.method, gradient_checkpointing=resolved.gradient_checkpointing)
    if not resolved.autocast and MethodName(cfg.method.name) in (MethodName.freeze, MethodName.full):
        methods.align_input_dtypes(model)
    job.model = model
    job.params = params = methods.trainable_summary(model)
    log.info(
        "trainable parameters: %s of %s (%.3f%%)",
        params["trainable_params"],
        params["total_params"],
        params["trainable_percent"],
    )


def _compute(job: Job) -> dict[str, Any]:
    """The manifest's account of how the run computes: the resolved switches and what the model loaded as."""
    r, model, probe = job.resolved, job.model, job.packing_probe
    return {
        "bf16": r.bf16,
        "gradient_checkpointing": r.gradient_checkpointing,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "fp16": r.fp16,
        "weights_dtype": str(job.weights_dtype).removeprefix("torch."),
        "trainable_dtype": "float32",
        "quantized_4bit": bool(getattr(model, "is_loaded_in_4bit", False)),
        "packing": r.packing,
        "packing_probe_max_logit_diff": None if probe is None else probe.max_abs_diff,
        "group_by_length": r.group_by_length,
        "fused_loss": r.fused_loss,
        "liger": r.liger,
        "tf32": r.tf32,
        "dataloader_num_workers": job.cfg.train.dataloader_num_workers,
        "memory_plan": job.memory or None,
    }


def start_tracking(job: Job) -> None:
    """Start the W&B run (rank 0) and write the manifest: what ran, where, with which settings."""
    from medft.runs import tracking

    cfg, info = job.cfg, job.info
    job.group = default_group(cfg, info)
    if job.main:
        job.wandb_run = tracking.start_run(
            cfg, job.run_dir, job.config, info.overrides, job.group, run_id=job.previous.get("wandb_id")
        )
    wandb_run = job.wandb_run
    job.manifest = {
        "run_dir": str(job.run_dir),
        "overrides": info.overrides,
        "group": job.group,
        "device": job.resolved.device,
        "model_source": job.source.describe(),
        "model_code": job.model_code,
        "wandb": None
        if wandb_run is None
        else {"id": wandb_run.id, "mode": tracking.resolve_mode(cfg.logger.mode), "project": cfg.logger.project},
        "data_fingerprint": job.data_report.get("fingerprint"),
        "resumed_from": None if job.checkpoint is None else str(job.checkpoint),
        "resolved": job.resolved.as_dict(),
        "compute": _compute(job),
        **job.params,
    }
    if job.main:
        rundir.write_json(job.files.manifest, rundir.manifest(job.manifest))
    tracking.declare_metrics(wandb_run, list(cfg.train.eval_benchmarks))


def setup_trainer(job: Job) -> None:
    """TRL's trainer with the resolved settings, its callbacks and rows; then the preflight audit."""
    from medft.runs import tracking
    from medft.training import checkpoints
    from medft.training import packing as packing_lib
    from medft.training import trainer as trainer_lib

    cfg, resolved, tokenized = job.cfg, job.resolved, job.tokenized
    backend = cfg.logger.backend
    report_to = ["wandb"] if job.wandb_run or (not job.main and backend != "none") else []
    args = trainer_lib.sft_config(cfg, job.run_dir, resolved, report_to, job.has_eval)
    callbacks = checkpoints.callbacks(job.run_dir)
    job.stopper = callbacks[-1]
    benchmarks = list(cfg.train.eval_benchmarks)
    if benchmarks and cfg.train.eval_benchmarks_every > 0:
        from medft.evals.runner import benchmark_callback

        callbacks.append(
            benchmark_callback(cfg, job.run_dir, benchmarks, cfg.train.eval_benchmarks_every, job.wandb_run)
        )
    rows = tokenized["train"].remove_columns(["id"])
    if resolved.packing:
        rows = packing_lib.pack_rows(rows, cfg.train.max_length)
    job.train_rows = rows
    packs_by_row = resolved.packing and not resolved.flatten_packs
    job.trainer = trainer_lib.build_trainer(
        job.model,
        job.tokenizer,
        args,
        rows,
        tokenized["validation"].remove_columns(["id"]) if job.has_eval else None,
        callbacks=callbacks,
        data_collator=packing_lib.RowPackedCollator(job.tokenizer.pad_token_id) if packs_by_row else None,
        fused_loss=resolved.fused_loss,
    )
    packed_rows = rows if resolved.packing else None
    steps.preflight(
        cfg,
        job.trainer,
        tokenized,
        job.datasets,
        job.tokenizer,
        job.spec,
        job.model,
        packed_rows,
        job.run_dir,
        job.wandb_run,
    )
    tracking.log_data(job.wandb_run, job.run_dir, job.label_report)


def train(job: Job) -> None:
    """Evaluate at step 0 (a resumed run reads it back), train, evaluate again."""
    from medft.training import checkpoints

    sft, checkpoint = job.trainer, job.checkpoint
    # Step-0 validation loss: the baseline every later number is read against. A resumed
    # run reads it back instead: its model is no longer at step 0.
    if checkpoint is not None:
        step0 = job.files.eval_step0
        job.initial_eval = rundir.read_json(step0) if step0.is_file() else None
        log.info("resume: continuing from %s", checkpoint)
    else:
        job.initial_eval = sft.evaluate() if job.has_eval else None
        if job.main:
            rundir.write_json(job.files.eval_step0, job.initial_eval)
    with checkpoints.checkpoint_on_sigterm(job.stopper):
        job.train_output = sft.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    if job.stopper.stopped_at is not None:
        raise job.stopper.preempted(checkpoints.latest_complete(job.files.checkpoints))
    job.final_eval = sft.evaluate() if job.has_eval else {}
    # train() starts a fresh trainer state, so the step-0 evaluation is added back here.
    initial = [{**job.initial_eval, "epoch": 0.0, "step": 0}] if job.initial_eval else []
    job.history = initial + list(sft.state.log_history)


def _metrics(job: Job) -> dict[str, Any]:
    import torch

    state, final, initial = job.trainer.state, job.final_eval, job.initial_eval
    return {
        "train_loss": steps.final_value(state.log_history, "loss"),
        "train_loss_first": next((h["loss"] for h in state.log_history if "loss" in h), None),
        "train_loss_mean": job.train_output.training_loss,
        "eval_loss_initial": None if initial is None else initial["eval_loss"],
        "eval_loss": final.get("eval_loss"),
        "eval_perplexity": math.exp(final["eval_loss"]) if "eval_loss" in final else None,
        "global_step": state.global_step,
        "epochs": state.epoch,
        "train_rows": len(job.tokenized["train"]),
        "validation_rows": len(job.tokenized["validation"]),
        "train_supervised_tokens": job.label_report["train"]["supervised_tokens"],
        "runtime_s": round(time.time() - job.started, 2),
        "train_runtime_s": job.train_output.metrics.get("train_runtime"),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if job.resolved.cuda else None,
        "peak_rss_gb": rundir.peak_rss_gb(),
        "resumed_from": job.manifest["resumed_from"],
        "artifact": str(job.artifact_dir.relative_to(job.run_dir)),
        **job.params,
    }


def finish(job: Job) -> dict[str, Any]:
    """Save the weights, score the benchmarks, write metrics, history and the loss plot (rank 0)."""
    from medft.runs import tracking

    cfg, wandb_run = job.cfg, job.wandb_run
    job.artifact_dir = steps.save_artifact(job.trainer, job.model, job.tokenizer, cfg, job.run_dir, job.weights_dtype)
    metrics = _metrics(job)
    if not job.main:
        return metrics
    if cfg.train.eval_benchmarks:
        from medft.evals.runner import run_benchmarks
        from medft.runs.loading import LoadedModel

        loaded = LoadedModel(cfg, job.tokenizer, job.model, job.run_dir, job.artifact_dir.name == "adapter")
        metrics["benchmarks"] = run_benchmarks(loaded, list(cfg.train.eval_benchmarks), job.files.eval_dir, wandb_run)
    rundir.write_json(job.files.metrics, metrics)
    rundir.write_json(job.files.history, job.history)
    rundir.plot_loss(job.history, job.files.loss_plot, f"{job.group} · {tracking.run_name(job.info.overrides)}")
    if wandb_run is not None:
        wandb_run.summary.update({f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    tracking.summarise_best(wandb_run, job.history, metrics)
    tracking.log_model(wandb_run, cfg, job.artifact_dir)
    return metrics


def run_training(cfg: DictConfig, info: JobInfo) -> dict[str, Any]:
    """Train one job and return its metrics (also written to metrics.json)."""
    from medft.runs import tracking

    job = setup_run(cfg, info)
    if job.previous.get("finished"):
        log.info("resume: %s already finished; its metrics are returned as they are", job.run_dir)
        return job.previous["metrics"]
    setup_data(job)
    setup_model(job)
    start_tracking(job)
    exit_code = 1
    try:
        setup_trainer(job)
        train(job)
        metrics = finish(job)
        exit_code = 0
        return metrics
    finally:
        tracking.finish_run(job.wandb_run, exit_code)
