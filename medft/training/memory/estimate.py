"""The estimate: bytes of one training step by component, and the peak of what is live at once."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from medft.training.memory.activations import ATTENTIONS, Step, activation_bytes
from medft.training.memory.shape import ModelShape, PlannedMethod, lora_roles

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


def _weight_bytes(shape: ModelShape, m: PlannedMethod, roles: Sequence[str], weight_bytes: int) -> tuple[int, int, int]:
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


def _loss_head_bytes(shape: ModelShape, step: Step, head_trains: bool) -> int | float:
    """The loss head's transient peak at the start of backward."""
    V, h, c = shape.vocab, shape.hidden, step.c
    tokens, compute = step.tokens, step.compute_bytes
    if step.loss == "full":
        return 12 * tokens * V
    if step.loss != "chunked":
        raise ValueError(f"loss must be 'chunked' or 'full', not {step.loss!r}")
    head_weight_bytes = 4 if step.method.name == "qlora" else step.weight_bytes
    rows = min(tokens, TRL_TOKEN_CHUNK)
    cols = min(V, TRL_VOCAB_CHUNK)
    # the projection buffer is allocated TRL_VOCAB_CHUNK wide whatever the vocabulary
    tile = rows * TRL_VOCAB_CHUNK * compute
    if not step.cuda:
        tile += int(CPU_TILE_TEMPORARIES * rows * cols * 4)
    per_token_stats = 12 * 4 * tokens  # running max, sums, log z, entropy, ... (float32)
    grad_hidden = 4 * tokens * h + (c * tokens * h if c != 4 else 0)
    grad_head = (4 * V * h + (head_weight_bytes * V * h if head_weight_bytes != 4 else 0)) if head_trains else 0
    # the weight chunk and hidden chunk cast to the compute dtype when they are wider
    casts = (cols * h * compute if head_weight_bytes != compute else 0) + (rows * h * compute if c != compute else 0)
    return tile + per_token_stats + grad_hidden + grad_head + casts


def _optimizer_step_bytes(shape: ModelShape, step: Step, trainable_bytes: int) -> int:
    """Scratch of optimizer.step()."""
    if step.cuda:
        return trainable_bytes  # foreach AdamW: sqrt of every second moment at once
    m = step.method
    largest = max(shape.embedding_params, shape.intermediate * shape.hidden) if not m.is_lora else 0
    return 2 * largest * (step.weight_bytes if not m.is_lora else 4)


def _settings(step: Step, device: str) -> dict:
    """The settings an estimate was made under (``Estimate.settings``)."""
    return {
        "method": step.method.name,
        "batch_size": step.batch_size,
        "seq_len": step.seq_len,
        "gradient_checkpointing": step.gradient_checkpointing,
        "weight_dtype_bytes": step.weight_bytes,
        "compute_dtype_bytes": step.compute_bytes,
        "lora_roles": step.roles,
        "device": device,
        "padded": step.padded,
        "attention": step.attention,
        "liger": step.liger,
        "loss": step.loss,
    }


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
    m = PlannedMethod.of(method_cfg)
    roles = lora_roles(lora_targets) if m.is_lora else ()
    step = Step(
        method=m,
        roles=roles,
        batch_size=batch_size,
        seq_len=seq_len,
        gradient_checkpointing=bool(gradient_checkpointing),
        weight_bytes=weight_dtype_bytes,
        compute_bytes=compute_dtype_bytes,
        cuda=device == "cuda",
        padded=padded,
        attention=attention,
        liger=liger,
        loss=loss,
    )
    weights, trainable, trainable_bytes = _weight_bytes(shape, m, roles, weight_dtype_bytes)
    activations, recompute, head_trains = activation_bytes(shape, step)
    logits = _loss_head_bytes(shape, step, head_trains)
    # gradients, AdamW moments, the step's scratch
    grads, states, scratch = trainable_bytes, 2 * trainable_bytes, _optimizer_step_bytes(shape, step, trainable_bytes)
    if shards > 1:
        grads, states, scratch = grads // shards, states // shards, scratch // shards
        if shard_weights:
            weights //= shards
    est = Estimate(
        weights=int(weights),
        gradients=int(grads),
        optimizer=int(states),
        activations=int(activations),
        recompute=int(recompute),
        logits=int(logits),
        optimizer_step=int(scratch),
        overhead=0,
        trainable_params=int(trainable),
        gradients_early=m.is_lora,
    )
    overhead = CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * est.peak_allocated) if step.cuda else 0
    settings = {**_settings(step, device), "shards": shards, "shard_weights": shard_weights}
    return replace(est, overhead=int(overhead), settings=settings)
