"""The planner as a run uses it: the estimate under a composed config and its resolved settings,
the refusal of a run that cannot fit, and the gradient checkpointing decision."""

from __future__ import annotations

import logging
from typing import Any

from medft.config.resolve import Resolved, resolve
from medft.modeling import families
from medft.runtime.devices import pictured_facts
from medft.runtime.errors import ConfigError
from medft.training.memory.estimate import GIB, Estimate, estimate
from medft.training.memory.shape import ModelShape, lora_roles, shape_from_source
from medft.training.memory.suggest import suggest

log = logging.getLogger("medft")

# Architectures whose RMSNorm/SwiGLU liger-kernel patches (TRL's use_liger_kernel, by model_type);
# EXAONE 3.5 (model_type exaone, natively a Llama class) is not among them, so its run keeps
# transformers' kernels.
LIGER_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "granite", "olmo2"}
)

# Below this share of the free memory a run trains without gradient checkpointing; the rest
# is margin for fragmentation.
FIT_MARGIN = 0.9


def _lora_roles_of(lora) -> tuple[str, ...]:
    """The block roles a LoRA config adapts, before any model is loaded: explicit module
    names through the family tables, else the target's roles."""
    if lora.target_modules:
        return lora_roles(list(lora.target_modules))
    return families.roles_for_target(str(lora.target))


def _sharding(cfg) -> tuple[int, bool]:
    """(ranks gradients and optimizer state are split over, whether the weights are split too)."""
    launcher = cfg.get("launcher") if hasattr(cfg, "get") else None
    if launcher is None:
        return 1, False
    strategy = str(launcher.strategy)
    if strategy == "ddp":
        return 1, False
    return int(launcher.nproc_per_node) * int(launcher.nnodes), strategy in ("fsdp", "deepspeed_zero3")


def estimate_for_config(
    cfg, shape: ModelShape, device: str = "cuda", resolved: Resolved | None = None, **overrides
) -> Estimate:
    """``estimate`` with the settings a composed config trains with: the run's ``resolved`` ones,
    else those ``cfg`` resolves to on a pictured ``device`` (see medft.runtime.devices.pictured_facts)."""
    if resolved is None:
        resolved = resolve(cfg, pictured_facts(device))
    t = cfg.train
    method = cfg.method
    name = str(method.name)
    targets = _lora_roles_of(method.lora) if name in ("lora", "qlora") and method.lora else None
    shards, shard_weights = _sharding(cfg)
    kwargs = {
        "method_cfg": method,
        "batch_size": int(t.per_device_batch_size),
        "seq_len": int(t.max_length),
        "gradient_checkpointing": resolved.gradient_checkpointing,
        "weight_dtype_bytes": resolved.weight_bytes,
        "compute_dtype_bytes": resolved.compute_bytes,
        "lora_targets": targets,
        "device": resolved.device,
        "attention": resolved.attention,
        "liger": resolved.liger and shape.model_type in LIGER_MODEL_TYPES,
        "shards": shards,
        "shard_weights": shard_weights,
        "loss": "chunked" if resolved.fused_loss else "full",
    }
    kwargs.update(overrides)
    return estimate(shape, **kwargs)


def check_fits(cfg, source, device_free_bytes: int, resolved: Resolved | None = None) -> Estimate:
    """Refuse, in one line with overrides that fit, a run whose estimate exceeds free GPU memory.

    Called on CUDA before the model is loaded; reads only the model's config. ``resolved``: the
    run's settings (default: as ``cfg`` resolves on a pictured GPU).
    """
    shape = shape_from_source(cfg.model, source)
    est = estimate_for_config(cfg, shape, resolved=resolved)
    if est.total <= device_free_bytes:
        return est
    t = cfg.train
    s = est.settings
    at = f"train.per_device_batch_size={t.per_device_batch_size} train.max_length={t.max_length}"
    if not s["gradient_checkpointing"]:
        at += " train.gradient_checkpointing=false"
    options = suggest(
        shape,
        method_cfg=cfg.method,
        batch_size=s["batch_size"],
        seq_len=s["seq_len"],
        gradient_checkpointing=s["gradient_checkpointing"],
        available_bytes=device_free_bytes,
        gradient_accumulation_steps=int(t.gradient_accumulation_steps),
        weight_dtype_bytes=s["weight_dtype_bytes"],
        compute_dtype_bytes=s["compute_dtype_bytes"],
        lora_targets=s["lora_roles"] or None,
        device=s["device"],
        attention=s["attention"],
        liger=s["liger"],
        shards=s["shards"],
        shard_weights=s["shard_weights"],
    )
    parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in est.breakdown().items())
    line = (
        f"model={cfg.model.name} method={s['method']} needs ~{est.total / GIB:.1f} GiB at {at} ({parts}), "
        f"the GPU has {device_free_bytes / GIB:.1f} GiB free; "
    )
    if options:
        line += "try: " + " or ".join(o.describe() for o in options)
    else:
        line += "no smaller setting fits: use a GPU with more memory or a smaller model"
    raise ConfigError(line)


def plan_memory(cfg, source, resolved: Resolved, free_bytes: int | None = None) -> dict[str, Any]:
    """On CUDA, before any weights load: refuse a run that cannot fit (one line, with settings
    that do) and find whether activations need checkpointing (``checkpointing_needed``, None
    where the config decides it), which ``Resolved.with_memory_plan`` takes up. Empty off CUDA."""
    if not cfg.train.memory_check or not resolved.cuda:
        return {}
    if free_bytes is None:
        import torch

        free_bytes = torch.cuda.mem_get_info()[0]
    shape = shape_from_source(cfg.model, source)
    needed = None
    if "gradient_checkpointing" in resolved.auto:
        without = estimate_for_config(cfg, shape, resolved=resolved, gradient_checkpointing=False)
        needed = without.total > FIT_MARGIN * free_bytes
    estimate = check_fits(cfg, source, free_bytes, resolved=resolved.with_memory_plan(needed))
    log.info("memory plan: %s of %.1f GiB free", estimate.describe(), free_bytes / 2**30)
    return {
        "estimate_gib": round(estimate.total / 2**30, 2),
        "free_gib": round(free_bytes / 2**30, 2),
        "checkpointing_needed": needed,
        "breakdown_gib": {k: round(v / 2**30, 2) for k, v in estimate.breakdown().items()},
    }
