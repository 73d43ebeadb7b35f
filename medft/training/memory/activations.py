"""Activation bytes: the tensors autograd saves for backward in one training step.

Per token of each decoder block (derivation below), then the final norm and the loss head's
input; with gradient checkpointing, each block's input plus one block recomputed at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from medft.training.memory.shape import ModelShape, PlannedMethod

ATTENTIONS = ("sdpa", "flash_attention_2", "eager")


@dataclass(frozen=True)
class Step:
    """One training step's settings, as the byte counts read them."""

    method: PlannedMethod
    roles: tuple[str, ...]
    batch_size: int
    seq_len: int
    gradient_checkpointing: bool
    weight_bytes: int
    compute_bytes: int
    cuda: bool
    padded: bool
    attention: str
    liger: bool
    loss: str

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def c(self) -> float:
        """Bytes of the residual stream and MLP: QLoRA's norms upcast to float32, so float32 there."""
        if self.method.name == "qlora":
            return 4.0
        return float(max(self.weight_bytes, self.compute_bytes))

    @property
    def a(self) -> float:
        """Bytes of what attention runs in."""
        return float(self.compute_bytes)

    @property
    def mask(self) -> float:
        """Bytes of a dropout mask element: bool on CUDA, the input's dtype on CPU."""
        return 1.0 if self.cuda else self.c


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


def _per_block(shape: ModelShape, step: Step) -> tuple[list[float], bool, bool, bool]:
    """Saved bytes per token of every block, bottom first; whether the final norm's input needs a
    gradient, whether the final norm trains, whether lm_head trains."""
    m = step.method
    L = shape.layers
    common = {
        "r": m.r,
        "dropout": m.is_lora and m.dropout > 0,
        "c": step.c,
        "a": step.a,
        "m": step.mask,
        "seq_len": step.seq_len,
        "padded": step.padded,
        "attention": step.attention,
        "liger": step.liger,
    }
    per_block = []
    if m.name == "freeze":
        k = min(m.trainable_layers, L)
        per_block = [0.0] * (L - k)
        grad = False
        for _ in range(k):
            saved, grad = _block_bytes(shape, full=True, lora=frozenset(), input_grad=grad, **common)
            per_block.append(saved)
        return per_block, k > 0, False, m.train_lm_head
    full = m.name == "full"
    lora = frozenset(step.roles)
    # The embeddings' output needs a gradient when they train (full), or when PEFT's
    # kbit preparation asks for it (QLoRA with checkpointing).
    grad = full or (m.name == "qlora" and step.gradient_checkpointing)
    for _ in range(L):
        saved, grad = _block_bytes(shape, full=full, lora=lora, input_grad=grad, **common)
        per_block.append(saved)
    return per_block, grad, full, full


def _after_blocks(shape: ModelShape, step: Step, final_grad: bool, norm_trains: bool, head_trains: bool) -> float:
    """Saved bytes per token of the final norm and the loss head's input."""
    c, h = step.c, shape.hidden
    final = 0.0
    if step.liger:
        final += (c * h + 4) if (final_grad or norm_trains) else 0
    else:
        final += (4 * h + 4) if final_grad else 0
        final += c * h if norm_trains else 0
    if step.loss == "chunked":
        final += c * h  # TRL's copy of hidden_states[:, :-1]
    elif head_trains:
        final += c * h
    return final


def _weight_copies(shape: ModelShape, step: Step, per_block: list[float]) -> float:
    """Bytes of the compute-dtype weight copies autocast makes and backward keeps."""
    m = step.method
    graph_layers = sum(1 for saved in per_block if saved > 0)
    if m.name != "qlora" and step.weight_bytes > step.compute_bytes:
        # Autocast over wider weights (e.g. float32 weights, bf16 compute): every linear layer
        # works on a 16-bit copy of its weight, and the copy is what backward keeps.
        copies = graph_layers * shape.block_linear_params
        if m.is_lora:
            copies += graph_layers * sum(m.r * sum(shape.linear_shapes()[role]) for role in step.roles)
        return step.compute_bytes * copies
    if m.name in ("freeze", "full") and step.compute_bytes < 4 and not step.gradient_checkpointing:
        # The float32 master weights of the trainable blocks are cast for autocast the same way
        # (with checkpointing only the recomputed block's copies live at once).
        return step.compute_bytes * graph_layers * shape.block_linear_params
    return 0


def activation_bytes(shape: ModelShape, step: Step) -> tuple[float, float, bool]:
    """(saved activations, one recomputed block with checkpointing, whether lm_head trains)."""
    per_block, final_grad, norm_trains, head_trains = _per_block(shape, step)
    final = _after_blocks(shape, step, final_grad, norm_trains, head_trains)
    tokens = step.tokens
    if step.gradient_checkpointing:
        act_per_token = shape.layers * step.c * shape.hidden + final  # every block's input, frozen blocks' too
        recompute = max(per_block, default=0.0) * tokens
    else:
        act_per_token = sum(per_block) + final
        recompute = 0
    activations = act_per_token * tokens
    activations += _weight_copies(shape, step, per_block)
    if step.method.name == "qlora":
        # bitsandbytes dequantizes one linear layer's weight at a time into the compute dtype.
        activations += step.compute_bytes * max(x * y for x, y in shape.linear_shapes().values())
    return activations, recompute, head_trains
