"""Padding-free packing: several rows in one sequence, each with its own position ids.

Packing is only correct when the model keeps packed rows apart. transformers builds a
block-diagonal mask from restarting position ids (or uses the varlen flash kernel),
but remote-code models (EXAONE 3.5) bring their own attention code, which may not.
So instead of trusting a list of architectures, medft measures it: before training,
one short row is run alone and packed behind another, and packing stays on only when
its logits are the same.

Packing pays only with a variable-length attention kernel (flash attention): there a pack
of k rows costs what its rows cost alone. With sdpa or eager attention a pack is one
sequence whose attention spans all k rows and is masked afterwards, so it does k times the
attention work of its rows; measured on CPU (benchmarks/train_throughput.py) that costs more
than the padding it saves, and length-grouped batches (train.group_by_length) are faster.
So auto packs only where the kernel is variable-length; train.packing=true packs anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from medft.config.resolve import packing_request
from medft.runtime.errors import ConfigError

log = logging.getLogger(__name__)

PACKING_STRATEGY = "bfd"  # best-fit decreasing: whole rows, never split across packs


@dataclass
class IsolationProbe:
    max_abs_diff: float
    tolerance: float

    @property
    def isolated(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def probe_isolation(model, tokenizer, tolerance: float | None = None) -> IsolationProbe:
    """Logits of row B alone vs. packed after row A (position ids restart, no attention mask)."""
    import torch

    first = tokenizer("[첫 번째 문장] 감기 증상이 있을 때 충분한 휴식이 필요합니다.", add_special_tokens=False)[
        "input_ids"
    ]
    second = tokenizer("[두 번째 문장] 혈압은 매일 같은 시간에 재는 것이 좋습니다.", add_special_tokens=False)[
        "input_ids"
    ]
    device = next(model.parameters()).device
    alone_ids = torch.tensor([second], device=device)
    packed_ids = torch.tensor([first + second], device=device)
    positions = torch.tensor([list(range(len(first))) + list(range(len(second)))], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=alone_ids, use_cache=False).logits[0].float()
            packed = (
                model(input_ids=packed_ids, position_ids=positions, use_cache=False).logits[0, len(first) :].float()
            )
    finally:
        model.train(was_training)
    diff = (alone - packed).abs().max().item()
    if tolerance is None:
        # Low-precision weights (bf16, 4-bit) differ by rounding alone; a leak differs by whole units.
        scale = alone.abs().max().item()
        exact = getattr(model, "dtype", torch.float32) == torch.float32 and not getattr(
            model, "is_loaded_in_4bit", False
        )
        tolerance = (1e-4 if exact else 2e-2) * max(scale, 1.0)
    return IsolationProbe(diff, tolerance)


def decide_packing(
    setting: bool | None, model, tokenizer, model_name: str, attention: str | None = None
) -> tuple[bool, IsolationProbe | None]:
    """None (auto): pack when the attention kernel is variable-length and the probe shows
    isolation; True: pack, but refuse when rows would leak; False: never."""
    if setting is False:
        return False, None
    if packing_request(setting, attention) is False:
        log.info(
            "packing off: attention=%s has no variable-length kernel, so batches are grouped by length "
            "instead (train.packing=true packs anyway)",
            attention,
        )
        return False, None
    probe = probe_isolation(model, tokenizer)
    if probe.isolated:
        return True, probe
    if setting is True:
        raise ConfigError(
            f"train.packing=true but model={model_name} lets packed rows attend to each other "
            f"(logit difference {probe.max_abs_diff:.3g}); set train.packing=false"
        )
    log.warning(
        "packing off: model=%s does not keep packed rows apart (logit difference %.3g)", model_name, probe.max_abs_diff
    )
    return False, probe


def pack_rows(dataset, max_length: int):
    """Best-fit-decreasing packs of whole rows (TRL's packer), with their lengths for position ids."""
    from trl.data_utils import pack_dataset

    return pack_dataset(dataset.select_columns(["input_ids", "labels"]), max_length, PACKING_STRATEGY)


class RowPackedCollator:
    """Batches packed rows as [batch, length] with position ids restarting at every row.

    TRL's padding-free collator flattens the whole batch into one sequence, which suits
    the varlen flash kernel; with sdpa or eager attention the block mask then grows with
    the square of batch x length. Keeping packs as separate rows costs batch x length²
    instead. No attention mask is passed: transformers derives the per-row block mask
    from the position ids only when there is none.
    """

    def __init__(self, pad_token_id: int):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self._inner = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def __call__(self, examples):
        batch = self._inner(examples)
        batch.pop("attention_mask", None)
        # A row's first token is never predicted from the previous row's last one.
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch
