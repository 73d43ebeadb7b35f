"""The training benchmarks measure what they say: padding, supervised tokens, lengths, FLOPs."""

from __future__ import annotations

import math
import shutil
import statistics
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import mfu
import token_lengths
import train_throughput

import _common

CONVERSATIONS = [
    [{"role": "user", "content": "감기에 걸렸어요?"}, {"role": "assistant", "content": "푹 쉬세요."}],
    [{"role": "user", "content": "두통이 있어요. 어떻게 하나요?"}, {"role": "assistant", "content": "물을 드세요."}],
]


def _torch_batch(**columns):
    import torch

    return {k: torch.tensor(v) for k, v in columns.items()}


def test_naive_recipe_pads_to_max_length_and_counts_pad_correctly(tiny_tokenizer):
    from datasets import Dataset
    from transformers import default_data_collator

    rows = Dataset.from_dict({"messages": CONVERSATIONS})
    examples = train_throughput.naive_examples(rows, tiny_tokenizer, max_length=64)
    rendered = [tiny_tokenizer.apply_chat_template(m, tokenize=False) for m in CONVERSATIONS]
    lengths = [len(tiny_tokenizer(text)["input_ids"]) for text in rendered]
    assert all(n < 64 for n in lengths)

    batch = default_data_collator([examples[i] for i in range(len(examples))])
    counts = _common.count_batch(batch, tiny_tokenizer.pad_token_id)
    assert counts.positions == 2 * 64
    assert counts.real == sum(lengths)
    # The naive recipe trains on every real token (prompt too) and never on pad.
    assert counts.supervised == sum(lengths)
    assert 1 - counts.real / counts.positions == pytest.approx(1 - sum(lengths) / 128)


def test_naive_recipe_truncates_long_rows(tiny_tokenizer):
    from datasets import Dataset

    rows = Dataset.from_dict({"messages": CONVERSATIONS})
    examples = train_throughput.naive_examples(rows, tiny_tokenizer, max_length=8)
    assert [sum(m) for m in examples["attention_mask"]] == [8, 8]
    assert all(label != -100 for row in examples["labels"] for label in row)


def test_supervised_count_is_labels_not_ignored_and_real_count_uses_mask_or_pad():
    pad = 0
    masked = _torch_batch(
        input_ids=[[5, 6, 7, 0], [8, 9, 0, 0]],
        attention_mask=[[1, 1, 1, 0], [1, 1, 0, 0]],
        labels=[[-100, 6, 7, -100], [-100, 9, -100, -100]],
    )
    counts = _common.count_batch(masked, pad)
    assert (counts.supervised, counts.real, counts.positions) == (3, 5, 8)

    packed = _torch_batch(input_ids=[[5, 6, 7, 8, 9, 0]], labels=[[-100, 6, -100, 8, 9, -100]])
    counts = _common.count_batch(packed, pad)
    assert (counts.supervised, counts.real, counts.positions) == (3, 5, 6)


def test_supervised_count_of_medft_rows_matches_the_labels(tiny_tokenizer):
    from datasets import Dataset

    from medft.text.labels import IGNORE_INDEX, tokenize_splits
    from medft.text.templates import get_spec
    from medft.training.packing import RowPackedCollator

    tokenized, report = tokenize_splits(
        {"train": Dataset.from_dict({"id": ["a", "b"], "messages": CONVERSATIONS})},
        tiny_tokenizer,
        get_spec("exaone3_5"),
        512,
        progress=False,
    )
    rows = tokenized["train"]
    expected = sum(1 for labels in rows["labels"] for label in labels if label != IGNORE_INDEX)
    assert expected == report["train"]["supervised_tokens"] > 0
    batch = RowPackedCollator(tiny_tokenizer.pad_token_id)(
        [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    )
    counts = _common.count_batch(batch, tiny_tokenizer.pad_token_id)
    # Rows start on a template prefix, so the collator's row-start masking removes nothing here.
    assert counts.supervised == expected
    assert counts.real == sum(len(ids) for ids in rows["input_ids"])


def test_step_meter_counts_only_the_timed_steps():
    pad = 0
    calls = []

    class FakeTrainer:
        def __init__(self):
            self.state = SimpleNamespace(global_step=0)
            self.callbacks = []

        def training_step(self, model, inputs, num_items=None):
            calls.append(inputs)
            return 1.0

        def add_callback(self, callback):
            self.callbacks.append(callback)

    trainer = FakeTrainer()
    meter = _common.StepMeter(pad, warmup=1)
    meter.attach(trainer)
    batches = [
        _torch_batch(input_ids=[[1, 2, 0]], labels=[[-100, 2, -100]]),  # step 1: warm-up, not counted
        _torch_batch(input_ids=[[1, 2, 3]], labels=[[1, 2, 3]]),
        _torch_batch(input_ids=[[1, 0, 0]], labels=[[1, -100, -100]]),
    ]
    for batch in batches:
        trainer.training_step(None, batch)
        trainer.state.global_step += 1
        for callback in trainer.callbacks:
            callback.on_step_end(None, trainer.state, None)
    summary = meter.summary()
    assert len(calls) == 3 and summary["steps_timed"] == 2
    assert summary["supervised_tok_s"] * summary["seconds"] == pytest.approx(4)
    assert summary["real_tok_s"] * summary["seconds"] == pytest.approx(4)
    assert summary["pad_fraction"] == pytest.approx(2 / 6)


def test_synthetic_lengths_are_seeded_and_hit_their_median():
    first = _common.lognormal_lengths(4000, 350, 0.45, seed=7)
    assert first == _common.lognormal_lengths(4000, 350, 0.45, seed=7)
    assert first != _common.lognormal_lengths(4000, 350, 0.45, seed=8)
    assert statistics.median(first) == pytest.approx(350, rel=0.05)
    spread = statistics.quantiles(first, n=20)
    # 5th-95th percentile of a log-normal with sigma 0.45: median * exp(-+1.645 * 0.45)
    assert spread[0] == pytest.approx(350 * math.exp(-1.645 * 0.45), rel=0.08)
    assert spread[-1] == pytest.approx(350 * math.exp(1.645 * 0.45), rel=0.08)


def test_synthetic_conversations_are_deterministic_korean_of_the_drawn_lengths(tiny_tokenizer):
    rows = _common.synthetic_conversations(40, seed=3)
    again = _common.synthetic_conversations(40, seed=3)
    assert rows["messages"] == again["messages"]
    answers = [m[1]["content"] for m in rows["messages"]]
    assert [len(a) for a in answers] == _common.lognormal_lengths(
        40, _common.ANSWER_MEDIAN_TOKENS, _common.ANSWER_SIGMA, seed=4
    )
    hangul = sum(1 for a in answers for ch in a if "\uac00" <= ch <= "\ud7a3")
    assert hangul / sum(len(a) for a in answers) > 0.7
    # Every character is a token of the tiny tokenizer: no byte fallback, no unknowns.
    ids = tiny_tokenizer(answers[0], add_special_tokens=False)["input_ids"]
    assert len(ids) == len(answers[0]) and tiny_tokenizer.unk_token_id not in ids


def test_mfu_flop_formulas():
    assert mfu.matmul_flops(2) == 16.0  # 4 outputs x 2 multiply-adds x 2 FLOPs
    assert mfu.training_flops_per_token(100, 100) == 600.0  # 6N when everything trains
    assert mfu.training_flops_per_token(100, 10) == 420.0  # frozen weights get no weight gradient
    result = mfu.matmul_rate(64, repeats=2, device="cpu")
    assert result["flops"] * result["seconds"] == pytest.approx(2 * 64**3)


def test_mfu_param_count_leaves_out_the_input_embedding_only_and_splits_off_the_head():
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama(tied: bool):
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=50,
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=2,
                tie_word_embeddings=tied,
            )
        )

    model = llama(tied=False)
    total = sum(p.numel() for p in model.parameters())
    counts = mfu.param_counts(model)
    assert counts["head"] == counts["head_trainable"] == 50 * 16
    assert counts["body"] == counts["body_trainable"] == total - 2 * 50 * 16
    model.model.layers.requires_grad_(False)
    counts = mfu.param_counts(model)
    assert (counts["body_trainable"], counts["head_trainable"]) == (16, 50 * 16)  # final norm; lm_head
    tied = mfu.param_counts(llama(tied=True))
    assert tied["head"] == 50 * 16, "a tied table is the head's matmul weight"
    assert tied["body"] == sum(p.numel() for p in llama(tied=True).parameters()) - 50 * 16


def test_train_throughput_defaults_to_one_epoch():
    """Peak memory is set by a variant's longest batch; one epoch makes every variant meet it."""
    ctx, conversations = train_throughput.setup("tiny", "synthetic", None, None, 1, None, rows=48)
    try:
        assert len(conversations) == 48
        assert ctx.steps == ctx.cfg.train.max_steps == 48 // ctx.batch
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)


def test_train_throughput_smoke_prints_three_variants_and_ratios(capsys):
    result = train_throughput.main(["--model", "tiny", "--repeats", "1", "--steps", "3", "--rows", "48"])
    out = capsys.readouterr().out
    for name, label in train_throughput.VARIANTS.items():
        assert f"({name}) {label}" in out
    assert "supervised tok/s (c)/(a):" in out and "supervised tok/s (c)/(b):" in out
    assert "peak RSS above start (c) vs (b):" in out
    medians = result["medians"]
    # The naive recipe pads to 512 and trains on every real token; medft trains on fewer.
    assert medians["a"]["positions_per_step"] == 4 * 512
    assert medians["a"]["supervised_per_step"] == medians["a"]["real_per_step"]
    assert medians["c"]["supervised_per_step"] < medians["c"]["real_per_step"]
    assert all(r > 0 and math.isfinite(r) for r in result["ratios"].values())
    assert result["recipes"]["b"]["packing"] is False


def test_token_lengths_counts_chars_words_and_tokens(tiny_tokenizer, tmp_path, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    texts = ["감기 증상이 있어요", "푹 쉬세요"]
    results = token_lengths.main(["--tokenizer", str(tmp_path / "tok"), "--text", texts[0], "--text", texts[1]])
    stats = results["text"]
    tokens = [len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert stats["rows"] == 2 and stats["words"][0] == statistics.median([3, 2])
    assert stats["chars"][0] == statistics.median([len(t) for t in texts])
    assert stats["tokens_per_word"] == pytest.approx(sum(tokens) / 5)
    assert "tok/word" in capsys.readouterr().out


def test_token_lengths_refuses_a_missing_tokenizer_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        token_lengths.main(["--tokenizer", str(tmp_path / "missing"), "--text", "감기"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"token_lengths: error: --tokenizer {tmp_path / 'missing'}: cannot load")
