"""One generation path for evaluate, chat and serve: the chat template, then generate.

The prompt is rendered by the tokenizer's chat template with the generation prompt, the
same text the model was trained to continue, tokenized with the same leading BOS as in
training (``medft.text.labels.encode_prompt``), and generation stops at the template's
end-of-turn token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    text: str
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def generation_kwargs(defaults: Any, overrides: dict | None = None) -> dict:
    """Model-spec generation defaults, with per-call overrides (e.g. greedy for scoring)."""
    kwargs = {
        "max_new_tokens": int(defaults.max_new_tokens),
        "do_sample": bool(defaults.do_sample),
        "temperature": float(defaults.temperature),
        "top_p": float(defaults.top_p),
        "repetition_penalty": float(defaults.repetition_penalty),
    }
    kwargs.update(overrides or {})
    if not kwargs["do_sample"] or kwargs.get("temperature", 1.0) <= 0:
        kwargs.update(do_sample=False)
        kwargs.pop("temperature", None)
        kwargs.pop("top_p", None)
    return kwargs


def generate_reply(
    model,
    tokenizer,
    messages: list[dict],
    gen_kwargs: dict,
    on_text: Callable[[str], None] | None = None,
) -> Reply:
    """The assistant's next turn for `messages`; `on_text` receives text as it streams."""
    import torch

    from medft.text.labels import encode_prompts

    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = encode_prompts(tokenizer, [prompt]).to(next(model.parameters()).device)
    streamer = None
    if on_text is not None:
        from transformers import TextStreamer

        class _Callback(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    on_text(text)

        streamer = _Callback(tokenizer, skip_prompt=True, skip_special_tokens=True)
    started = time.perf_counter()
    with torch.no_grad():
        output = model.generate(
            **inputs,
            **gen_kwargs,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
        )
    seconds = time.perf_counter() - started
    new = output[0, inputs["input_ids"].shape[1] :]
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    return Reply(text=text, new_tokens=int(new.numel()), seconds=seconds)
