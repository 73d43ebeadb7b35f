"""Apply a training method to a loaded model: LoRA, QLoRA, freeze (top-k blocks), full.

Each method is one :class:`MethodDescriptor` in :data:`METHODS`: whether it trains an adapter,
whether its base loads quantized, which folder of the run directory its weights go to, how it
makes a loaded model trainable and which settings it needs. Code that differs by method asks
``descriptor(name)`` rather than comparing method names. Methods never read files; they only
decide which parameters train.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medft.config import LoraTarget, MethodName
from medft.modeling import families
from medft.runtime.errors import ConfigError

log = logging.getLogger(__name__)

ADAPTER_FOLDER = "adapter"
MODEL_FOLDER = "model"


def _enum(value, kind):
    return kind(value)


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
    if descriptor(method_cfg.name).quantized:
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


def _apply_freeze(model, model_cfg, method_cfg, gradient_checkpointing: bool = False):
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


def _apply_full(model, model_cfg, method_cfg, gradient_checkpointing: bool = False):
    for param in model.parameters():
        param.requires_grad_(True)
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
    model = descriptor(method_cfg.name).apply(model, model_cfg, method_cfg, gradient_checkpointing)
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


# --------------------------------------------------------------------------- settings each method needs
def _problems(method_cfg, model_cfg=None, layers: int | None = None) -> list[str]:
    """The method's config rules (medft.config.rules, the one place they are written) and, when the
    model's decoder block count is known, whether freeze's top blocks exist."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from medft.config import MethodConfig, rules

    method = OmegaConf.merge(OmegaConf.structured(MethodConfig), method_cfg)
    cfg = SimpleNamespace(method=method, model=model_cfg if model_cfg is not None else SimpleNamespace(tiny=None))
    found = [*rules.method_sections(cfg), *rules.qlora_runs_here(cfg), *rules.trainable_layers(cfg)]
    k = method.trainable_layers
    if MethodName(method.name) is MethodName.freeze and layers is not None and k is not None and k > layers:
        name = model_cfg.name if model_cfg is not None else "?"
        found.append(f"method.trainable_layers={k} but model={name} has {layers} decoder blocks; choose 1..{layers}")
    return found


# --------------------------------------------------------------------------- descriptors
@dataclass(frozen=True)
class MethodDescriptor:
    """What one training method is, for every part of medft that differs by method.

    ``apply(model, model_cfg, method_cfg, gradient_checkpointing)`` sets which parameters
    train and returns the model (PEFT wraps it for adapters). ``problems(method_cfg,
    model_cfg=None, layers=None)`` lists every way the method's settings do not fit, each
    naming the key and the fix; ``layers`` is the model's decoder block count, when known.
    ``validate`` raises them as one ConfigError.
    """

    name: MethodName
    adapter: bool  # trains LoRA adapters on a frozen base; False: the base weights train
    quantized: bool  # the base loads in 4-bit NF4
    artifact: str  # the run directory folder its weights are saved in
    apply: Callable[..., Any]

    @property
    def trains_base_weights(self) -> bool:
        return not self.adapter

    def problems(self, method_cfg, model_cfg=None, layers: int | None = None) -> list[str]:
        return _problems(method_cfg, model_cfg, layers)

    def validate(self, method_cfg, model_cfg=None, layers: int | None = None) -> None:
        found = self.problems(method_cfg, model_cfg, layers)
        if found:
            from medft.config import ConfigViolations

            raise ConfigViolations(found)


LORA = MethodDescriptor(MethodName.lora, True, False, ADAPTER_FOLDER, _apply_lora)
QLORA = MethodDescriptor(MethodName.qlora, True, True, ADAPTER_FOLDER, _apply_lora)
FREEZE = MethodDescriptor(MethodName.freeze, False, False, MODEL_FOLDER, _apply_freeze)
FULL = MethodDescriptor(MethodName.full, False, False, MODEL_FOLDER, _apply_full)

METHODS: dict[MethodName, MethodDescriptor] = {d.name: d for d in (LORA, QLORA, FREEZE, FULL)}


def descriptor(name: Any) -> MethodDescriptor:
    """The descriptor of a method given as a MethodName, its string or a config's ``method.name``."""
    try:
        return METHODS[_enum(name, MethodName)]
    except ValueError:
        choices = ", ".join(m.value for m in MethodName)
        raise ConfigError(f"method={getattr(name, 'value', name)} is not a method; choose one of {choices}") from None


def artifact_folders() -> tuple[str, ...]:
    """The folder names a run may save weights in, adapters first."""
    ordered = sorted(METHODS.values(), key=lambda d: not d.adapter)
    return tuple(dict.fromkeys(d.artifact for d in ordered))
