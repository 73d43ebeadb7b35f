"""GPU memory planner: estimate a training step's peak memory from the model's shape alone.

``check_fits`` runs before any weights are loaded: it reads the model's ``config.json``
(the same light read as :func:`medft.modeling.models.num_decoder_layers`), estimates the peak of
one training step under the composed config, and refuses with one line naming overrides
that fit when the estimate exceeds the free GPU memory. ``estimate`` and ``suggest`` are
the parts underneath, usable on their own (``benchmarks/memory.py`` compares them with
measured peaks).

What is counted, in bytes (``Estimate``):

- ``weights``: every parameter at its storage width. QLoRA: the decoder blocks' linear
  layers in 4-bit NF4 plus their quantization constants; embeddings, lm_head and norms in
  float32, because PEFT's ``prepare_model_for_kbit_training`` upcasts every parameter that
  is not 4-bit. LoRA adapters are float32 (PEFT keeps them so under a 16-bit base).
- ``gradients`` and ``optimizer``: one gradient and two AdamW moments per trainable
  parameter, in float32: trainable base weights keep float32 masters whatever the frozen
  ones load in (torch's AdamW keeps its state like the params).
- ``activations``: the tensors autograd saves for backward (derivation below), at the end
  of the forward pass; with gradient checkpointing, the checkpointed block inputs, and
  (``recompute``) one block's activations rebuilt at a time during backward.
- ``logits``: the loss head's transient peak. medft trains through TRL's ``SFTTrainer``,
  which patches a chunked LM head (``trl.kernels.ChunkedLogProbFunction``): the
  ``tokens x vocab`` logits are never materialized, only tiles of at most
  4096 x 32768 plus float32 gradient accumulators for the hidden states (and for lm_head
  when it trains). ``loss="full"`` models medft's plain loss instead (``train.fused_loss=false``,
  ``medft.training.supervised_head``): logits, a float32 upcast, log-softmax and their gradients,
  12 bytes per token x vocab at the peak. It projects only the supervised positions, so the
  plan counts every position as supervised: the most a batch of that shape can take.
- ``optimizer_step``: scratch of ``optimizer.step()`` (foreach AdamW on CUDA allocates one
  copy of the second moments), live when the activations are gone.
- ``overhead``: CUDA context and allocator slack, kept apart so that
  ``peak_allocated`` compares with ``torch.cuda.max_memory_allocated`` (which excludes it).

The peak counts what is live at once (``Estimate.peak_allocated``): backward starts with all
saved activations and the loss head's buffers; a checkpointed block is recomputed only after
the loss head has freed its buffers; full and freeze gradients grow while the activations
of their blocks are freed, and meet the optimizer step's scratch at the end:
``weights + optimizer + max(activations + max(logits, recompute) [+ LoRA gradients],
gradients + max(optimizer_step, recompute))``.

This module is imported before training starts; it must not import torch at module level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from medft.modeling import families
from medft.runtime.errors import ConfigError

GIB = 1 << 30

# CUDA context (cuBLAS/cuDNN handles, kernels) and the caching allocator's reserved-but-unused
# slack: not seen by torch.cuda.max_memory_allocated, seen by nvidia-smi and by the OOM.
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
ALLOCATOR_SLACK = 0.05

# trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE rows x _CHUNKED_LOGPROB_CHUNK_SIZE vocab columns per tile.
TRL_TOKEN_CHUNK = 4096
TRL_VOCAB_CHUNK = 32768
# Without Triton (CPU) TRL folds a tile with torch ops: float32 temporaries of the tile's
# size; in backward y, z, log p, p, the gradient, the one-hot target mask and two products
# are live at once (7 float32 tiles and a bool one).
CPU_TILE_TEMPORARIES = 7.25

# bitsandbytes NF4: 4 bits per weight, one absmax per block of 64. With double quantization
# the absmax values are themselves 8-bit with one float32 absmax (and offset) per 256 blocks.
NF4_BLOCK = 64
NF4_DOUBLE_QUANT_BLOCK = 256

# Architectures whose RMSNorm/SwiGLU liger-kernel patches (TRL's use_liger_kernel, by model_type);
# EXAONE 3.5 (model_type exaone, natively a Llama class) is not among them, so its run keeps
# transformers' kernels.
LIGER_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "granite", "olmo2"}
)
ATTENTIONS = ("sdpa", "flash_attention_2", "eager")

# Block roles and the module names they go by, from the one table in medft.modeling.families.
ROLES = families.ROLES
_NAME_TO_ROLE = families.NAME_TO_ROLE


# --------------------------------------------------------------------------- shape
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


# --------------------------------------------------------------------------- method
def _v(value):
    return getattr(value, "value", value)


def _get(obj, key, default=None):
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
class _Method:
    name: str
    r: int = 16
    dropout: float = 0.0
    dora: bool = False
    double_quant: bool = True
    trainable_layers: int = 0
    train_lm_head: bool = True

    @classmethod
    def of(cls, method_cfg) -> _Method:
        name = str(_v(_get(method_cfg, "name")))
        lora = _get(method_cfg, "lora")
        quant = _get(method_cfg, "quantization")
        return cls(
            name=name,
            r=int(_get(lora, "r", 16)),
            dropout=float(_get(lora, "dropout", 0.0)),
            dora=bool(_get(lora, "use_dora", False)),
            double_quant=bool(_get(quant, "double_quant", True)),
            trainable_layers=int(_get(method_cfg, "trainable_layers", 0) or 0),
            train_lm_head=bool(_get(method_cfg, "train_lm_head", True)),
        )

    @property
    def is_lora(self) -> bool:
        return self.name in ("lora", "qlora")


# --------------------------------------------------------------------------- estimate
@dataclass(frozen=True)
class Estimate:
    """Bytes of one training step, by component, and the peak of what is live at once."""

    weights: int
    gradients: int
    optimizer: int
    activations: int  # saved for backward and live at its start (checkpointing: block inputs)
    recompute: int  # checkpointing: one block's activations, recomputed during backward
    logits: int  # the loss head's transient at the start of backward
    optimizer_step: int  # optimizer.step() scratch
    overhead: int
    trainable_params: int
    # Gradients live together with all activations: LoRA's (few, and created early); full and
    # freeze gradients grow as the activations of the blocks they belong to are freed.
    gradients_early: bool = True
    settings: dict = field(default_factory=dict, compare=False)

    def _phases(self) -> tuple[int, int]:
        early = self.gradients if self.gradients_early else 0
        start_of_backward = self.activations + max(self.logits, self.recompute) + early
        late = self.gradients + max(self.optimizer_step, self.recompute)
        return start_of_backward, late

    @property
    def peak_allocated(self) -> int:
        """What ``torch.cuda.max_memory_allocated`` would report (no context, no slack).

        Backward starts with every saved activation and the loss head's buffers live; the
        recomputed block (checkpointing) comes after the loss head has freed its buffers;
        the optimizer step runs when activations are gone and all gradients exist.
        """
        return self.weights + self.optimizer + max(self._phases())

    @property
    def total(self) -> int:
        return self.peak_allocated + self.overhead

    def breakdown(self) -> dict[str, int]:
        """The components in bytes (not all live at once: see ``peak_allocated``); the
        optimizer step's scratch is listed when it, not backward, sets the peak."""
        parts = {
            "weights": self.weights,
            "grads": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations + self.recompute,
            "logits": self.logits,
        }
        start_of_backward, late = self._phases()
        if late > start_of_backward:
            parts["optimizer step"] = self.optimizer_step
        parts["overhead"] = self.overhead
        return parts

    def describe(self) -> str:
        """One line: the peak and its components in GiB."""
        parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in self.breakdown().items())
        return f"~{self.total / GIB:.1f} GiB ({parts})"


def _weight_bytes(shape: ModelShape, m: _Method, roles: Sequence[str], weight_bytes: int) -> tuple[int, int, int]:
    """(weights, trainable params, trainable bytes)."""
    L = shape.layers
    linears = shape.linear_shapes()
    norms = (2 * L + 1) * shape.hidden
    embed_head = shape.embedding_params + shape.head_params
    if m.name == "qlora":
        per_param = 0.5 + (1 / NF4_BLOCK if m.double_quant else 4 / NF4_BLOCK)
        if m.double_quant:
            per_param += 8 / (NF4_BLOCK * NF4_DOUBLE_QUANT_BLOCK)  # float32 absmax + offset per 256 blocks
        base = math.ceil(L * shape.block_linear_params * per_param) + 4 * (norms + embed_head)
    else:
        base = weight_bytes * shape.params
    if m.is_lora:
        adapters = L * sum(m.r * (linears[role][0] + linears[role][1]) for role in roles)
        if m.dora:
            adapters += L * sum(linears[role][1] for role in roles)
        return base + 4 * adapters, adapters, 4 * adapters
    trainable = shape.params
    if m.name == "freeze":
        trainable = min(m.trainable_layers, L) * shape.block_params
        if m.train_lm_head:
            trainable += shape.head_params or shape.embedding_params
    # Trainable base weights are held in float32 whatever the frozen ones load in
    # (medft.modeling.methods.keep_float32_masters); their gradients and moments are float32 too.
    return base + max(0, 4 - weight_bytes) * trainable, trainable, 4 * trainable


# Activations: tensors autograd saves for backward, per token, in a Llama-style block
# (RMSNorm -> q/k/v -> RoPE -> SDPA -> o -> residual -> RMSNorm -> SwiGLU -> residual).
#
# Torch saves a tensor only when a gradient that needs it will be computed: a frozen linear
# layer keeps its weight (a parameter, not counted) but not its input; a trainable one keeps
# its input. Storages shared by several ops are counted once. Widths: h hidden, qd = heads x
# head_dim, kvd = kv_heads x head_dim, i intermediate, r LoRA rank. Bytes: c = compute dtype
# of the residual stream and MLP, a = dtype SDPA runs in, m = a dropout mask (bool on CUDA,
# the input's dtype on CPU where dropout multiplies by a float noise tensor).
#
#   RMSNorm (x.float(); x * rsqrt(mean(x^2) + eps); w * y.to(dtype)):
#     the float32 input (4h; the input itself when it is already float32) and rsqrt (4),
#     when the input needs a gradient; the normalized y (c h) when w trains.
#   q/k/v projections: trainable -> their shared input, the norm output (c h), once.
#     LoRA on a projection (dropout p > 0): the dropout mask (m h, when the input needs a
#     gradient) and the dropped-out copy (c h) that lora_A keeps, plus lora_A's output (a r)
#     that lora_B keeps; p = 0 -> lora_A keeps the norm output itself (c h, once).
#   RoPE (q * cos + rotate_half(q) * sin): only cos and sin, shared by all layers: ~0.
#   SDPA (flash / memory-efficient kernels): q (a qd), k and v (a qd each: with an attention
#     mask, i.e. padded or packed rows, transformers repeats the kv heads before SDPA;
#     a kvd each without a mask), the output (a qd, also o_proj's input) and the
#     log-sum-exp (4 x heads); with a mask, the additive float bias that torch builds from
#     the boolean mask in every layer (b x s x s x a per layer, i.e. a x s per token).
#   o projection: trainable -> nothing new (its input is the SDPA output); LoRA -> mask
#     (m qd) + dropout copy (a qd) + lora_A output (a r).
#   residual add: nothing. Second RMSNorm: as the first.
#   SwiGLU down(silu(gate(x)) * up(x)): gate's output g (c i) for silu, silu(g) and up's
#     output (c i each) for the product; down's input, the product (c i), when down trains;
#     LoRA on gate/up/down as for q/k/v (mask + copy + lora_A output; width i for down).
#
#   Full fine-tuning, 16-bit: 4h + 4h (float32 norm inputs) + 4 c h + 4 a qd + 4 c i, i.e.
#   for EXAONE 7.8B (h 4096, qd 4096, i 14336, c = a = 2): 208 KiB per token per layer,
#   plus 2 s bytes of mask bias (4 KiB at s = 2048).
#   LoRA on all seven projections: 8h + 5 (m + c) h + (m + a) qd + 4 a qd + 3 c i + (m + c) i
#   + 7 a r: 262 KiB for EXAONE 7.8B (m = 1, r = 16), more than full fine-tuning because
#   every dropout keeps its own copy of its input.
#
# Other kernels (the CUDA fast path):
#   flash_attention_2: q (a qd), k and v at their own width (a kvd each: GQA without repeating),
#     the unpadded output (a qd) and the log-sum-exp (4 x heads); no mask bias. With padded
#     rows transformers re-pads the output, a separate o_proj input (a qd) when o trains.
#   eager: q, repeated k and v, the output (a qd each), the float32 softmax (4 x heads x s)
#     and its cast to the compute dtype (a x heads x s).
#   Liger RMSNorm keeps its input as it is (c h) and the float32 rstd (4), whether or not the
#     weight trains; Liger SwiGLU keeps gate's and up's outputs (2 c i), recomputing silu.
#
# The first block's input (the embeddings) needs no gradient unless the embeddings train,
# so it saves less; under method=freeze the frozen lower blocks save nothing at all.
# Gradient checkpointing keeps each block's input (c h; frozen blocks' too) and recomputes
# one block at a time during backward. After the blocks: the final norm as above, plus the lm_head input: the
# chunked TRL head keeps its own copy of the hidden states (c h); the plain loss keeps the
# norm output only when lm_head trains.
def _block_bytes(
    shape: ModelShape,
    *,
    full: bool,
    lora: frozenset,
    input_grad: bool,
    r: int,
    dropout: bool,
    c: float,
    a: float,
    m: float,
    seq_len: int,
    padded: bool,
    attention: str = "sdpa",
    liger: bool = False,
) -> tuple[float, bool]:
    """Saved bytes per token of one block, and whether its output needs a gradient."""
    h, qd, kvd, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    total = 0.0

    def lora_path(role, width, in_grad, dtype):
        nonlocal total
        if role not in lora:
            return
        total += a * r  # lora_A output, kept by lora_B
        if dropout:
            total += dtype * width + (m * width if in_grad else 0)

    def rms_norm(in_grad):
        nonlocal total
        if liger:
            total += (c * h + 4) if (in_grad or full) else 0
            return
        if in_grad:
            total += 4 * h + 4  # the float32 input (a copy unless already float32) and rsqrt
        if full:
            total += c * h  # normalized y, for the norm weight's gradient

    rms_norm(input_grad)
    n1_grad = input_grad or full
    if full or (not dropout and lora & {"q", "k", "v"}):
        total += c * h  # the norm output, kept by q/k/v (or by lora_A without dropout)
    for role in ("q", "k", "v"):
        lora_path(role, h, n1_grad, c)
    attn_grad = n1_grad or bool(lora & {"q", "k", "v"})
    if attn_grad and attention == "flash_attention_2":
        total += a * qd + 2 * a * kvd + a * qd + 4 * shape.heads
        if padded and full:
            total += a * qd  # the re-padded output that o_proj keeps
    elif attn_grad and attention == "eager":
        total += 4 * a * qd + (4 + (a if a != 4 else 0)) * shape.heads * seq_len
    elif attn_grad:
        kv_width = qd if padded else kvd
        total += a * qd + 2 * a * kv_width + a * qd + 4 * shape.heads
        if padded:
            total += a * seq_len
    lora_path("o", qd, attn_grad, a)
    h2_grad = input_grad or attn_grad or full or "o" in lora
    rms_norm(h2_grad)  # post-attention RMSNorm
    n2_grad = h2_grad or full
    if full or (not dropout and lora & {"gate", "up"}):
        total += c * h
    for role in ("gate", "up"):
        lora_path(role, h, n2_grad, c)
    g_grad = n2_grad or full or "gate" in lora
    u_grad = n2_grad or full or "up" in lora
    if liger:
        total += 2 * c * i if (g_grad or u_grad) else 0  # gate's and up's outputs
    else:
        if g_grad:
            total += c * i  # silu's input
        if u_grad:
            total += c * i  # silu(g), for the product's gradient w.r.t. up
        if g_grad:
            total += c * i  # up's output, for the product's gradient w.r.t. silu(g)
    p_grad = g_grad or u_grad
    if full or (not dropout and "down" in lora):
        total += c * i
    lora_path("down", i, p_grad, c)
    return total, h2_grad or p_grad or full or "down" in lora


def estimate(
    shape: ModelShape,
    *,
    method_cfg,
    batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool,
    weight_dtype_bytes: int = 2,
    compute_dtype_bytes: int = 2,
    lora_targets: Iterable[str] | None = None,
    device: str = "cuda",
    padded: bool = True,
    attention: str = "sdpa",
    liger: bool = False,
    loss: str = "chunked",
    shards: int = 1,
    shard_weights: bool = False,
) -> Estimate:
    """Peak memory of one training step (forward, backward, AdamW step) on one device.

    ``weight_dtype_bytes``: how the model is loaded (2 for bf16, 4 for float32);
    ``compute_dtype_bytes``: what matmuls produce (2 under bf16 autocast). ``lora_targets``:
    module names or roles (default: all seven projections). ``padded``: batches carry an
    attention mask (padding or packing), as medft's do. ``attention``: the attention kernel
    (``sdpa``, ``flash_attention_2``, ``eager``); ``liger``: Liger's RMSNorm and SwiGLU
    kernels replace transformers'. ``loss``: ``chunked`` (TRL's fused
    LM head, what medft trains with) or ``full`` (materialized logits). ``shards``: ZeRO/FSDP
    world size over which gradients and optimizer state (and weights with
    ``shard_weights``) are split.
    """
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be >= 1")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, not {attention!r}")
    m = _Method.of(method_cfg)
    roles = lora_roles(lora_targets) if m.is_lora else ()
    weights, trainable, trainable_bytes = _weight_bytes(shape, m, roles, weight_dtype_bytes)
    cuda = device == "cuda"

    # dtypes of the saved tensors
    if m.name == "qlora":
        c = 4.0  # norms upcast to float32 -> residual stream and MLP in float32
        a = float(compute_dtype_bytes)
    else:
        c = float(max(weight_dtype_bytes, compute_dtype_bytes))
        a = float(compute_dtype_bytes)
    mask_bytes = 1.0 if cuda else c
    tokens = batch_size * seq_len

    # activations
    L = shape.layers
    common = {
        "r": m.r,
        "dropout": m.is_lora and m.dropout > 0,
        "c": c,
        "a": a,
        "m": mask_bytes,
        "seq_len": seq_len,
        "padded": padded,
        "attention": attention,
        "liger": liger,
    }
    per_block = []
    if m.name == "freeze":
        k = min(m.trainable_layers, L)
        per_block = [0.0] * (L - k)
        grad = False
        for _ in range(k):
            saved, grad = _block_bytes(shape, full=True, lora=frozenset(), input_grad=grad, **common)
            per_block.append(saved)
        final_grad = k > 0
        norm_trains = False
        head_trains = m.train_lm_head
    else:
        full = m.name == "full"
        lora = frozenset(roles)
        # The embeddings' output needs a gradient when they train (full), or when PEFT's
        # kbit preparation asks for it (QLoRA with checkpointing).
        grad = full or (m.name == "qlora" and gradient_checkpointing)
        for _ in range(L):
            saved, grad = _block_bytes(shape, full=full, lora=lora, input_grad=grad, **common)
            per_block.append(saved)
        final_grad = grad
        norm_trains = head_trains = full
    h = shape.hidden
    final = 0.0
    if liger:
        final += (c * h + 4) if (final_grad or norm_trains) else 0
    else:
        final += (4 * h + 4) if final_grad else 0
        final += c * h if norm_trains else 0
    if loss == "chunked":
        final += c * h  # TRL's copy of hidden_states[:, :-1]
    elif head_trains:
        final += c * h
    if gradient_checkpointing:
        act_per_token = L * c * h + final  # every block's input, frozen blocks' too
        recompute = max(per_block, default=0.0) * tokens
    else:
        act_per_token = sum(per_block) + final
        recompute = 0
    activations = act_per_token * tokens
    if m.name != "qlora" and weight_dtype_bytes > compute_dtype_bytes:
        # Autocast over wider weights (e.g. float32 weights, bf16 compute): every linear layer
        # works on a 16-bit copy of its weight, and the copy is what backward keeps.
        graph_layers = sum(1 for saved in per_block if saved > 0)
        copies = graph_layers * shape.block_linear_params
        if m.is_lora:
            copies += graph_layers * sum(m.r * sum(shape.linear_shapes()[role]) for role in roles)
        activations += compute_dtype_bytes * copies
    elif m.name in ("freeze", "full") and compute_dtype_bytes < 4 and not gradient_checkpointing:
        # The float32 master weights of the trainable blocks are cast for autocast the same way
        # (with checkpointing only the recomputed block's copies live at once).
        graph_layers = sum(1 for saved in per_block if saved > 0)
        activations += compute_dtype_bytes * graph_layers * shape.block_linear_params
    if m.name == "qlora":
        # bitsandbytes dequantizes one linear layer's weight at a time into the compute dtype.
        activations += compute_dtype_bytes * max(x * y for x, y in shape.linear_shapes().values())

    # loss head
    V = shape.vocab
    head_weight_bytes = 4 if m.name == "qlora" else weight_dtype_bytes
    if loss == "chunked":
        rows = min(tokens, TRL_TOKEN_CHUNK)
        cols = min(V, TRL_VOCAB_CHUNK)
        # the projection buffer is allocated TRL_VOCAB_CHUNK wide whatever the vocabulary
        tile = rows * TRL_VOCAB_CHUNK * compute_dtype_bytes
        if not cuda:
            tile += int(CPU_TILE_TEMPORARIES * rows * cols * 4)
        per_token_stats = 12 * 4 * tokens  # running max, sums, log z, entropy, ... (float32)
        grad_hidden = 4 * tokens * h + (c * tokens * h if c != 4 else 0)
        grad_head = (4 * V * h + (head_weight_bytes * V * h if head_weight_bytes != 4 else 0)) if head_trains else 0
        # the weight chunk and hidden chunk cast to the compute dtype when they are wider
        casts = (cols * h * compute_dtype_bytes if head_weight_bytes != compute_dtype_bytes else 0) + (
            rows * h * compute_dtype_bytes if c != compute_dtype_bytes else 0
        )
        logits = tile + per_token_stats + grad_hidden + grad_head + casts
    elif loss == "full":
        logits = 12 * tokens * V
    else:
        raise ValueError(f"loss must be 'chunked' or 'full', not {loss!r}")

    # gradients, AdamW moments, the step's scratch
    grads = trainable_bytes
    states = 2 * trainable_bytes
    if cuda:
        step = trainable_bytes  # foreach AdamW: sqrt of every second moment at once
    else:
        largest = max(shape.embedding_params, shape.intermediate * h) if not m.is_lora else 0
        step = 2 * largest * (weight_dtype_bytes if not m.is_lora else 4)
    if shards > 1:
        grads, states, step = grads // shards, states // shards, step // shards
        if shard_weights:
            weights //= shards
    est = Estimate(
        weights=int(weights),
        gradients=int(grads),
        optimizer=int(states),
        activations=int(activations),
        recompute=int(recompute),
        logits=int(logits),
        optimizer_step=int(step),
        overhead=0,
        trainable_params=int(trainable),
        gradients_early=m.is_lora,
    )
    overhead = CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * est.peak_allocated) if cuda else 0
    settings = {
        "method": m.name,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "gradient_checkpointing": bool(gradient_checkpointing),
        "weight_dtype_bytes": weight_dtype_bytes,
        "compute_dtype_bytes": compute_dtype_bytes,
        "lora_roles": roles,
        "device": device,
        "padded": padded,
        "attention": attention,
        "liger": liger,
        "loss": loss,
        "shards": shards,
        "shard_weights": shard_weights,
    }
    return replace(est, overhead=int(overhead), settings=settings)


# --------------------------------------------------------------------------- suggestions
@dataclass(frozen=True)
class Suggestion:
    """Overrides that make the run fit, with their re-estimated footprint."""

    overrides: str
    estimate: Estimate

    def describe(self) -> str:
        return f"{self.overrides} (~{self.estimate.total / GIB:.1f} GiB)"


def _divisors_below(n: int) -> list[int]:
    return [d for d in range(n - 1, 0, -1) if n % d == 0]


def suggest(
    shape: ModelShape,
    *,
    method_cfg,
    batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool,
    available_bytes: int,
    gradient_accumulation_steps: int = 1,
    limit: int = 2,
    **estimate_kwargs,
) -> list[Suggestion]:
    """The cheapest changes that make the estimate fit ``available_bytes``, cheapest first.

    Plans, in order of what they cost: gradient checkpointing (compute only); a smaller
    per-device batch with proportionally more accumulation (same global batch, same
    optimization); a lighter method (full/freeze -> lora -> qlora: different numerics); a
    shorter ``train.max_length`` (truncates data). Each plan takes the largest per-device
    batch (a divisor of the current one) that fits, checked by re-estimating; the first
    ``limit`` plans that fit are returned as pasteable overrides.
    """
    name = _Method.of(method_cfg).name

    def fitting(method, gc, s=seq_len) -> tuple[int, Estimate] | None:
        for b in [batch_size, *_divisors_below(batch_size)]:
            est = estimate(
                shape, method_cfg=method, batch_size=b, seq_len=s, gradient_checkpointing=gc, **estimate_kwargs
            )
            if est.total <= available_bytes:
                return b, est
        return None

    # Checkpointing first: it keeps the tokens per step, a smaller batch does not.
    gcs = [True, False] if not gradient_checkpointing else [True]
    methods = [(None, method_cfg)]
    for lighter in {"full": ("lora", "qlora"), "freeze": ("lora", "qlora"), "lora": ("qlora",)}.get(name, ()):
        methods.append((lighter, _lighter_method(method_cfg, lighter)))
    plans = [(label, method, gc, seq_len) for label, method in methods for gc in gcs]
    s = seq_len
    while s > 256:
        s //= 2
        plans.append((None, method_cfg, True, s))

    found: list[Suggestion] = []
    for label, method, gc, s in plans:
        hit = fitting(method, gc, s)
        if hit is None:
            continue
        b, est = hit
        parts = [] if label is None else [f"method={label}"]
        if gc and not gradient_checkpointing:
            parts.append("train.gradient_checkpointing=true")
        if b != batch_size:
            g = gradient_accumulation_steps * batch_size // b
            parts.append(f"train.per_device_batch_size={b} train.gradient_accumulation_steps={g}")
        if s != seq_len:
            parts.append(f"train.max_length={s}")
        if not parts:  # the unchanged plan cannot fit, or there would be nothing to suggest
            continue
        overrides = " ".join(parts)
        if overrides not in {f.overrides for f in found}:
            found.append(Suggestion(overrides, est))
        if len(found) >= limit:
            break
    return found


def _lighter_method(method_cfg, name: str):
    """A plain-dict method config for ``name`` that keeps the current LoRA settings."""
    lora = _get(method_cfg, "lora")
    settings = {
        "r": int(_get(lora, "r", 16)),
        "dropout": float(_get(lora, "dropout", 0.05)),
        "use_dora": bool(_get(lora, "use_dora", False)),
    }
    out = {"name": name, "lora": settings}
    if name == "qlora":
        out["quantization"] = {"double_quant": True}
    return out


# --------------------------------------------------------------------------- check
def _dtype_bytes(name) -> int | None:
    return {"float32": 4, "bfloat16": 2, "float16": 2}.get(str(_v(name)))


def _cuda_bf16_supported() -> bool:
    """bf16 on the visible GPU; planning without one assumes a current (bf16) GPU."""
    import torch

    if not torch.cuda.is_available():
        return True
    return bool(torch.cuda.is_bf16_supported())


def _kernels(cfg, shape: ModelShape, device: str, weight_bytes: int) -> tuple[str, bool]:
    """The attention kernel and whether Liger's kernels run, decided as medft.modeling.models.resolve_attention
    and medft.training.trainer.use_liger decide them (without importing torch)."""
    import importlib.util

    attention = str(_v(cfg.model.attn_implementation))
    if attention == "auto":
        flash = device == "cuda" and weight_bytes == 2 and importlib.util.find_spec("flash_attn") is not None
        attention = "flash_attention_2" if flash else "sdpa"
    setting = _get(cfg.train, "liger")
    if setting is None:
        setting = device == "cuda" and importlib.util.find_spec("liger_kernel") is not None
    return attention, bool(setting) and shape.model_type in LIGER_MODEL_TYPES


def _lora_roles_of(lora) -> tuple[str, ...]:
    """The block roles a LoRA config adapts, before any model is loaded: explicit module
    names through the family tables, else the target's roles."""
    if lora.target_modules:
        return lora_roles(list(lora.target_modules))
    return families.roles_for_target(str(_v(lora.target)))


def estimate_for_config(cfg, shape: ModelShape, device: str = "cuda", **overrides) -> Estimate:
    """``estimate`` with the settings a composed config trains with on ``device``."""
    from medft.training.trainer import use_fused_loss

    t = cfg.train
    method = cfg.method
    name = str(_v(method.name))
    gc = t.gradient_checkpointing if t.gradient_checkpointing is not None else device == "cuda"
    # As medft.modeling.models.torch_dtype and medft.training.trainer.use_bf16 decide on this device.
    bf16_ok = device == "cuda" and _cuda_bf16_supported()
    weight_bytes = _dtype_bytes(cfg.model.dtype) or (2 if bf16_ok else 4)
    bf16 = t.bf16 if t.bf16 is not None else bf16_ok
    compute = 2 if bf16 else weight_bytes
    targets = _lora_roles_of(method.lora) if name in ("lora", "qlora") and method.lora else None
    attention, liger = _kernels(cfg, shape, device, weight_bytes)
    launcher = cfg.get("launcher") if hasattr(cfg, "get") else None
    world = 1
    shard_weights = False
    if launcher is not None:
        world = int(launcher.nproc_per_node) * int(launcher.nnodes)
        strategy = str(_v(launcher.strategy))
        shard_weights = strategy in ("fsdp", "deepspeed_zero3")
        if strategy == "ddp":
            world = 1
    kwargs = {
        "method_cfg": method,
        "batch_size": int(t.per_device_batch_size),
        "seq_len": int(t.max_length),
        "gradient_checkpointing": bool(gc),
        "weight_dtype_bytes": weight_bytes,
        "compute_dtype_bytes": compute,
        "lora_targets": targets,
        "device": device,
        "attention": attention,
        "liger": liger,
        "shards": world,
        "shard_weights": shard_weights,
        "loss": "chunked" if use_fused_loss(cfg, device) else "full",
    }
    kwargs.update(overrides)
    return estimate(shape, **kwargs)


def check_fits(cfg, source, device_free_bytes: int) -> Estimate:
    """Refuse, in one line with overrides that fit, a run whose estimate exceeds free GPU memory.

    Called on CUDA before the model is loaded; reads only the model's config.
    """
    shape = shape_from_source(cfg.model, source)
    est = estimate_for_config(cfg, shape)
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


__all__ = [
    "Estimate",
    "ModelShape",
    "Suggestion",
    "check_fits",
    "estimate",
    "estimate_for_config",
    "lora_roles",
    "shape_from_source",
    "suggest",
]
