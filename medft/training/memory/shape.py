"""The model and method the memory planner sizes: a decoder's dimensions from its config alone
(never its weights), and the method's settings that change the bytes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medft.modeling import families
from medft.runtime.errors import ConfigError

# Block roles and the module names they go by, from the one table in medft.modeling.families.
ROLES = families.ROLES
_NAME_TO_ROLE = families.NAME_TO_ROLE


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-style decoder that memory depends on."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool = False
    model_type: str = "llama"

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a transformers config object or its dict (``config.json``).

        Handles Llama's names and EXAONE's (``num_layers``, no ``head_dim`` in old copies).
        """
        get = config.get if isinstance(config, Mapping) else (lambda key, default=None: getattr(config, key, default))

        def first(*keys, default=None):
            for key in keys:
                value = get(key, None)
                if value is not None:
                    return value
            return default

        hidden = first("hidden_size", "n_embd", "d_model")
        layers = first("num_hidden_layers", "num_layers", "n_layer")
        heads = first("num_attention_heads", "n_head")
        vocab = first("vocab_size")
        if None in (hidden, layers, heads, vocab):
            raise ConfigError(
                "the model's config.json lacks hidden_size, num_hidden_layers/num_layers, num_attention_heads or "
                "vocab_size; the memory planner only knows Llama-style decoders"
            )
        intermediate = first("intermediate_size", "n_inner", default=4 * hidden)
        kv_heads = first("num_key_value_heads", default=heads)
        head_dim = first("head_dim", default=hidden // heads)
        tied = bool(first("tie_word_embeddings", default=False))
        model_type = str(first("model_type", default=""))
        return cls(
            int(hidden),
            int(layers),
            int(intermediate),
            int(vocab),
            int(heads),
            int(kv_heads),
            int(head_dim),
            tied,
            model_type,
        )

    # ---- derived sizes
    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer of one decoder block, by role."""
        h, i = self.hidden, self.intermediate
        return {
            "q": (h, self.q_dim),
            "k": (h, self.kv_dim),
            "v": (h, self.kv_dim),
            "o": (self.q_dim, h),
            "gate": (h, i),
            "up": (h, i),
            "down": (i, h),
        }

    @property
    def block_linear_params(self) -> int:
        return sum(a * b for a, b in self.linear_shapes().values())

    @property
    def block_params(self) -> int:
        return self.block_linear_params + 2 * self.hidden  # two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def params(self) -> int:
        return self.embedding_params + self.head_params + self.layers * self.block_params + self.hidden


def shape_from_source(model_cfg, source=None) -> ModelShape:
    """The shape of ``cfg.model`` from its config alone, never its weights.

    ``model=tiny`` (and other ``tiny:`` models) come from the ``tiny:`` block and the size of
    the offline tokenizer; everything else from ``config.json`` through ``AutoConfig``.
    """
    tiny = getattr(model_cfg, "tiny", None)
    if tiny is not None and getattr(model_cfg, "path", None) is None and source is None:
        from medft.modeling.tiny import build_tokenizer

        arch = dict(tiny) if isinstance(tiny, Mapping) else vars(tiny)  # DictConfig or TinyArchitecture
        heads = int(arch["num_attention_heads"])
        return ModelShape(
            hidden=int(arch["hidden_size"]),
            layers=int(arch["num_hidden_layers"]),
            intermediate=int(arch["intermediate_size"]),
            vocab=len(build_tokenizer()),
            heads=heads,
            kv_heads=int(arch.get("num_key_value_heads") or heads),
            head_dim=int(arch["hidden_size"]) // heads,
            tied_embeddings=bool(arch.get("tie_word_embeddings", False)),
            model_type="llama",
        )
    from medft.modeling.models import load_config

    return ModelShape.from_config(load_config(model_cfg, source))


def setting(obj, key, default=None):
    """``obj.key`` of a DictConfig, dataclass or dict; ``default`` when absent or None."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    try:
        value = getattr(obj, key)
    except AttributeError:
        return default
    return default if value is None else value


def lora_roles(targets: Iterable[str] | None) -> tuple[str, ...]:
    """Block roles (q, k, v, o, gate, up, down) of LoRA target module names or roles."""
    if targets is None:
        return ROLES
    roles = []
    for name in targets:
        role = name if name in ROLES else _NAME_TO_ROLE.get(name)
        if role is None:
            raise ConfigError(
                f"the memory planner does not know the layer {name!r}; known: {', '.join(sorted(_NAME_TO_ROLE))}"
            )
        if role not in roles:
            roles.append(role)
    return tuple(r for r in ROLES if r in roles)


@dataclass(frozen=True)
class PlannedMethod:
    """The settings of ``cfg.method`` that change the bytes."""

    name: str
    r: int = 16
    dropout: float = 0.0
    dora: bool = False
    double_quant: bool = True
    trainable_layers: int = 0
    train_lm_head: bool = True

    @classmethod
    def of(cls, method_cfg) -> PlannedMethod:
        name = str(setting(method_cfg, "name"))
        lora = setting(method_cfg, "lora")
        quant = setting(method_cfg, "quantization")
        return cls(
            name=name,
            r=int(setting(lora, "r", 16)),
            dropout=float(setting(lora, "dropout", 0.0)),
            dora=bool(setting(lora, "use_dora", False)),
            double_quant=bool(setting(quant, "double_quant", True)),
            trainable_layers=int(setting(method_cfg, "trainable_layers", 0) or 0),
            train_lm_head=bool(setting(method_cfg, "train_lm_head", True)),
        )

    @property
    def is_lora(self) -> bool:
        return self.name in ("lora", "qlora")
