"""Packed rows never see each other: same logits alone and packed, same loss padded and packed."""

from __future__ import annotations

import pytest
import torch

from medft.runtime.errors import ConfigError
from medft.text.labels import build_example
from medft.text.templates import get_spec
from medft.training import packing

from conftest import compose_config

CONVERSATIONS = [
    [
        {"role": "user", "content": "감기에 걸리면 어떻게 하나요?"},
        {"role": "assistant", "content": "충분히 쉬고 물을 많이 드세요."},
    ],
    [
        {"role": "system", "content": "의료 상담 도우미입니다."},
        {"role": "user", "content": "혈압약은 언제 먹나요?"},
        {"role": "assistant", "content": "매일 같은 시간에 드세요."},
        {"role": "user", "content": "아침에요?"},
        {"role": "assistant", "content": "네, 아침 식후가 좋습니다."},
    ],
    [
        {"role": "user", "content": "두통이 자주 있어요. 원인이 뭘까요? " * 3},
        {"role": "assistant", "content": "수면 부족이 흔한 원인입니다."},
    ],
    [{"role": "user", "content": "위염"}, {"role": "assistant", "content": "자극적인 음식을 피하세요."}],
    [
        {"role": "user", "content": "허리가 아파요."},
        {"role": "assistant", "content": "가벼운 스트레칭이 도움이 됩니다. 통증이 심하면 진료를 받으세요."},
    ],
]


@pytest.fixture(scope="module")
def tiny_model(tiny_source):
    from medft.modeling.models import load_model

    cfg = compose_config()
    model = load_model(cfg.model, cfg.method, "cpu", tiny_source)
    model.eval()
    return model


@pytest.fixture(scope="module")
def rows(tiny_tokenizer):
    spec = get_spec("exaone3_5")
    return [build_example(tiny_tokenizer, spec, c, max_length=512) for c in CONVERSATIONS]


def test_logits_of_a_row_are_the_same_alone_and_packed(tiny_model, rows):
    a, b = rows[0]["input_ids"], rows[1]["input_ids"]
    collate = packing.RowPackedCollator(pad_token_id=0)
    batch = collate([{"input_ids": a + b, "labels": a + b, "seq_lengths": [len(a), len(b)]}])
    assert "attention_mask" not in batch
    assert batch["position_ids"][0].tolist() == list(range(len(a))) + list(range(len(b)))
    with torch.no_grad():
        alone = tiny_model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
        packed = tiny_model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    diff = (alone - packed[0, len(a) :]).abs().max().item()
    assert diff < 1e-4, diff
    # Control: the same packed ids with plain positions (no restart) do leak, so the test can fail.
    with torch.no_grad():
        leaky = tiny_model(input_ids=batch["input_ids"], use_cache=False).logits[0, len(a) :]
    assert (alone - leaky).abs().max().item() > 1e-2


def test_padded_and_packed_batches_give_the_same_loss(tiny_model, rows):
    from datasets import Dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    padded = DataCollatorForLanguageModeling(pad_token_id=0)(
        [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    )
    packed_rows = packing.pack_rows(
        Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]), 160
    )
    assert len(packed_rows) < len(rows), "the rows must actually share packs"
    packed = packing.RowPackedCollator(pad_token_id=0)(list(packed_rows))
    with torch.no_grad():
        loss_padded = tiny_model(**padded, use_cache=False).loss
        loss_packed = tiny_model(**packed, use_cache=False).loss
    supervised = sum(sum(1 for x in r["labels"] if x != -100) for r in rows)
    assert int((packed["labels"] != -100).sum()) == supervised
    assert torch.allclose(loss_padded, loss_packed, atol=1e-5), (loss_padded, loss_packed)


def test_trl_flattened_packing_matches_too(tiny_model, rows):
    """The flash-attention path (TRL's padding-free collator) keeps rows apart the same way."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    flat = {k: flat[k] for k in ("input_ids", "labels", "position_ids")}
    with torch.no_grad():
        assert torch.allclose(
            tiny_model(**padded, use_cache=False).loss, tiny_model(**flat, use_cache=False).loss, atol=1e-5
        )


class _LeakyLM(torch.nn.Module):
    """A 'model' whose every position sees the whole sequence: packing would leak."""

    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(4000, 8)

    def forward(self, input_ids, position_ids=None, use_cache=False):
        hidden = self.embed(input_ids).cumsum(dim=1)
        return type("Out", (), {"logits": hidden})()


def test_probe_turns_packing_off_for_a_leaky_model_and_refuses_when_forced(tiny_tokenizer, tiny_model):
    leaky = _LeakyLM()
    flash = "flash_attention_2"
    assert not packing.probe_isolation(leaky, tiny_tokenizer).isolated
    assert packing.decide_packing(None, leaky, tiny_tokenizer, "leaky", flash) == (
        False,
        packing.probe_isolation(leaky, tiny_tokenizer),
    )
    with pytest.raises(ConfigError, match=r"^train.packing=true but model=leaky lets packed rows attend"):
        packing.decide_packing(True, leaky, tiny_tokenizer, "leaky", "sdpa")
    on, probe = packing.decide_packing(None, tiny_model, tiny_tokenizer, "tiny", flash)
    assert on and probe.isolated
    assert packing.decide_packing(False, tiny_model, tiny_tokenizer, "tiny") == (False, None)


def test_auto_packs_only_with_a_variable_length_attention_kernel(tiny_tokenizer, tiny_model):
    """sdpa/eager attend across a whole pack; auto leaves packing off there (and runs no probe)."""
    for attention in ("sdpa", "eager", None):
        assert packing.decide_packing(None, tiny_model, tiny_tokenizer, "tiny", attention) == (False, None)
    on, probe = packing.decide_packing(True, tiny_model, tiny_tokenizer, "tiny", "sdpa")
    assert on and probe.isolated
