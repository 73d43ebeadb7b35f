"""Batched prompting for benchmarks: render, generate greedily, score continuations.

Chat prompts are rendered by the tokenizer's chat template (the text a medft run was
trained to continue) and tokenized with the leading BOS exactly as in training and in the
model's own usage (``medft.text.labels.encode_prompt``). Raw prompts start as a chat prompt does
(the template's BOS where it renders one, else the tokenizer's default) and are cut at the
first blank line, where a few-shot prompt's continuation begins inventing the next question.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from medft.modeling.generate import Reply
from medft.text.labels import encode_prompt, encode_prompts
from medft.text.templates import get_spec


@dataclass(frozen=True)
class Prompter:
    """How one model turns a benchmark prompt into text."""

    tokenizer: object
    chat: bool
    bos: str = ""

    @classmethod
    def for_model(cls, loaded, chat: bool) -> Prompter:
        spec = get_spec(loaded.cfg.model.chat_template)
        bos = spec.bos_token if spec.renders_bos and spec.bos_token else ""
        return cls(loaded.tokenizer, chat, bos)

    def render(self, messages: list[dict]) -> str:
        """Chat: the template with the generation prompt. Raw: the turns' text joined, the
        assistant turns (few-shot answers) after a space, as lm-eval's target delimiter."""
        if self.chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        parts = []
        for message in messages:
            if message["role"] == "assistant":
                parts.append(f" {message['content']}\n\n")
            elif message["role"] == "user":
                parts.append(message["content"])
        return self.bos + "".join(parts)

    def finish(self, text: str) -> str:
        return text if self.chat else text.split("\n\n", 1)[0].strip()


@contextmanager
def _left_padding(tokenizer):
    """Generation pads on the left so every row's answer starts at the same position."""
    saved = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = saved


def _device(model):
    return next(model.parameters()).device


def generate_batch(model, tokenizer, texts: list[str], gen_kwargs: dict) -> list[Reply]:
    """One greedy/sampled generate() over a batch; each reply's seconds are the batch's wall time."""
    import torch

    with _left_padding(tokenizer):
        inputs = encode_prompts(tokenizer, texts).to(_device(model))
    started = time.perf_counter()
    with torch.no_grad():
        output = model.generate(
            **inputs,
            **gen_kwargs,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
        )
    seconds = time.perf_counter() - started
    replies = []
    for row in output[:, inputs["input_ids"].shape[1] :].tolist():
        n = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
        text = tokenizer.decode(row[:n], skip_special_tokens=True).strip()
        replies.append(Reply(text=text, new_tokens=n, seconds=seconds))
    return replies


def continuation_logprobs(model, tokenizer, context: str, continuations: list[str]) -> list[float]:
    """Summed log-probability of each continuation after ``context`` (lm-eval's loglikelihood)."""
    import torch

    ctx = encode_prompt(tokenizer, context)
    conts = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]  # no BOS mid-sequence
    rows = [ctx + c for c in conts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=_device(model))
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=ids.device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    scores = []
    for i, cont in enumerate(conts):
        positions = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(cont), device=ids.device)
        targets = torch.tensor(cont, device=ids.device)
        scores.append(float(logprobs[i, positions, targets].sum()))
    return scores


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
