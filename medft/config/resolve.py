"""Every "auto" switch of a training run, decided once: ``resolve(cfg, facts) -> Resolved``.

A config leaves many settings to ``null``/``auto`` (bf16, TF32, the attention kernel,
gradient checkpointing, packing, the fused loss head, Liger's kernels, length-grouped
batches); what they become depends on the device. ``resolve`` decides all of them from the
composed config and a :class:`~medft.runtime.devices.DeviceFacts`, as a pure function: it
probes nothing, so a hand-made ``DeviceFacts`` answers for a GPU this machine does not have.
The trainer, the memory planner and the run's manifest then read the one ``Resolved``.

Two answers need a measurement of the run, and are added to the ``Resolved`` where they are
made, by the rules below: the memory planner's (does the run need gradient checkpointing
to fit, :meth:`Resolved.with_memory_plan`) and the packing probe's (does the model keep
packed rows apart, :meth:`Resolved.with_packing`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from medft.runtime.devices import DeviceFacts
from medft.runtime.errors import ConfigError

VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")
HALF_DTYPES = ("bfloat16", "float16")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Resolved:
    """The settings a run trains with, every "auto" decided."""

    device: str  # "cuda" or "cpu"
    world_size: int  # processes in the job
    weights_dtype: str  # the dtype the weights load in: float32, bfloat16 or float16
    bf16: bool  # bf16 autocast
    fp16: bool  # fp16 autocast with loss scaling (float16 weights without bf16)
    tf32: bool  # TF32 matmuls
    attention: str  # the attention implementation the model loads with
    liger: bool  # TRL's use_liger_kernel
    fused_loss: bool  # TRL's chunked LM head + loss; else medft's plain loss
    gradient_checkpointing: bool
    packing: bool | None  # None: on where the packing probe shows packed rows kept apart
    group_by_length: bool  # length-grouped batches (never with packed rows)
    # The settings decided here rather than by the config (the rest were set explicitly).
    auto: frozenset[str] = field(default_factory=frozenset)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def autocast(self) -> bool:
        return self.bf16 or self.fp16

    @property
    def flatten_packs(self) -> bool:
        """Packed rows flattened into one sequence for the varlen flash kernel (TRL's padding-free collator)."""
        return bool(self.packing) and self.attention == "flash_attention_2"

    @property
    def weight_bytes(self) -> int:
        return DTYPE_BYTES[self.weights_dtype]

    @property
    def compute_bytes(self) -> int:
        """Bytes per element of the activations: 2 under bf16 autocast, else the weights' width."""
        return 2 if self.bf16 else self.weight_bytes

    def with_memory_plan(self, checkpointing_needed: bool | None) -> Resolved:
        """Gradient checkpointing as the memory planner found the run needs it, where the config left it to auto."""
        if checkpointing_needed is None or "gradient_checkpointing" not in self.auto:
            return self
        return replace(self, gradient_checkpointing=bool(checkpointing_needed))

    def with_packing(self, packed: bool) -> Resolved:
        """Packing as the probe settled it; packed rows are never grouped by length (they are near max_length)."""
        return replace(self, packing=bool(packed), group_by_length=self.group_by_length and not packed)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["auto"] = sorted(self.auto)
        return out


def _switch(setting: bool | None, default: bool) -> bool:
    return default if setting is None else bool(setting)


def weights_dtype(dtype_setting, facts: DeviceFacts) -> str:
    """auto: bfloat16 on GPUs that compute in it, else float32; otherwise as set."""
    name = str(dtype_setting)
    if name == "auto":
        return "bfloat16" if facts.cuda and facts.cuda_bf16 else "float32"
    return name


def attention_for(setting, dtype: str, facts: DeviceFacts) -> str:
    """auto: the varlen flash kernel where it can run (CUDA, half precision, flash-attn installed),
    else PyTorch's SDPA, which every supported architecture takes."""
    name = str(setting)
    if name != "auto":
        return name
    return "flash_attention_2" if facts.cuda and dtype in HALF_DTYPES and facts.flash_attn else "sdpa"


def packing_request(setting: bool | None, attention: str | None) -> bool | None:
    """False: never; True: pack (refused later if rows would leak); None: pack where the probe
    shows isolation. auto packs only with a variable-length kernel, where packing pays."""
    if setting is None and attention not in VARLEN_ATTENTION:
        return False
    return setting


def _liger(setting: bool | None, facts: DeviceFacts) -> bool:
    """Liger's Triton kernels run on CUDA only; auto takes them where installed."""
    if setting and not facts.pictured:
        if not facts.liger:
            raise ConfigError(
                "train.liger=true needs liger-kernel: pip install liger-kernel (CUDA only), or train.liger=null"
            )
        if not facts.cuda:
            raise ConfigError("train.liger=true needs a CUDA GPU; on this machine use train.liger=null")
    return _switch(setting, facts.cuda and facts.liger)


def resolve(cfg, facts: DeviceFacts) -> Resolved:
    """Every auto switch of ``cfg`` on the device ``facts`` describes; refuses forced settings it cannot run."""
    t = cfg.train
    cuda = facts.cuda
    dtype = weights_dtype(cfg.model.dtype, facts)
    bf16 = _switch(t.bf16, cuda and facts.cuda_bf16)
    attention = attention_for(cfg.model.attn_implementation, dtype, facts)
    packing = packing_request(t.packing, attention)
    settings = {
        "bf16": t.bf16,
        "tf32": t.tf32,
        "liger": t.liger,
        "fused_loss": t.fused_loss,
        "gradient_checkpointing": t.gradient_checkpointing,
        "packing": t.packing,
        "group_by_length": t.group_by_length,
    }
    auto = {name for name, setting in settings.items() if setting is None}
    if str(cfg.model.attn_implementation) == "auto":
        auto.add("attention")
    if str(cfg.model.dtype) == "auto":
        auto.add("weights_dtype")
    return Resolved(
        device=facts.kind,
        world_size=facts.world_size,
        weights_dtype=dtype,
        bf16=bf16,
        # fp16 autocast (with loss scaling) on GPUs for weights set to float16, unless bf16 is on.
        fp16=cuda and str(cfg.model.dtype) == "float16" and not bf16,
        tf32=_switch(t.tf32, cuda and (facts.capability or (0, 0))[0] >= 8),
        attention=attention,
        liger=_liger(t.liger, facts),
        # TRL's fused head keeps the tokens x vocab logits out of GPU memory; on CPU medft's plain
        # loss (medft.training.supervised_head) was faster and lighter (benchmarks/train_throughput.py).
        fused_loss=_switch(t.fused_loss, cuda),
        # Checkpointing trades ~30 % more compute for memory: on CPU memory is not the constraint;
        # on CUDA it is on unless the memory planner finds the run fits without (with_memory_plan).
        gradient_checkpointing=_switch(t.gradient_checkpointing, cuda),
        packing=packing,
        # Packed rows are already near max_length; grouping only helps padded batches.
        group_by_length=_switch(t.group_by_length, packing is not True) and packing is not True,
        auto=frozenset(auto),
    )


__all__ = ["DTYPE_BYTES", "VARLEN_ATTENTION", "Resolved", "attention_for", "packing_request", "resolve"]
