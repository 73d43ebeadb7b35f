"""Apply a training method to a loaded model: LoRA, QLoRA, freeze (top-k blocks), full.

Methods never read files; they only decide which parameters train.
"""

from __future__ import annotations

import logging
from typing import Any

from medft.config import LoraTarget, MethodName
from medft.errors import ConfigError

log = logging.getLogger(__name__)


def _enum(value, kind):
    return kind(getattr(value, "value", value))


def find_decoder_layers(model) -> tuple[str, Any]:
    """The model's own list of decoder blocks (``model.layers``, ``transformer.h``, ...).

    Found structurally, never by hard-coded names: the ModuleList whose length equals
    the config's layer count (the largest one, should several match).
    """
    import torch.nn as nn

    config = getattr(model, "config", None)
    expected = None
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            expected = value
            break
    candidates = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (expected is None or len(module) == expected):
            size = sum(p.numel() for p in module.parameters())
            candidates.append((size, name, module))
    if not candidates:
        raise ConfigError(
            f"method=freeze cannot find the decoder blocks of {type(model).__name__}; use method=lora or method=full"
        )
    _, name, layers = max(candidates, key=lambda c: c[0])
    return name, layers


def resolve_lora_targets(model_cfg, lora_cfg) -> list[str]:
    if lora_cfg.target_modules:
        return list(lora_cfg.target_modules)
    target = _enum(lora_cfg.target, LoraTarget)
    names = model_cfg.lora_targets
    if target is LoraTarget.attention:
        return list(names.attention)
    if target is LoraTarget.mlp:
        return list(names.mlp)
    return list(names.attention) + list(names.mlp)


def _check_targets_matched(model, targets: list[str], model_name: str) -> None:
    """PEFT accepts a target list where some names match nothing; an EXAONE model given
    Llama names would silently train only part of what the user asked for."""
    import torch.nn as nn

    leaf_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    leaf_names |= {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if type(m).__name__ == "Linear4bit"}
    missing = [t for t in targets if t not in leaf_names]
    if missing:
        available = ", ".join(sorted(leaf_names - {"lm_head"}))
        raise ConfigError(
            f"method.lora targets {', '.join(missing)} match no linear layer of model={model_name}; "
            f"its linear layers are: {available}"
        )


def _apply_lora(model, model_cfg, method_cfg, gradient_checkpointing: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lora = method_cfg.lora
    targets = resolve_lora_targets(model_cfg, lora)
    _check_targets_matched(model, targets, model_cfg.name)
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
        inputs = model.get_input_embeddings()
        if inputs is not None and inputs.weight is head.weight:
            log.warning(
                "model=%s ties lm_head to the input embeddings: training lm_head trains the embeddings too",
                model_cfg.name,
            )
    log.info("freeze: training %s.%d-%d of %d blocks", prefix, len(layers) - k, len(layers) - 1, len(layers))
    return model


def apply_method(model, model_cfg, method_cfg, gradient_checkpointing: bool = False):
    """Return the model ready to train under the method; only intended parameters require grad."""
    name = _enum(method_cfg.name, MethodName)
    if name in (MethodName.lora, MethodName.qlora):
        return _apply_lora(model, model_cfg, method_cfg, gradient_checkpointing)
    if name is MethodName.freeze:
        return _apply_freeze(model, model_cfg, method_cfg)
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def trainable_summary(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "trainable_params": int(trainable),
        "total_params": int(total),
        "trainable_percent": round(100.0 * trainable / max(total, 1), 4),
    }
