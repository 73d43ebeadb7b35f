"""Chat templates medft owns, byte-exact with each model's official template.

The same template string is installed on the tokenizer used for training and for
inference, so what the model is trained on is what it sees when it is served.
Each template comes with the facts label masking needs: which token ends an
assistant turn, and whether the template itself renders BOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medft.runtime.errors import ConfigError

TEMPLATE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    # Token that closes an assistant turn and must be supervised.
    end_of_turn: str
    # Appended to assistant content when the template renders no end-of-turn token
    # itself (SOLAR): the model must still learn to stop.
    assistant_suffix: str = ""
    bos_token: str | None = None
    # True when the template text itself starts with the BOS token.
    renders_bos: bool = False
    pad_token: str | None = None
    # Special tokens the template uses; a tokenizer missing one cannot render it.
    special_tokens: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""


TEMPLATES: dict[str, TemplateSpec] = {
    "exaone3_5": TemplateSpec(
        name="exaone3_5",
        end_of_turn="[|endofturn|]",
        bos_token="[BOS]",
        pad_token="[PAD]",
        special_tokens=("[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"),
        source="LGAI-EXAONE/EXAONE-3.5-*-Instruct tokenizer_config.json chat_template",
    ),
    "llama3_1": TemplateSpec(
        name="llama3_1",
        end_of_turn="<|eot_id|>",
        bos_token="<|begin_of_text|>",
        renders_bos=True,
        pad_token="<|finetune_right_pad_id|>",
        special_tokens=(
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|python_tag|>",
            "<|finetune_right_pad_id|>",
        ),
        source="meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json chat_template",
    ),
    "solar": TemplateSpec(
        name="solar",
        end_of_turn="</s>",
        assistant_suffix="</s>",
        bos_token="<s>",
        pad_token="</s>",
        special_tokens=("<s>", "</s>"),
        source="upstage/SOLAR-10.7B-Instruct-v1.0 tokenizer_config.json chat_template",
    ),
}


def get_spec(name: str) -> TemplateSpec:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(
            f"model.chat_template={name} is not a template medft ships; choose one of: {', '.join(sorted(TEMPLATES))}"
        ) from None


@cache
def load_template(name: str) -> str:
    """The Jinja source, exactly as the model's tokenizer_config.json carries it."""
    get_spec(name)
    return (TEMPLATE_DIR / f"{name}.jinja").read_text(encoding="utf-8")
