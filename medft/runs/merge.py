"""Merging a run's adapter into its base, and measuring how closely the result is the trained model.

A QLoRA adapter learned its correction on top of the NF4-dequantized weights it ran on, not the
16-bit checkpoint: added to the checkpoint, every adapted layer is off by the quantization error
(on the tiny model, half the whole 4-bit vs 16-bit gap). So the adapter goes into the dequantized
weights by default, and every export reports the largest logit difference between the model as
trained and the model as shipped.
"""

from __future__ import annotations

import gc
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

from medft.config import MergeBase
from medft.runtime.errors import MedftError

log = logging.getLogger("medft")

# Tokens kept per row: the trained model's logits (rows x tokens x vocabulary floats) wait in memory
# while the merged model loads; a prefix of a causal model's input gives the same logits there.
MAX_TOKENS = 512
# Rows tried per row wanted, so a split whose first rows do not tokenize still yields some.
CANDIDATES_PER_ROW = 4
# For runs whose data cannot be read where the export runs (another machine, no network).
FALLBACK_CONVERSATION = (
    {"role": "user", "content": "감기에 걸렸을 때 어떻게 하나요?"},
    {
        "role": "assistant",
        "content": "충분히 쉬고 물을 자주 마시세요. 열이 사흘 넘게 이어지거나 숨쉬기 힘들면 병원에 가세요.",
    },
)


@dataclass
class Fidelity:
    """max |logit(trained) − logit(exported)| over every position of a few rows."""

    max_logit_diff: float
    rows: int
    tokens: int
    inputs: str  # "validation split", "test split" or "fixed conversation"


def is_quantized(cfg) -> bool:
    from medft.modeling.methods import descriptor

    return descriptor(cfg.method.name).quantized


def effective_merge_base(cfg, requested) -> MergeBase:
    """Only a quantized base has a dequantized form; any other adapter goes into the original weights."""
    return MergeBase(requested) if is_quantized(cfg) else MergeBase.original


def trained_description(cfg, is_adapter: bool) -> str:
    if not is_adapter:
        return f"weights in {getattr(cfg.model.dtype, 'value', cfg.model.dtype)}"
    return "4-bit NF4 base + adapter" if is_quantized(cfg) else "base + adapter"


def original_base(cfg, dtype: str):
    """The base reloaded from its checkpoint, unquantized, in the export dtype."""
    from omegaconf import OmegaConf

    from medft.modeling import methods, models

    spec = OmegaConf.merge(cfg.model, {"dtype": dtype})
    unquantized = {"name": methods.FULL.name.value}  # a method that loads the base unquantized
    return models.load_model(spec, OmegaConf.create(unquantized), "cpu")


def dequantized_base(cfg, dtype: str):
    """The 4-bit base exactly as trained, its NF4 weights expanded by transformers' bitsandbytes
    integration (``PreTrainedModel.dequantize`` → ``bitsandbytes.functional.dequantize_4bit``)."""
    from medft.modeling import models

    target = models.torch_dtype(dtype, "cpu")
    base = models.load_model(cfg.model, cfg.method, "cpu")
    # dequantize() casts only the 4-bit layers; embeddings, norms and the head keep the load dtype.
    return base.dequantize(dtype=target).to(target)


def merged_model(cfg, adapter: Path, merge_base: MergeBase, dtype: str):
    """The base with the adapter's weights added in, as a plain transformers model."""
    from peft import PeftModel

    load = dequantized_base if merge_base is MergeBase.dequantized else original_base
    base = load(cfg, dtype)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def _held_out(data_cfg, count: int):
    """(conversations, name) of the validation split, then the test split; nothing when unreadable here."""
    from medft.data.cache import prepare_data

    try:
        datasets, _ = prepare_data(data_cfg, progress=False)
    except (MedftError, OSError, ValueError) as err:
        log.warning("export: the run's data cannot be read here (%s)", str(err).splitlines()[0][:160])
        return
    for split in ("validation", "test"):
        if split in datasets and len(datasets[split]):
            rows = itertools.islice(datasets[split], count * CANDIDATES_PER_ROW)
            yield (row["messages"] for row in rows), f"{split} split"


def _tokenize(tokenizer, spec, conversations, max_length: int, count: int) -> list[list[int]]:
    """Up to ``count`` conversations as training tokenized them, each cut to MAX_TOKENS."""
    from medft.text.labels import RowError, build_example

    ids = []
    for messages in conversations:
        try:
            ids.append(build_example(tokenizer, spec, list(messages), max_length)["input_ids"][:MAX_TOKENS])
        except RowError:
            continue
        if len(ids) == count:
            break
    return ids


def fidelity_inputs(cfg, tokenizer, count: int) -> tuple[list[list[int]], str]:
    """Token ids of a few held-out rows of the run: validation, else test, else a fixed conversation."""
    from medft.text.templates import get_spec

    spec = get_spec(cfg.model.chat_template)
    max_length = int(cfg.train.max_length)
    for conversations, name in _held_out(cfg.data, count):
        ids = _tokenize(tokenizer, spec, conversations, max_length, count)
        if ids:
            return ids, name
    return _tokenize(tokenizer, spec, [FALLBACK_CONVERSATION], max_length, 1), "fixed conversation"


def logits(model, inputs: list[list[int]]) -> list:
    """Float32 logits per row, one row at a time (no padding to reason about)."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu() for ids in inputs]


def trained_logits(run_dir: Path, inputs: list[list[int]]) -> list:
    """Logits of the run's model exactly as evaluate and chat load it (QLoRA: its 4-bit base + adapter)."""
    from medft.runs.loading import load_trained

    result = logits(load_trained(run_dir, device="cpu").model, inputs)
    gc.collect()  # the trained model goes before the merged one loads
    return result


def max_logit_diff(reference: list, other: list) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(reference, other, strict=True))
