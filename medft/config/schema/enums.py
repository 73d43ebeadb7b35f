"""The closed choices of the schema. Each prints as its value (``str(MethodName.lora) == "lora"``)."""

from __future__ import annotations

from enum import StrEnum


class DType(StrEnum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Attention(StrEnum):
    # auto: flash_attention_2 on CUDA when flash-attn is installed, else sdpa.
    auto = "auto"
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"


class MethodName(StrEnum):
    lora = "lora"
    qlora = "qlora"
    freeze = "freeze"
    full = "full"


class LoraTarget(StrEnum):
    """Which block roles get adapters; medft.modeling.families finds their names on the loaded model."""

    all = "all"
    attention = "attention"
    mlp = "mlp"


class SourceKind(StrEnum):
    aihub = "aihub"
    pubmedqa_ko = "pubmedqa_ko"
    hira = "hira"
    hira_csv = "hira_csv"


class Pairing(StrEnum):
    first = "first"
    random = "random"
    all = "all"


class EvalKind(StrEnum):
    kormedmcqa = "kormedmcqa"
    pubmedqa_ko = "pubmedqa_ko"
    heldout = "heldout"


class LoggerBackend(StrEnum):
    wandb = "wandb"
    none = "none"


class MergeBase(StrEnum):
    """The weights a QLoRA adapter is added to on export."""

    dequantized = "dequantized"
    original = "original"


class Strategy(StrEnum):
    ddp = "ddp"
    fsdp = "fsdp"
    deepspeed_zero2 = "deepspeed_zero2"
    deepspeed_zero3 = "deepspeed_zero3"
