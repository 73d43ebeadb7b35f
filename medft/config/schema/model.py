"""``model``: which weights to load and how (conf/model/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from medft.config.schema.enums import Attention, DType
from medft.config.schema.fields import setting


@dataclass
class TinyArchitecture:
    """A small random Llama built from config, for offline runs and tests."""

    hidden_size: int = setting(128, "Width of the hidden states.")
    intermediate_size: int = setting(384, "Width of the MLP's inner layer.")
    num_hidden_layers: int = setting(4, "Number of decoder blocks.")
    num_attention_heads: int = setting(4, "Attention heads per block.")
    num_key_value_heads: int = setting(2, "Key/value heads per block (fewer than attention heads: grouped queries).")
    max_position_embeddings: int = setting(2048, "Longest sequence the position embeddings cover.")
    tie_word_embeddings: bool = setting(False, "Share the input embeddings with the LM head.")
    seed: int = setting(0, "Seed of the random initial weights (the same seed builds the same model).")


@dataclass
class GenerationDefaults:
    """The model's own sampling defaults; chat.* and eval.* settings override them."""

    max_new_tokens: int = setting(512, "Most tokens generated for one reply.")
    temperature: float = setting(0.7, "Sampling temperature (higher: more varied replies).")
    top_p: float = setting(0.9, "Nucleus sampling: sample from the smallest set of tokens holding this probability.")
    repetition_penalty: float = setting(1.0, "Penalty on tokens already generated (1.0: none).")
    do_sample: bool = setting(True, "Sample; false decodes greedily.")


@dataclass
class ModelConfig:
    name: str = setting(MISSING, "The model spec's name (its conf/model/ file); names run folders and W&B runs.")
    hub_id: Optional[str] = setting(None, "Hugging Face Hub repo id of the weights.")
    revision: Optional[str] = setting(None, "Hub revision to load; the shipped specs pin a commit so runs repeat.")
    path: Optional[str] = setting(
        None, "A local copy (a folder with config.json and weights); wins over hub_id when set."
    )
    trust_remote_code: str = setting(
        "auto",
        "auto, true or false. auto: transformers' own implementation when the installed release knows the "
        "checkpoint's model_type (EXAONE 3.5 since 5.24), the checkpoint's remote code only otherwise; "
        "true: always the remote code (at the pinned revision); false: never.",
    )
    dtype: DType = setting(
        DType.auto,
        "Weights' dtype when loaded. auto: bfloat16 on a GPU that supports it, float32 on CPU.",
    )
    attn_implementation: Attention = setting(
        Attention.sdpa,
        "Attention kernel. auto: flash_attention_2 on CUDA when flash-attn is installed, else sdpa.",
    )
    chat_template: str = setting(
        MISSING, "The chat template (medft/text/templates/<name>.jinja) rendering every training and chat prompt."
    )
    generation: GenerationDefaults = setting(
        help="Sampling defaults of this model for chat and generation.", factory=GenerationDefaults
    )
    license: str = setting("", "The weights' license, written into exported model cards.")
    tiny: Optional[TinyArchitecture] = setting(
        None, "Set only for model=tiny: build a random model of this shape instead of downloading weights."
    )
