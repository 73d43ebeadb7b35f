"""Apply a training method to a loaded model: LoRA, QLoRA, freeze (top-k blocks), full.

Methods never read files; they only decide which parameters train.
"""

from __future__ import annotations

import logging
from typing import Any

from medft.config import LoraTarget, MethodName
from medft.modeling import families
from medft.runtime.errors import ConfigError

log = logging.getLogger(__name__)


def _enum(value, kind):
    return kind(getattr(value, "value", value))


def find_decoder_layers(model) -> tuple[str, Any]:
    """The model's own list of decoder blocks (see medft.modeling.families)."""
    return families.decoder_blocks(model)


def resolve_lora_targets(model, model_cfg, lora_cfg) -> list[str]:
    """Leaf names for PEFT, resolved on the loaded model: explicit ``target_modules`` win."""
    target = _enum(lora_cfg.target, LoraTarget).value
    explicit = list(lora_cfg.target_modules) if lora_cfg.target_modules else None
    return families.lora_target_names(model, target, explicit, model_cfg.name)


def _apply_lora(model, model_cfg, method_cfg, gradient_checkpointing: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lora = method_cfg.lora
    targets = resolve_lora_targets(model, model_cfg, lora)
    if _enum(method_cfg.name, MethodName) is MethodName.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _apply_freeze(model, model_cfg, method_cfg):
    k = method_cfg.trainable_layers
    prefix, layers = find_decoder_layers(model)
    if k > len(layers):
        raise ConfigError(
            f"method.trainable_layers={k} but model={model_cfg.name} has {len(layers)} decoder blocks "
            f"({prefix}.0-{len(layers) - 1}); choose 1..{len(layers)}"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    for block in list(layers)[len(layers) - k :]:
        for param in block.parameters():
            param.requires_grad_(True)
    if method_cfg.train_lm_head:
        head = model.get_output_embeddings()
        head.weight.requires_grad_(True)
        if families.describe(model).tied_lm_head:
            log.warning(
                "model=%s ties lm_head to the input embeddings: training lm_head trains the embeddings too",
                model_cfg.name,
            )
    log.info("freeze: training %s.%d-%d of %d blocks", prefix, len(layers) - k, len(layers) - 1, len(layers))
    return model


def keep_float32_masters(model) -> int:
    """Hold every trainable parameter in float32, whatever dtype the frozen weights have.

    AdamW writing into bfloat16 weights rounds away most updates at fine-tuning learning
    rates (an update below 2^-8 of the weight is lost), so base weights that train (freeze,
    full) and adapters keep float32 copies; the forward runs under bf16/fp16 autocast
    (medft.training.trainer.mixed_precision). TRL casts QLoRA adapters to bfloat16 when it builds the
    trainer, so this runs again after that. Returns the number of parameters upcast.
    """
    import torch

    upcast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            upcast += param.numel()
    return upcast


def align_input_dtypes(model) -> int:
    """Without autocast, let float32 trainable blocks and 16-bit frozen ones meet: each decoder
    block and the LM head casts its floating-point inputs to its own weights' dtype, so the
    trainable part computes in float32 and sees every update of its master weights (under bf16
    autocast an update below bf16 resolution stays invisible to the forward until it adds up).
    Used where no autocast runs (CPU, or train.bf16=false). Returns the number of hooks."""
    import torch

    def cast_to(dtype):
        def cast(value):
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
                return value.to(dtype)
            if isinstance(value, tuple):
                return tuple(cast(v) for v in value)
            return value

        def hook(module, args, kwargs):
            return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

        return hook

    modules = [*families.decoder_blocks(model)[1], model.get_output_embeddings()]
    dtypes = {next(m.parameters()).dtype for m in modules}
    if len(dtypes) < 2:
        return 0
    for module in modules:
        module.register_forward_pre_hook(cast_to(next(module.parameters()).dtype), with_kwargs=True)
    return len(modules)


def apply_method(model, model_cfg, method_cfg, gradient_checkpointing: bool = False):
    """Return the model ready to train under the method; only intended parameters require grad,
    and those are float32."""
    name = _enum(method_cfg.name, MethodName)
    if name in (MethodName.lora, MethodName.qlora):
        model = _apply_lora(model, model_cfg, method_cfg, gradient_checkpointing)
    elif name is MethodName.freeze:
        model = _apply_freeze(model, model_cfg, method_cfg)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    keep_float32_masters(model)
    return model


def trainable_summary(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "trainable_params": int(trainable),
        "total_params": int(total),
        "trainable_percent": round(100.0 * trainable / max(total, 1), 4),
    }
