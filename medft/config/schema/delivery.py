"""``chat`` and ``export``: what happens with a trained run (talking to it, shipping it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from medft.config.schema.enums import DType, MergeBase
from medft.config.schema.fields import setting

DEFAULT_SYSTEM_PROMPT = (
    "당신은 한국어 의료 상담 도우미입니다. 증상이 모호하면 먼저 언제부터, 어디가, 얼마나 심한지 되물어 "
    "확인하세요. 답변은 일반적인 건강 정보이며, 진단과 치료는 반드시 의사의 확인이 필요하다고 알려 주세요."
)


@dataclass
class ChatConfig:
    """Conversation settings shared by medft.cli.chat and medft.serving.server."""

    system_prompt: Optional[str] = setting(
        DEFAULT_SYSTEM_PROMPT,
        "System prompt of every conversation (null: none); a Korean medical-counselling prompt by default.",
    )
    temperature: float = setting(0.7, "Sampling temperature; 0 decodes greedily. >= 0.")
    top_p: float = setting(0.9, "Nucleus sampling probability mass, in (0, 1].")
    max_new_tokens: int = setting(512, "Most tokens generated for one reply; >= 1.")
    host: str = setting("127.0.0.1", "serve: the address the web page listens on.")
    port: int = setting(7860, "serve: the TCP port the web page listens on (0: any free port).")


@dataclass
class ExportConfig:
    """medft.runs.export: merge adapters into the base and write a shippable model folder."""

    merge: bool = setting(True, "Merge adapters into the base weights; false exports the adapter alone.")
    dtype: DType = setting(
        DType.bfloat16,
        "Dtype of the exported weights: 16-bit for shipping; float32 keeps the merge exact (e.g. to compare "
        "with the adapter).",
    )
    output: Optional[str] = setting(None, "Where to write the model folder (null: <run>/merged).")
    push_to_hub: Optional[str] = setting(
        None, "A Hub repo id to upload to; the token comes from HF_TOKEN in the environment only."
    )
    private: bool = setting(True, "Create the Hub repo as private.")
    max_shard_size: str = setting("5GB", "Largest safetensors shard written.")
    merge_base: MergeBase = setting(
        MergeBase.dequantized,
        "What a QLoRA adapter is merged into: dequantized = the NF4 weights it trained against, so the export "
        "is the trained model; original = the 16-bit checkpoint, off by the quantization error.",
    )
    fidelity_rows: int = setting(
        4, "Held-out rows on which the exported model's logits are compared with the trained model's (0: skip)."
    )
