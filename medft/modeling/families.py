"""Architecture facts read from the model actually loaded, never from names in YAML.

The same checkpoint reaches medft under different module names: EXAONE 3.5 loaded by
transformers' own implementation has Llama's (``model.layers.N.self_attn.o_proj``,
``mlp.gate_proj``), loaded by LG's hub code it has LG's (``transformer.h.N.attn.attention.
out_proj``, ``mlp.c_fc_0``). :func:`describe` answers, for the loaded object, where the
decoder blocks are, which leaf module plays each role (q, k, v, o, gate, up, down) and
whether lm_head shares the input embeddings, so LoRA targets, freeze, the preflight audit
and the memory planner work on either path with one preset.

This module must not import torch at module level: the memory planner uses the role
tables before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medft.runtime.errors import ConfigError

ATTENTION_ROLES = ("q", "k", "v", "o")
MLP_ROLES = ("gate", "up", "down")
ROLES = ATTENTION_ROLES + MLP_ROLES
# Leaf names each role goes by in the supported families: Llama (and SOLAR, native EXAONE),
# EXAONE 3.5 remote code (out_proj, c_fc_0/1, c_proj), Mixtral/Mistral-style w1/w2/w3.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "q": ("q_proj",),
    "k": ("k_proj",),
    "v": ("v_proj",),
    "o": ("o_proj", "out_proj"),
    "gate": ("gate_proj", "c_fc_0", "w1"),
    "up": ("up_proj", "c_fc_1", "w3"),
    "down": ("down_proj", "c_proj", "w2"),
}
NAME_TO_ROLE = {name: role for role, names in ROLE_NAMES.items() for name in names}
LINEAR_CLASSES = ("Linear", "Linear4bit", "Linear8bitLt")


def roles_for_target(target: str) -> tuple[str, ...]:
    """``method.lora.target`` (all | attention | mlp) as block roles."""
    return {"all": ROLES, "attention": ATTENTION_ROLES, "mlp": MLP_ROLES}[target]


@dataclass(frozen=True)
class Family:
    """What medft needs to know about one loaded decoder-only model."""

    blocks_path: str  # e.g. "model.layers" or "transformer.h"
    num_blocks: int
    role_names: dict[str, str]  # role -> leaf module name in this model
    other_linears: tuple[str, ...]  # block linears with no known role
    tied_lm_head: bool
    model_class: str
    native: bool  # transformers' own implementation (not code shipped with the checkpoint)

    def names_for(self, roles: tuple[str, ...]) -> list[str]:
        return [self.role_names[r] for r in roles if r in self.role_names]

    def role_of(self, leaf_name: str) -> str | None:
        return next((role for role, name in self.role_names.items() if name == leaf_name), None)

    def describe_code(self) -> str:
        where = "transformers' native implementation" if self.native else "the checkpoint's remote code"
        return f"{self.model_class} ({where})"


def _unwrap(model):
    """The transformers model under PEFT's wrappers, so names are the model's own."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _layer_count(config) -> int | None:
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def decoder_blocks(model) -> tuple[str, Any]:
    """The model's own list of decoder blocks (``model.layers``, ``transformer.h``, ...).

    Found structurally: the ModuleList whose length equals the config's layer count (the
    largest one, should several match), so any Llama-family layout is found by the same code.
    """
    import torch.nn as nn

    model = _unwrap(model)
    expected = _layer_count(getattr(model, "config", None))
    candidates = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (expected is None or len(module) == expected):
            candidates.append((sum(p.numel() for p in module.parameters()), name, module))
    if not candidates:
        raise ConfigError(
            f"cannot find the decoder blocks of {type(model).__name__} (no list of {expected} blocks); "
            "use method=lora with method.lora.target_modules=[...]"
        )
    _, name, blocks = max(candidates, key=lambda c: c[0])
    return name, blocks


def block_linears(block) -> list[str]:
    """Leaf names of the linear layers inside one decoder block, in module order."""
    names = []
    for name, module in block.named_modules():
        if type(module).__name__ in LINEAR_CLASSES and name:
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in names and leaf not in ("base_layer", "lora_A", "lora_B", "default"):
                names.append(leaf)
    return names


def _is_tied(model) -> bool:
    head, inputs = model.get_output_embeddings(), model.get_input_embeddings()
    return head is not None and inputs is not None and head.weight is inputs.weight


def describe(model) -> Family:
    """The family facts of ``model`` (a transformers model, possibly PEFT-wrapped)."""
    base = _unwrap(model)
    path, blocks = decoder_blocks(base)
    linears = block_linears(blocks[0])
    role_names = {NAME_TO_ROLE[n]: n for n in linears if n in NAME_TO_ROLE}
    return Family(
        blocks_path=path,
        num_blocks=len(blocks),
        role_names=role_names,
        other_linears=tuple(n for n in linears if n not in NAME_TO_ROLE),
        tied_lm_head=_is_tied(base),
        model_class=type(base).__name__,
        native=type(base).__module__.startswith("transformers."),
    )


def lora_target_names(model, target: str, explicit: list[str] | None, model_name: str) -> list[str]:
    """Leaf names PEFT should wrap: explicit ``target_modules`` win; otherwise the roles of
    ``target`` resolved on this model. A role or name that matches nothing fails in one line
    naming the model's real layers (PEFT would silently train part of what was asked)."""
    family = describe(model)
    available = {*family.role_names.values(), *family.other_linears}
    if explicit:
        missing = [n for n in explicit if n not in available]
        names = list(explicit)
    else:
        wanted = roles_for_target(target)
        names = family.names_for(wanted)
        missing = [r for r in wanted if r not in family.role_names]
    if missing:
        raise ConfigError(
            f"method.lora {'targets' if explicit else 'roles'} {', '.join(missing)} match no linear layer of "
            f"model={model_name} ({family.model_class}); its block's linear layers are: "
            f"{', '.join(sorted(available))}; "
            "name them with method.lora.target_modules=[...]"
        )
    return names
