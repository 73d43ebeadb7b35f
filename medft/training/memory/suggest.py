"""Overrides that make a run fit: the cheapest changes first, each re-estimated."""

from __future__ import annotations

from dataclasses import dataclass

from medft.training.memory.estimate import GIB, Estimate, estimate
from medft.training.memory.shape import ModelShape, PlannedMethod, setting


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
    name = PlannedMethod.of(method_cfg).name

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
    lora = setting(method_cfg, "lora")
    settings = {
        "r": int(setting(lora, "r", 16)),
        "dropout": float(setting(lora, "dropout", 0.05)),
        "use_dora": bool(setting(lora, "use_dora", False)),
    }
    out = {"name": name, "lora": settings}
    if name == "qlora":
        out["quantization"] = {"double_quant": True}
    return out
